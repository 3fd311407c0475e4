"""capture.py: the leaf-call trace, StageCapture and module_hooks (per thread, always removed)."""

from __future__ import annotations

import threading

import pytest
import torch
from method_nets import hooks_left
from torch import nn

from vbp_live.attribution import VisualBackProp
from vbp_live.attribution.capture import StageCapture, module_hooks, trace_conv_chain, trace_leaf_calls


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.LazyLinear(1)).eval()


def capture(model: nn.Module, x: torch.Tensor) -> tuple[StageCapture, list]:
    got: list = []
    return StageCapture(trace_conv_chain(model, x), lambda k, t: got.append((k, t.clone()))), got


def test_leaf_calls_in_order_with_their_tensors():
    model, x = net(), torch.rand(2, 1, 15, 17)
    model(x)
    calls, out = trace_leaf_calls(model, x)
    assert [c.name for c in calls] == ["0", "1", "2", "3", "4", "5"]
    assert calls[0].inputs[0] is x and calls[-1].output is out
    assert all(calls[i].inputs[0] is calls[i - 1].output for i in range(1, len(calls)))
    assert torch.equal(out, model(x)) and hooks_left(model) == 0


def test_maps_are_the_stage_outputs_and_the_forward_is_unchanged():
    model, x = net(), torch.rand(2, 1, 15, 17)
    model(x)
    cap, got = capture(model, x)
    with torch.no_grad(), cap.hooked():
        out = model(x)
    assert torch.equal(out, model(x)) and cap.seen == 2
    assert [k for k, _ in got] == [0, 1]
    assert torch.equal(got[0][1], torch.relu(model[0](x)))
    assert torch.equal(got[1][1], torch.relu(model[2](torch.relu(model[0](x)))))
    assert hooks_left(model) == 0


def test_the_modules_own_hooks_still_run_and_see_the_same_map():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    cap, got = capture(model, x)
    seen = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    with torch.no_grad(), cap.hooked():
        model(x)
    handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0], got[0][1])


def test_removed_when_the_forward_fails():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    cap, _ = capture(model, x)
    with pytest.raises(RuntimeError), cap.hooked():
        model(torch.rand(1, 3, 15, 17))  # wrong channel count
    assert hooks_left(model) == 0


def test_other_threads_are_not_captured_while_one_thread_is():
    """Thread A stops inside its captured forward; thread B runs the model meanwhile."""
    model, x, xb = net(), torch.rand(1, 1, 15, 17), torch.rand(1, 1, 15, 17)
    model(x)
    inside, release = threading.Event(), threading.Event()
    got: list = []

    def slow_reduce(k: int, t: torch.Tensor) -> None:
        got.append((k, t.clone()))
        if k == 0:
            inside.set()
            release.wait(10)

    cap = StageCapture(trace_conv_chain(model, x), slow_reduce)

    def thread_a() -> None:
        with torch.no_grad(), cap.hooked():
            model(x)

    a = threading.Thread(target=thread_a)
    a.start()
    assert inside.wait(10)
    with torch.no_grad():
        other = model(xb)  # thread B: the hooks ignore its calls
    release.set()
    a.join(10)
    assert [k for k, _ in got] == [0, 1] and cap.seen == 2 and torch.equal(other, model(xb))
    assert torch.equal(got[1][1], torch.relu(model[2](torch.relu(model[0](x)))))  # A's map, not B's
    assert hooks_left(model) == 0


def test_two_objects_on_one_model_from_two_threads_agree_with_one_thread():
    model, x = net(), torch.rand(3, 1, 15, 17)
    model(x)
    want = VisualBackProp(model).attribute(x)
    results: list = [None] * 8
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        vbp = VisualBackProp(model)
        barrier.wait()
        for j in range(4):
            results[i * 4 + j] = vbp.attribute(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and torch.allclose(r, want, atol=1e-6) for r in results)
    assert hooks_left(model) == 0


def test_module_hooks_forward_pre_and_gradient_rules():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    plain = model(x)
    (g_plain,) = torch.autograd.grad(plain.sum(), model[2].weight)

    def double_input(m: nn.Module, inputs: tuple) -> tuple:
        return (2 * inputs[0],)

    def negate(m: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        return -out

    with module_hooks(pre=[(model[0], double_input)], forward=[(model[5], negate)]):
        y = model(x)
    assert torch.allclose(y, -model(2 * x)) and hooks_left(model) == 0

    with module_hooks(output_grad=[(model[2], lambda m, z: lambda g: 3 * g)]):
        y = model(x)
    (g,) = torch.autograd.grad(y.sum(), model[2].weight)  # the gradient reaching conv 2's output is tripled
    assert torch.allclose(g, 3 * g_plain) and hooks_left(model) == 0

    with pytest.raises(ZeroDivisionError), module_hooks(forward=[(model[5], negate)]):
        _ = 1 / 0
    assert hooks_left(model) == 0


def test_module_hooks_ignore_other_threads():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    want = model(x)
    got: list = []
    with module_hooks(forward=[(model[5], lambda m, i, o: -o)]):
        t = threading.Thread(target=lambda: got.append(model(x)))
        t.start()
        t.join(10)
    assert torch.equal(got[0], want)
