"""The model step: one forward pass for output and mask, batching, the trained crop, method choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stream_util import CROP, coded_frame
from torch import nn

from vbp_live.attribution import VisualBackProp
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint
from vbp_live.models import create_model, frames_to_input
from vbp_live.models.fold import fold_batchnorm, inference_copy
from vbp_live.stream import OverlayEngine
from vbp_live.stream.engine import pick_method


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny NetSVF whose BatchNorms are far from identity (so folding them is really tested)."""
    torch.manual_seed(1)
    model = create_model("netsvf", height=125, width=160).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    return save_checkpoint(tmp_path_factory.mktemp("c") / "t.pt", model, CROP)


@pytest.fixture(scope="module")
def engine(ckpt) -> OverlayEngine:
    return OverlayEngine.from_checkpoint(ckpt, device="cpu")


def test_engine_matches_visualbackprop_on_the_checkpoints_crop(engine, ckpt):
    frames = [coded_frame(i) for i in range(3)]
    preds = engine.infer(frames)
    x = frames_to_input(np.stack([preprocess_frame(f, CROP) for f in frames]))  # (3, 1, 125, 160)
    model = load_checkpoint(ckpt).build_model()  # the unfolded network, default memory format
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in engine.model.modules())  # folded away
    assert all(m.inplace for m in engine.model.features.modules() if isinstance(m, nn.ReLU))  # in place
    with torch.no_grad():
        ref = VisualBackProp(model).run(x)
    np.testing.assert_allclose([p.steering_rad for p in preds], ref.output[:, 0].numpy(), rtol=1e-4, atol=1e-6)
    for p, m in zip(preds, ref.mask[:, 0].numpy(), strict=True):
        assert p.mask.shape == (125, 160) and p.mask.dtype == np.float32
        np.testing.assert_allclose(p.mask, m, atol=1e-5)


def test_batched_equals_one_by_one(engine):
    frames = [coded_frame(i) for i in range(5)]
    together = engine.infer(frames)
    alone = [engine.infer([f])[0] for f in frames]
    for a, b in zip(together, alone, strict=True):
        assert a.steering_rad == pytest.approx(b.steering_rad, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(a.mask, b.mask, atol=1e-5)


def test_cropped_frames_skip_the_crop(engine):
    frame = coded_frame(2)
    crop = preprocess_frame(frame, CROP)  # what a prepared dataset stores
    a, b = engine.infer([frame])[0], engine.infer([crop], [True])[0]
    assert a.steering_rad == pytest.approx(b.steering_rad, abs=1e-6)
    with pytest.raises(ValueError, match="expects"):
        engine.infer([crop[:, :100]], [True])


def test_method_choice_on_cpu_and_a_clear_error_for_non_steering_models(tmp_path):
    assert pick_method(torch.device("cpu")) == "vbp"
    assert pick_method(torch.device("cpu"), "vbp_fused") == "vbp_fused"
    ckpt = save_checkpoint(tmp_path / "sign.pt", create_model("signnet"), CropSpec(0.0, 1.0, 125, 125))
    eng = OverlayEngine.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(ValueError, match="1 value per frame"):
        eng.infer([coded_frame(0)])


def test_fold_batchnorm_is_exact_and_leaves_padded_convs_alone():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(),      # BN -> conv: folded
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),  # conv -> BN: folded
        nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(),      # BN -> padded conv: kept
    ).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.3, 3), m.weight.data.uniform_(0.5, 2)
    folded, n = fold_batchnorm(net)
    assert n == 2 and isinstance(folded[0], nn.Identity) and isinstance(folded[4], nn.Identity)
    assert isinstance(folded[6], nn.BatchNorm2d) and isinstance(net[0], nn.BatchNorm2d)  # original untouched
    fast, counts = inference_copy(net)
    assert counts == {"bn_folded": 2, "relu_inplace": 2}  # the ReLU after the kept BN is not after a conv
    assert fast[2].inplace and not fast[5].inplace and not net[2].inplace
    x = torch.rand(2, 3, 21, 19)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_fused_path_on_cuda_matches_the_cpu_engine(ckpt):
    cpu, gpu = OverlayEngine.from_checkpoint(ckpt, device="cpu"), OverlayEngine.from_checkpoint(ckpt, device="cuda")
    assert gpu.method_name == "vbp_fused"
    frames = [coded_frame(i) for i in range(4)]
    for a, b in zip(cpu.infer(frames), gpu.infer(frames), strict=True):
        assert a.steering_rad == pytest.approx(b.steering_rad, rel=1e-3, abs=1e-4)
        np.testing.assert_allclose(a.mask, b.mask, atol=1e-3)


def _model_state(model: nn.Module) -> dict:
    """Everything OverlayEngine must leave alone: modes, devices, values, requires_grad, layout, hooks."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
             "_load_state_dict_pre_hooks")
    return {
        "training": [m.training for m in model.modules()],
        "tensors": {k: (v.clone(), v.device, v.dtype, v.requires_grad, v.is_contiguous())
                    for k, v in [*model.named_parameters(), *model.named_buffers()]},
        "grads": [p.grad for p in model.parameters()],
        "ids": [id(p) for p in model.parameters()],
        "hooks": [len(getattr(m, h, {})) for m in model.modules() for h in hooks],
        "inplace": [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)],
        "types": [type(m) for m in model.modules()],
    }


@pytest.mark.parametrize("optimize", [True, False])
def test_the_callers_model_is_left_exactly_as_it_was(optimize):
    torch.manual_seed(3)
    model = create_model("netsvf", height=125, width=160).train()  # train mode, CPU, requires_grad weights
    before = _model_state(model)
    engine = OverlayEngine(model, CROP, "cpu", optimize=optimize, channels_last=True)
    engine.infer([coded_frame(i) for i in range(2)])
    after = _model_state(model)
    assert engine.model is not model
    assert after["training"] == before["training"] and all(before["training"])
    assert after["grads"] == before["grads"] == [None] * len(before["grads"])
    assert (after["ids"], after["hooks"], after["inplace"], after["types"]) == (
        before["ids"], before["hooks"], before["inplace"], before["types"])
    assert after["tensors"].keys() == before["tensors"].keys()
    for k, (value, *rest) in before["tensors"].items():
        assert torch.equal(after["tensors"][k][0], value) and after["tensors"][k][1:] == tuple(rest), k
