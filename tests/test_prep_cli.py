"""``vbp-live prep`` from the command line: config handling, summary, and interrupted runs.

The interruption tests kill a real ``vbp-live prep`` process (SIGKILL and SIGINT) in the middle
of pass 2, then run the same command again: the result must be byte-identical to a run that
was never interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from prep_fixtures import T0, interrupt_prep, steering_series, write_bag

from data_prep.config import PrepConfig, load_config
from vbp_live.cli.main import main
from vbp_live.core.config import Override
from vbp_live.core.errors import ConfigError
from vbp_live.io.dataset import DatasetError, PreparedDataset

ROOT = Path(__file__).resolve().parents[1]
MS = 1_000_000
N_FRAMES = 1500


def test_configs_prep_yaml_is_the_defaults():
    assert load_config(ROOT / "configs" / "prep.yaml") == PrepConfig()
    assert yaml.safe_load((ROOT / "configs" / "prep.yaml").read_text()) == PrepConfig().to_dict()


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("sync:\n  methd: zoh\n")
    with pytest.raises(ConfigError, match=r"p.yaml:2: unknown key 'sync.methd'; known keys: method, max_gap_s$"):
        load_config(bad)
    with pytest.raises(ConfigError, match="^override filter.min_speed_mps='fast': filter.min_speed_mps must be a num"):
        load_config(None, {"filter.min_speed_mps": "fast"})
    with pytest.raises(ConfigError, match="^--set sync.method=cubic: sync.method must be one of linear, zoh"):
        load_config(None, ["sync.method=cubic"])
    with pytest.raises(ConfigError,
                       match="^--set crop.preset=resnet: crop.preset must be one of donkey, nethvf, netsvf"):
        load_config(None, ["crop.preset=resnet"])
    with pytest.raises(ConfigError, match="^--set crop.bottom=0.5: crop: crop band needs"):
        load_config(None, ["crop.top=0.9", "crop.bottom=0.5"])
    bad.write_text("decode:\n  threads: 0\n")
    with pytest.raises(ConfigError, match=r"p.yaml:2: decode.threads must be >= 1, got 0$"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"^--max-gap -1.0: sync.max_gap_s must be > 0 or null"):
        load_config(None, [Override("sync.max_gap_s", -1.0, "--max-gap -1.0")])


def test_cli_runs_and_prints_the_summary(tmp_path, capsys):
    rng = np.random.default_rng(1)
    frames = [(T0 + 100 * MS + k * 50 * MS, _jpeg(rng)) for k in range(20)]
    steer = [(t, a, 4.0 if t < T0 + 400 * MS else 8.0) for t, a, _ in steering_series(T0, T0 + 1000 * MS)]
    bag = write_bag(tmp_path / "a.bag", frames, steer)
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("crop:\n  preset: nethvf\nsplit:\n  test_count: 3\n")
    rc = main(["prep", str(bag), "-o", str(tmp_path / "out"), "--config", str(cfg), "--sync", "zoh",
               "--set", "sync.max_gap_s=0.5", "--no-progress", "--bench"])
    out = capsys.readouterr().out
    assert rc == 0
    ds = PreparedDataset(tmp_path / "out")
    assert ds.frames.shape[1:] == (125, 351) and list(ds.split).count("test") == 3
    man = ds.manifest["preprocessing"]
    assert man["sync"] == {"method": "zoh", "max_gap_s": 0.5} and man["split"]["test_count"] == 3
    dropped = ds.manifest["counts"]["dropped"]["slow"]
    assert dropped > 0 and "dropped: slow" in out and "speed <= filter.min_speed_mps" in out
    assert "frames/s" in out and "decode" in out and "preprocess" in out and "read (camera frames)" in out
    rc = main(["prep", str(bag), "-o", str(tmp_path / "out"), "--no-progress"])
    assert rc == 1 and "already exists" in capsys.readouterr().err
    rc = main(["prep", str(bag), "-o", str(tmp_path / "o2"), "--steering-topic", "/nope", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "/nope" in err and "Topics present" in err and "/vehicle/steering_report" in err


@pytest.mark.parametrize("model", ["netsvf", "nethvf"])
def test_crop_of_a_shipped_model_prepares_data_that_fits_it(tmp_path, capsys, model):
    from vbp_live.io.checkpoint import load_checkpoint
    from vbp_live.stream.session import SHIPPED_MODELS

    rng = np.random.default_rng(2)
    frames = [(T0 + 100 * MS + k * 50 * MS, _jpeg(rng)) for k in range(12)]
    bag = write_bag(tmp_path / "a.bag", frames, list(steering_series(T0, T0 + 1000 * MS)))
    assert main(["prep", str(bag), "-o", str(tmp_path / "out"), "--crop-of", model, "--no-progress"]) == 0
    assert PreparedDataset(tmp_path / "out").crop == load_checkpoint(SHIPPED_MODELS[model]).crop  # init_from accepts it
    capsys.readouterr()
    rc = main(["prep", str(bag), "-o", str(tmp_path / "o2"), "--crop-of", model, "--set", "crop.top=0.3"])
    assert rc == 1 and capsys.readouterr().err.strip() == (
        f"vbp-live prep: error: --crop-of {model}: the crop prep would write differs from the model's in top")
    assert main(["prep", str(bag), "-o", str(tmp_path / "o3"), "--crop-of", str(tmp_path / "none.pt")]) == 1
    assert "none.pt: no such checkpoint file" in capsys.readouterr().err


def test_horizon_moves_the_models_band_to_the_recordings_horizon(tmp_path, capsys):
    from vbp_live.core.preprocess import preprocess_frame
    from vbp_live.io.checkpoint import load_checkpoint
    from vbp_live.stream.session import SHIPPED_MODELS

    rng = np.random.default_rng(3)
    frames = [(T0 + 100 * MS + k * 50 * MS, _jpeg(rng)) for k in range(6)]
    bag = write_bag(tmp_path / "a.bag", frames, list(steering_series(T0, T0 + 1000 * MS)))
    args = ["prep", str(bag), "--crop-of", "nethvf", "--test-fraction", "0", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "out"), "--horizon", "0.56"]) == 0
    want = load_checkpoint(SHIPPED_MODELS["nethvf"]).crop.at_horizon(0.56)  # rows 0.47-0.81
    ds = PreparedDataset(tmp_path / "out")
    assert ds.crop == want and (want.top, want.bottom) == (0.47, 0.81)
    first = cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(ds.frames[0], preprocess_frame(first, want))  # the frames come from the moved band
    capsys.readouterr()
    assert main([*args[:2], "-o", str(tmp_path / "o2"), "--model", "netsvf", "--horizon", "0.56"]) == 1
    assert "crop.source_horizon: the crop has no reference horizon" in capsys.readouterr().err


def test_each_recording_can_have_its_own_horizon(tmp_path, capsys):
    from vbp_live.core.preprocess import preprocess_frame
    from vbp_live.io.checkpoint import load_checkpoint
    from vbp_live.stream.session import SHIPPED_MODELS

    rng = np.random.default_rng(4)
    shots = {"a.bag": [(T0 + 100 * MS + k * 50 * MS, _jpeg(rng)) for k in range(4)],
             "b.bag": [(T0 + 2000 * MS + k * 50 * MS, _jpeg(rng)) for k in range(4)]}
    bags = [str(write_bag(tmp_path / name, f, list(steering_series(T0, T0 + 3000 * MS)))) for name, f in shots.items()]
    args = ["prep", *bags, "--crop-of", "nethvf", "--test-fraction", "0", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "out"), "--set", "crop.source_horizons={a.bag: 0.56}"]) == 0
    ds, base = PreparedDataset(tmp_path / "out"), load_checkpoint(SHIPPED_MODELS["nethvf"]).crop
    assert ds.crop == base and ds.sources == ["a.bag"] * 4 + ["b.bag"] * 4  # the dataset's crop: the reference band
    for k, (name, shot) in enumerate([(n, s) for n, f in shots.items() for _, s in f]):
        band = base.at_horizon(0.56) if name == "a.bag" else base  # a.bag from rows 0.47-0.81, b.bag as the model's
        image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(ds.frames[k], preprocess_frame(image, band))
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "o2"), "--set", "crop.source_horizons={c.bag: 0.5}"]) == 1
    assert "crop.source_horizons names c.bag, not among the recording files (a.bag, b.bag)" in capsys.readouterr().err


def _jpeg(rng: np.random.Generator, w: int = 320, h: int = 240) -> bytes:
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory):
    rng = np.random.default_rng(0)
    pics = [_jpeg(rng) for _ in range(8)]
    frames = [(T0 + 100 * MS + k * 50 * MS, pics[k % 8]) for k in range(N_FRAMES)]
    frames[N_FRAMES // 3] = (frames[N_FRAMES // 3][0], b"not a jpeg")  # a rejected frame must resume too
    steer = steering_series(T0, T0 + (N_FRAMES + 4) * 50 * MS)
    return write_bag(tmp_path_factory.mktemp("long") / "long.bag", frames, steer)


def _cmd(bag: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vbp_live.cli.main", "prep", str(bag), "-o", str(out), "--no-progress",
            "--set", "output.checkpoint_every=60", "--threads", "2"]


def _start_and_interrupt(bag: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    return interrupt_prep(_cmd(bag, out), out.parent / (out.name + ".partial") / "progress.yaml", sig, ROOT)


def _same_dataset(a: Path, b: Path) -> None:
    for name in ("frames.u8", "index.csv", "manifest.yaml", "dropped.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))


@pytest.fixture(scope="module")
def reference(long_bag, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ds"
    subprocess.run(_cmd(long_bag, out), cwd=ROOT, check=True, capture_output=True)
    ds = PreparedDataset(out)
    assert len(ds) == N_FRAMES - 1 and ds.manifest["counts"]["dropped"] == {"corrupt_image": 1}
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill-9", "ctrl-c", "sigterm"])
def test_interrupted_run_resumes_to_identical_dataset(tmp_path, long_bag, reference, sig):
    out = tmp_path / "ds"
    first = _start_and_interrupt(long_bag, out, sig)
    assert first.returncode == (-9 if sig == signal.SIGKILL else 128 + sig), first.stderr  # stopped mid-run
    assert not out.exists()  # nothing that looks like a dataset
    with pytest.raises(DatasetError, match="manifest.yaml is missing"):
        PreparedDataset(out)
    partial = out.parent / "ds.partial"
    assert (partial / "progress.yaml").exists() and not (partial / "manifest.yaml").exists()
    if sig != signal.SIGKILL:  # SIGTERM is handled like Ctrl-C
        assert "run the same command again to resume" in first.stderr
    done_before = yaml.safe_load((partial / "progress.yaml").read_text())["num_rows"]
    assert 0 < done_before < N_FRAMES - 1
    second = subprocess.run(_cmd(long_bag, out), cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    assert not partial.exists()
    _same_dataset(reference, out)


def test_restart_and_changed_config_start_clean(tmp_path, long_bag, reference):
    out = tmp_path / "ds"
    first = _start_and_interrupt(long_bag, out, signal.SIGKILL)
    assert first.returncode == -9
    changed = subprocess.run(_cmd(long_bag, out) + ["--min-speed", "4.0"], cwd=ROOT, capture_output=True, text=True)
    assert changed.returncode == 0 and "resumed" not in changed.stdout  # other config: progress not reused
    assert (out / "frames.u8").read_bytes() == (reference / "frames.u8").read_bytes()  # all > 4 m/s: same frames
    again = subprocess.run(_cmd(long_bag, tmp_path / "r") + ["--restart"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "resumed" not in again.stdout
    _same_dataset(reference, tmp_path / "r")
