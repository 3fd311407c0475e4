"""StageCapture's taps: a stand-in ``forward`` per stage module, per thread, always restored."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from method_nets import hooks_left
from vbp_live.attribution import VisualBackProp
from vbp_live.attribution.capture import StageCapture, trace_conv_chain


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.LazyLinear(1)).eval()


def capture(model: nn.Module, x: torch.Tensor) -> tuple[StageCapture, list]:
    got: list = []
    return StageCapture(trace_conv_chain(model, x), lambda k, t: got.append((k, t.clone()))), got


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


def test_a_forward_the_user_put_on_the_module_is_used_and_restored():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    cap, got = capture(model, x)

    def doubled_relu(t: torch.Tensor) -> torch.Tensor:
        return 2 * torch.relu(t)

    model[1].forward = doubled_relu  # an instance forward, set after tracing
    with torch.no_grad(), cap.hooked():
        model(x)
    assert model[1].__dict__["forward"] is doubled_relu
    assert torch.equal(got[0][1], 2 * torch.relu(model[0](x)))


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


def test_restored_when_the_forward_fails_and_captures_do_not_nest():
    model, x = net(), torch.rand(1, 1, 15, 17)
    model(x)
    cap, _ = capture(model, x)
    with pytest.raises(RuntimeError), cap.hooked():
        model(torch.rand(1, 3, 15, 17))  # wrong channel count
    assert hooks_left(model) == 0
    with pytest.raises(RuntimeError, match="cannot nest"), cap.hooked(), cap.hooked():
        pass
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
        other = model(xb)  # thread B: the stand-in sends it straight to the original forward
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
