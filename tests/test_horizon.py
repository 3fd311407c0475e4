"""The horizon estimate (vbp_live.core.horizon) and ``vbp-live run --horizon auto``.

References: the horizon rows read by eye off the real clips (docs/evaluation/real_clips.yaml) and
the synthetic world's own horizon (``sample_world(seed).horizon_frac``) on drives rendered here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from stream_util import tiny_checkpoint

from vbp_live.cli.main import main
from vbp_live.core.horizon import estimate_horizon
from vbp_live.io.sources import open_source
from vbp_live.synth.world import sample_world

ROOT = Path(__file__).resolve().parents[1]


def frames(spec: str, every: int = 10, limit: int = 600) -> list[np.ndarray]:
    with open_source(spec) as src:
        return [r.image for k, r in zip(range(limit), src.frames(), strict=False) if k % every == 0]


@pytest.fixture(scope="module")
def low_camera(tmp_path_factory) -> tuple[Path, float]:
    """A drive of the randomized world whose camera sees the horizon low in the frame (seed 202: 0.60 H)."""
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--seed", "202", "--frames", "200", "--randomize", "1",
                 "--format", "mp4", "--workers", "1"]) == 0
    return next(out.glob("*.mp4")), sample_world(202, 1.0).horizon_frac


def test_the_real_clips_horizons_are_found_within_two_percent_of_the_height(shared_data):
    table = yaml.safe_load((ROOT / "docs" / "evaluation" / "real_clips.yaml").read_text())
    for clip in table["clips"]:
        est = estimate_horizon(frames(str(shared_data / clip["file"])))
        assert est.row == pytest.approx(clip["horizon"], abs=0.02), clip["file"]
        assert est.crossings >= 100 and est.spread < 0.05


def test_a_synthetic_cameras_horizon_is_found(low_camera):
    video, truth = low_camera
    est = estimate_horizon(frames(str(video), every=5))
    assert est.row == pytest.approx(truth, abs=0.025)


def test_no_lane_lines_no_estimate():
    gray = np.full((240, 320), 90, np.uint8)
    est = estimate_horizon([gray] * 5)
    assert est.row is None and est.crossings == 0 and est.frames == 5


def test_run_horizon_auto_moves_the_band_to_the_estimate(low_camera, tmp_path, capsys):
    from dataclasses import replace

    import torch

    from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint

    video, truth = low_camera
    ck = load_checkpoint(tiny_checkpoint(tmp_path / "t.pt"))
    model = ck.build_model()
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "h.pt", model, replace(ck.crop, top=0.55, bottom=0.8, horizon=0.47))
    args = ["-c", str(ckpt), "--horizon", "auto", "--no-output", "-q"]
    assert main(["run", str(video), *args, "--max-frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "horizon estimated from" in out and "for the horizon at 0.6" in out  # truth 0.597
    blank = tmp_path / "blank.mp4"
    import cv2

    w = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(10):
        w.write(np.full((240, 320, 3), 90, np.uint8))
    w.release()
    assert main(["run", str(blank), *args]) == 1
    assert "--horizon auto: " in (err := capsys.readouterr().err) and "too few lane lines" in err
    assert truth == pytest.approx(0.597, abs=0.001)
