"""Every registered attribution method: same contract, no side effects on the model."""

from __future__ import annotations

import pytest
import torch
from method_nets import FAST_KWARGS, IN_SHAPE, hooks_left, same_state, state_copy, tiny_steering

from vbp_live.attribution import create_method, list_methods

METHODS = [m for m in list_methods() if m != "vbp_fused"]  # Triton: GPU or interpreter only; tested in its own file
NEW = ["lrp", "saliency", "deconvnet", "gbp", "gradcam", "pda", "pda_grad"]


def make(name: str, model: torch.nn.Module):
    method = create_method(name, model, **FAST_KWARGS.get(name, {}))
    if hasattr(method, "fit"):  # PDA: fix the patch statistics so maps do not depend on the batch
        method.fit(torch.rand(4, *IN_SHAPE, generator=torch.Generator().manual_seed(5)))
    return method


def test_all_comparison_methods_registered():
    assert set(NEW) <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("batch", [1, 3])
def test_shape_dtype_finite(name, batch):
    model = tiny_steering()
    x = torch.rand(batch, *IN_SHAPE)
    r = make(name, model).attribute(x)
    assert r.shape == (batch, 1, *IN_SHAPE[1:]) and r.dtype == torch.float32
    assert torch.isfinite(r).all()
    assert r.abs().sum() > 0, f"{name} returned an all-zero map on a random net"


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("training", [False, True])
def test_no_side_effects(name, training):
    model = tiny_steering(dropout=True).train(training)
    model[1].weight.requires_grad_(False)  # a mix of flags that must come back as they were
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(2, *IN_SHAPE)
    x0 = x.clone()
    method = make(name, model)
    saved, rng = state_copy(model), torch.get_rng_state()
    method.attribute(x)
    method.run(x)
    assert model.training == training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert hooks_left(model) == 0
    assert same_state(model, saved)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(x, x0) and x.grad is None


@pytest.mark.parametrize("name", METHODS)
def test_run_gives_the_models_output_and_the_map(name):
    model = tiny_steering()
    method = make(name, model)
    x = torch.rand(2, *IN_SHAPE)
    res = method.run(x)
    with torch.no_grad():
        torch.testing.assert_close(res.output, model(x))
    torch.testing.assert_close(res.mask, method.attribute(x))


@pytest.mark.parametrize("name", METHODS)
def test_one_map_per_sample(name):
    """In eval mode a sample's map does not depend on the rest of the batch."""
    model = tiny_steering()
    method = make(name, model)
    x = torch.rand(3, *IN_SHAPE)
    together = method.attribute(x)
    alone = torch.cat([method.attribute(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_inplace_relu_gives_same_map(name):
    x = torch.rand(2, *IN_SHAPE)
    plain, inplace = tiny_steering(inplace=False), tiny_steering(inplace=True)
    torch.testing.assert_close(make(name, inplace).attribute(x), make(name, plain).attribute(x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_runs_without_grad_and_in_inference_mode(name, mode):
    """Gradient methods leave inference mode locally on a clone of the input (documented choice)."""
    model = tiny_steering()
    method = make(name, model)
    x = torch.rand(2, *IN_SHAPE)
    expected = method.attribute(x)
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        got = method.attribute(x.clone())
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["lrp", "saliency", "gbp", "gradcam", "pda_grad"])
def test_model_built_in_inference_mode_gives_clear_error(name):
    with torch.inference_mode():
        model = tiny_steering()
    with pytest.raises(RuntimeError, match="inference_mode"):
        make(name, model).attribute(torch.rand(1, *IN_SHAPE))


@pytest.mark.parametrize("name", NEW)
def test_classifier_target_per_sample(name):
    """For a net with several outputs, ``target`` picks the class; a list gives one per sample."""
    model = tiny_steering(outputs=4)
    method = make(name, model)
    x = torch.rand(2, *IN_SHAPE)
    both = method.attribute(x, target=[1, 3])
    torch.testing.assert_close(both[:1], method.attribute(x[:1], target=1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both[1:], method.attribute(x[1:], target=3), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="target"):
        method.attribute(x, target=7)


@pytest.mark.parametrize("name", NEW)
def test_bad_sign_convention_is_refused(name):
    with pytest.raises(ValueError, match="sign convention"):
        make(name, tiny_steering()).attribute(torch.rand(1, *IN_SHAPE), sign="upside-down")


@pytest.mark.parametrize("name", NEW)
def test_output_sign_makes_evidence_for_the_predicted_direction_positive(name):
    """sign="output" is the raw map times sign(y), so negating the net's output leaves it unchanged.

    (DeconvNet and GBP clamp the backward signal, so negating the output changes their raw map:
    only the definition is checked for them.)
    """
    model = tiny_steering()
    x = torch.rand(2, *IN_SHAPE)
    out = make(name, model).attribute(x, sign="output")
    if name not in ("deconvnet", "gbp"):
        flipped = tiny_steering()
        with torch.no_grad():
            flipped[-1].weight.neg_()
            flipped[-1].bias.neg_()
        torch.testing.assert_close(make(name, flipped).attribute(x, sign="output"), out, rtol=1e-4, atol=1e-7)
    y = model(x).detach()[:, 0]
    if name != "gradcam":  # Grad-CAM keeps only the positive part under "output"
        raw = make(name, model).attribute(x, sign="raw")
        torch.testing.assert_close(out, raw * torch.where(y < 0, -1.0, 1.0).view(-1, 1, 1, 1))
