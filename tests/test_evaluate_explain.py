"""``vbp-live explain``: real inputs (image, folder + CSV, mp4, prepared dataset, synthetic drive) -> PNG figures."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest
import torch
from method_nets import eval_tiny_registered, tiny_checkpoint

from vbp_live.cli.main import main
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.evaluate.figures import describe_output, display_map, overlay_panel
from vbp_live.evaluate.inputs import Sample, even_indices, load_samples
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.models import frames_to_input

ERR = re.compile(r"error \(actual - predicted\) ([+-]\d+\.\d) deg")


def road(seed: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A small BGR frame: sky, asphalt, one slanted white line whose slope depends on the seed."""
    img = np.full((h, w, 3), (200, 170, 140), np.uint8)
    img[h // 2:] = 70
    cv2.line(img, (w // 2 + seed * 4, h // 2), (w // 2 - seed * 6, h - 1), (255, 255, 255), 2)
    return img


@pytest.fixture
def ckpt(tmp_path):
    with eval_tiny_registered():
        yield tiny_checkpoint(tmp_path / "tiny.pt")


def predicted(ckpt_path, img: np.ndarray) -> float:
    ck = load_checkpoint(ckpt_path)
    with torch.no_grad():
        return float(ck.build_model()(frames_to_input(preprocess_frame(img, ck.crop)[None]))[0, 0])


def test_single_image_with_steering(tmp_path, ckpt, capsys):
    img = road(1)
    cv2.imwrite(str(tmp_path / "frame.png"), img)
    out = tmp_path / "figs"
    rc = main(["explain", str(tmp_path / "frame.png"), "--checkpoint", str(ckpt), "--steering", "0.25",
               "--methods", "vbp,lrp,gbp", "--out", str(out), "--panel-width", "200"])
    assert rc == 0
    fig = cv2.imread(str(out / "frame_explain.png"))
    assert fig is not None and fig.shape[1] == 3 * 200 + 4 * 4  # 4 panels in 3 columns of 200 px
    err = float(ERR.search(capsys.readouterr().out).group(1))
    assert err == pytest.approx(math.degrees(0.25 - predicted(ckpt, img)), abs=0.051)


def test_folder_with_csv_samples_evenly(tmp_path, ckpt, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"f{i}.jpg"), road(i))
    (tmp_path / "steer.csv").write_text("filename,angle\nimgs/f0.jpg,0.1\nimgs/f2.jpg,-0.2\nimgs/f4.jpg,0.3\n")
    rc = main(["explain", str(folder), "--checkpoint", str(ckpt), "--frames", "3", "--steering",
               str(tmp_path / "steer.csv"), "--methods", "saliency", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"f{i}_explain.png" for i in (0, 2, 4)]
    assert len(ERR.findall(capsys.readouterr().out)) == 3


def test_video_is_sampled(tmp_path, ckpt):
    path = tmp_path / "drive.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (96, 64))
    for i in range(12):
        vw.write(road(i % 5))
    vw.release()
    crop = load_checkpoint(ckpt).crop
    samples = load_samples(path, crop, frames=4)
    assert [s.name for s in samples] == [f"drive_{i:06d}" for i in even_indices(12, 4)]
    assert all(s.net_input.shape == (32, 48) and s.truth_rad is None for s in samples)
    assert main(["explain", str(path), "--checkpoint", str(ckpt), "--frames", "2", "--methods", "vbp,gradcam",
                 "--out", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 2


def test_prepared_dataset_and_synthetic_drive(tmp_path, ckpt):
    from vbp_live.io.dataset import DatasetWriter
    from vbp_live.io.synth_writers import write_outputs
    from vbp_live.synth import DriveConfig, simulate_drive

    crop = load_checkpoint(ckpt).crop
    w = DatasetWriter(tmp_path / "ds", (32, 48), crop)
    for i in range(6):
        w.append(preprocess_frame(road(i), crop), i * 50_000_000, 0.05 * i, 10.0, "test")
    w.finalize(["test"] * 6)
    ds = load_samples(tmp_path / "ds", crop, frames=3)
    assert [s.truth_rad for s in ds] == pytest.approx([0.0, 0.10, 0.25])  # frames 0, 2, 5
    assert all(s.cropped for s in ds)

    write_outputs(simulate_drive(DriveConfig(seed=2, frames=6)), tmp_path / "syn", ["gt"])
    syn = load_samples(tmp_path / "syn", crop, frames=2)
    assert len(syn) == 2 and syn[0].truth_rad is not None
    assert set(syn[0].masks) == {"lane", "hmark", "shadow", "car"} and syn[0].masks["lane"].shape == (32, 48)
    assert syn[0].masks["lane"].any()
    assert main(["explain", str(tmp_path / "syn"), "--checkpoint", str(ckpt), "--frames", "1", "--methods", "vbp",
                 "--out", str(tmp_path / "o")]) == 0


def test_overlay_only_inside_the_crop_band():
    crop = CropSpec(top=0.5, bottom=1.0, out_height=32, out_width=48)
    img = road(0)
    s = Sample("x", img, preprocess_frame(img, crop))
    panel = overlay_panel(s, crop, np.ones((32, 48), np.float32))
    assert np.array_equal(panel[:32], img[:32])  # above the band: untouched
    assert (panel[40:, :, 2].astype(int) > img[40:, :, 2].astype(int)).mean() > 0.9  # band: red


def test_display_map_and_caption():
    m = np.array([[-1.0, 0.0], [1.0, 100.0]])
    np.testing.assert_allclose(display_map(m, 100), [[0.0, 0.0], [0.01, 1.0]], rtol=1e-6)
    assert display_map(m, 50)[1, 1] == 1.0 and display_map(-m, 99)[1, 1] == 0.0
    assert "error (actual - predicted) +5.7 deg" in describe_output(np.array([0.1]), 0.2)
    assert describe_output(np.array([0.1, 0.5, 0.2]), None) == "predicted class 1"


def test_unknown_method_is_a_clear_error(tmp_path, ckpt, capsys):
    cv2.imwrite(str(tmp_path / "f.png"), road(0))
    assert main(["explain", str(tmp_path / "f.png"), "--checkpoint", str(ckpt), "--methods", "vbp,magic"]) == 1
    assert "unknown method(s) ['magic']" in capsys.readouterr().err


def test_the_tiny_model_is_registered_only_while_needed():
    from vbp_live.models import list_models

    with eval_tiny_registered() as name:
        assert name in list_models()
    assert name not in list_models()
