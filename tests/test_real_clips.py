"""The real-clip report: the lane-paint colour rule, the steering metrics and scripts/real_clips.py end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vbp_live.core.errors import ConfigError
from vbp_live.core.metrics import MassTally
from vbp_live.evaluate.paint import paint_mask
from vbp_live.evaluate.real_clips import (
    Stretch,
    frame_steps,
    in_stretches,
    load_table,
    report_lines,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
H, W, HORIZON = 540, 960, 0.47
BAND = (round(0.55 * H), round(0.81 * H))


def road_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 960x540 BGR road: bright sky with a white car above the horizon, grey noisy asphalt, green verges,
    two white lane lines, a yellow centre line and a white kerb stripe between asphalt and grass.

    Returns:
        the frame and a bool mask of the painted lane-line pixels.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    hz = round(HORIZON * H)
    img[:hz] = (235, 215, 200)  # pale sky (BGR)
    img[hz - 60:hz - 10, 300:420] = (250, 250, 250)  # a white car body above the horizon
    road = np.clip(rng.normal(105, 6, (H - hz, W)), 0, 255).astype(np.uint8)
    img[hz:] = np.repeat(road[..., None], 3, axis=2)
    paint = np.zeros((H, W), np.uint8)
    for x_bottom, x_top in ((180, 450), (780, 510)):  # lane lines converging to the vanishing point
        cv2.line(paint, (x_bottom, H - 1), (x_top, hz + 2), 1, 14)
    cv2.line(img, (480, H - 1), (480, hz + 2), (40, 200, 230), 10)  # yellow centre line
    paint[:, 475:486][(img[:, 475:486] == (40, 200, 230)).all(axis=2)] = 1
    img[paint.astype(bool) & ~(img == (40, 200, 230)).all(axis=2)] = (235, 235, 235)
    for rows in range(hz, H):  # green verges beyond a white kerb on both sides of the road
        edge = round(60 + (rows - hz) * -0.2)
        img[rows, :edge] = (40, 140, 50)
        img[rows, edge:edge + 6] = (240, 240, 240)
        img[rows, W - edge:] = (40, 140, 50)
        img[rows, W - edge - 6:W - edge] = (240, 240, 240)
    return img, paint.astype(bool)


def test_paint_rule_finds_painted_lines_and_ignores_sky_car_and_kerb():
    img, truth = road_scene()
    found = paint_mask(img, BAND, HORIZON)
    in_band = np.zeros_like(truth)
    in_band[BAND[0]:BAND[1]] = True
    target = truth & in_band
    recall = (found & target).sum() / target.sum()
    precision = (found & truth).sum() / max(found.sum(), 1)
    assert recall > 0.9, recall
    assert precision > 0.95, precision
    assert not found[: round(HORIZON * H)].any()  # sky and white car above the horizon
    assert not found[BAND[1]:].any() and not found[:BAND[0]].any()  # nothing outside the band
    assert not found[:, :70].any() and not found[:, W - 70:].any()  # kerbs and verges


def test_paint_rule_on_a_road_without_paint_finds_almost_nothing():
    img, _ = road_scene(1)
    plain = img.copy()
    hz = round(HORIZON * H)
    plain[hz:, 70:W - 70] = np.clip(np.random.default_rng(2).normal(105, 6, (H - hz, W - 140, 1)), 0, 255)
    assert paint_mask(plain, BAND, HORIZON).mean() < 1e-4


def test_metrics_on_a_made_up_sequence():
    pred = np.array([0.0, 1.0, 3.0, 2.0, 2.0])  # degrees
    np.testing.assert_allclose(frame_steps(pred), [1, 2, 1, 0])
    idx = np.arange(10, 15)
    stretches = [Stretch(11, 12, "straight")]
    assert in_stretches(idx, stretches).tolist() == [False, True, True, False, False]
    relevance = np.array([[1.0, 0.0, 0.0, 0.0]])  # all mass on the one paint pixel of four
    tally = MassTally().add(relevance, np.array([[1.0, 0.0, 0.0, 0.0]]))
    r = summarize("clip", idx, pred, tally, stretches)
    assert r.frames == 5 and r.mean_deg == pytest.approx(1.6) and r.std_deg == pytest.approx(np.std(pred))
    assert r.step_p50_deg == pytest.approx(1.0) and r.step_p95_deg == pytest.approx(1.85)
    assert r.straight_mean_deg == pytest.approx(2.0) and r.straight_frames == 2
    assert r.paint_area_share == pytest.approx(0.25) and r.paint_focus == pytest.approx(4.0)
    assert r.passes() == {"focus": False, "step_p95": True, "straight_mean": True}
    shaky = summarize("shaky", idx, np.array([0.0, 4.0, 8.0, 4.0, 0.0]), tally, stretches)
    assert shaky.passes() == {"focus": False, "step_p95": False, "straight_mean": False}
    assert "FAIL, FAIL, FAIL" in report_lines([shaky])[-1]


def test_a_clip_without_paint_or_stretches_is_not_measurable_not_failed():
    r = summarize("c", np.arange(3), np.zeros(3), MassTally().add(np.ones((2, 2)), np.zeros((2, 2))))
    assert r.passes() == {"focus": None, "step_p95": True, "straight_mean": None}
    d = r.to_dict()
    assert d["paint_focus"] is None and d["straight_mean_deg"] is None
    json.dumps(d)  # NaN-free
    assert math.isnan(r.paint_focus)


def test_clip_table_loads_and_rejects_unknown_keys(tmp_path):
    table = load_table(ROOT / "docs" / "evaluation" / "real_clips.yaml")
    assert table.clips and all(c.straight for c in table.clips) and table.recommended_crop is not None
    bad = tmp_path / "t.yaml"
    bad.write_text("clips:\n  - file: a.mp4\n    horizon: 0.5\n    straigth: []\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:4.*straigth"):
        load_table(bad)
    bad.write_text("clips:\n  - file: a.mp4\n    horizon: 0.5\n    straight:\n      - {first: 9, last: 3, reason: x}\n")
    with pytest.raises(ConfigError, match="first <= last"):
        load_table(bad)


@pytest.mark.slow
def test_script_end_to_end_on_a_short_real_clip(shared_data, tmp_path):
    """Every video of DATA/video is measured (here one, linked; no table entry: no horizon) and a --clip too."""
    clip = shared_data / "video" / "openCV_LaneDetection_road.mp4"
    (tmp_path / "data" / "video").mkdir(parents=True)
    (tmp_path / "data" / "video" / "linked.mp4").symlink_to(clip)
    (tmp_path / "table.yaml").write_text("clips: []\n")
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "real_clips.py"), "--data", str(tmp_path / "data"),
           "--table", str(tmp_path / "table.yaml"), "--clip", str(clip), "--clip-horizon", "0.555",
           "--max-frames", "6", "--batch", "3", "--threads", "1", "--out", str(out),
           "--paint-figure", str(tmp_path / "p.png"), "--figure-frames", "2", "--crops-figure", str(tmp_path / "c.png")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "| linked.mp4 | 6 |" in res.stdout and "| openCV_LaneDetection_road.mp4 | 6 |" in res.stdout
    assert res.stdout.count("PASS") + res.stdout.count("FAIL") >= 2
    data = json.loads(out.read_text())
    linked, given = data["checkpoints"][0]["clips"]
    assert given["frames"] == 6 and set(given["passes"]) == {"focus", "step_p95", "straight_mean"}
    assert given["paint_area_share"] > 0.005 and given["straight_mean_deg"] is None
    assert linked["step_p95_deg"] == pytest.approx(given["step_p95_deg"])  # same frames, same predictions
    for fig in ("p.png", "c.png"):
        assert cv2.imread(str(tmp_path / fig)) is not None


@pytest.mark.slow  # a subprocess that imports torch: over 5 s on a loaded machine
def test_script_names_a_missing_clip_in_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "real_clips.py"), "--skip-table", "--clip",
           str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "r.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "nope.mp4" in res.stderr
    assert not (tmp_path / "r.json").exists()
