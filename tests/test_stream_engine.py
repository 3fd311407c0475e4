"""The model step: one forward pass for output and mask, batching, the trained crop, method choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stream_util import CROP, coded_frame, tiny_checkpoint

from vbp_live.attribution import VisualBackProp
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.io.checkpoint import save_checkpoint
from vbp_live.models import create_model, frames_to_input
from vbp_live.stream import OverlayEngine
from vbp_live.stream.engine import pick_method


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OverlayEngine:
    return OverlayEngine.from_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt"), device="cpu")


def test_engine_matches_visualbackprop_on_the_checkpoints_crop(engine):
    frames = [coded_frame(i) for i in range(3)]
    preds = engine.infer(frames)
    x = frames_to_input(np.stack([preprocess_frame(f, CROP) for f in frames]))  # (3, 1, 125, 160)
    model = engine.model
    with torch.no_grad():
        ref = VisualBackProp(model).run(x)
    np.testing.assert_allclose([p.steering_rad for p in preds], ref.output[:, 0].numpy(), rtol=1e-4, atol=1e-6)
    for p, m in zip(preds, ref.mask[:, 0].numpy()):
        assert p.mask.shape == (125, 160) and p.mask.dtype == np.float32
        np.testing.assert_allclose(p.mask, m, atol=1e-5)


def test_batched_equals_one_by_one(engine):
    frames = [coded_frame(i) for i in range(5)]
    together = engine.infer(frames)
    alone = [engine.infer([f])[0] for f in frames]
    for a, b in zip(together, alone):
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


@pytest.mark.gpu
def test_fused_path_on_cuda_matches_the_cpu_engine(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    cpu, gpu = OverlayEngine.from_checkpoint(ckpt, device="cpu"), OverlayEngine.from_checkpoint(ckpt, device="cuda")
    assert gpu.method_name == "vbp_fused"
    frames = [coded_frame(i) for i in range(4)]
    for a, b in zip(cpu.infer(frames), gpu.infer(frames)):
        assert a.steering_rad == pytest.approx(b.steering_rad, rel=1e-3, abs=1e-4)
        np.testing.assert_allclose(a.mask, b.mask, atol=1e-3)
