"""Hostile checkpoints and datasets fail with one line naming the file and key, before any work (issue 15)."""

from __future__ import annotations

import math
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from stream_util import tiny_checkpoint
from train_helpers import make_steering_dataset

from vbp_live.core.errors import ConfigError
from vbp_live.io.checkpoint import CheckpointError, load_checkpoint
from vbp_live.io.dataset import FINGERPRINT_KEY, DatasetError, PreparedDataset
from vbp_live.models import create_model
from vbp_live.train.config import load_config
from vbp_live.train.run import train


def mutate(src: Path, dst: Path, change) -> Path:
    """A copy of checkpoint ``src`` whose raw dict was changed by ``change(raw)``."""
    raw = torch.load(src, weights_only=True)
    change(raw)
    torch.save(raw, dst)
    return dst


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("c") / "tiny.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ckpt) -> Path:
    """The tiny checkpoint with a train_state of the shape ``vbp-live train`` writes (what --resume reads)."""
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"epoch": 1, "step_in_epoch": 2, "global_step": 6, "steps_per_epoch": 4, "world": 1,
             "epoch_sums": [0.5, 32, 1.0], "optimizer": opt.state_dict(),
             "scaler": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
             "rng": {"torch": torch.get_rng_state()}}
    path = mutate(ckpt, tmp_path_factory.mktemp("t") / "trained.pt", lambda raw: raw.update(train_state=state))
    assert load_checkpoint(path).train_state["global_step"] == 6
    return path


def test_args_that_build_a_huge_model_are_refused_before_allocating(tmp_path, ckpt):
    def huge(raw):
        raw["model"]["args"] = {"height": 1000, "width": 2050}  # ~890 MB of float32 weights

    with torch.device("meta"):
        n_params = sum(p.numel() for p in create_model("netsvf", height=1000, width=2050).parameters())
    assert n_params * 4 > 800e6
    bad = mutate(ckpt, tmp_path / "huge.pt", huge)
    assert bad.stat().st_size < 20e6
    ck = load_checkpoint(bad)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(CheckpointError, match=r"huge\.pt: weights do not fit netsvf.*state_dict\.head\.1\.weight"):
        ck.build_model()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # nothing near 890 MB was made


@pytest.mark.parametrize(("args", "key"), [
    ({"foo": 1}, r"model\.args\.foo is not an argument of netsvf"),
    ({"height": "125"}, r"model\.args\.height is '125' \(str\), netsvf needs int"),
    ({"height": 125.5}, r"model\.args\.height is 125\.5 \(float\)"),
    ({"height": True}, r"model\.args\.height is True \(bool\)"),
])
def test_wrong_model_args_name_the_key(tmp_path, ckpt, args, key):
    bad = mutate(ckpt, tmp_path / "a.pt", lambda raw: raw["model"].update(args=args))
    with pytest.raises(CheckpointError, match=r"a\.pt: " + key):
        load_checkpoint(bad)


def test_unknown_model_name(tmp_path, ckpt):
    bad = mutate(ckpt, tmp_path / "n.pt", lambda raw: raw["model"].update(name="resnet9000"))
    with pytest.raises(CheckpointError, match=r"n\.pt: model\.name 'resnet9000' is not a registered model"):
        load_checkpoint(bad)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused_at_load(tmp_path, ckpt, value):
    def poison(raw):
        raw["state_dict"]["head.3.bias"][0] = value

    bad = mutate(ckpt, tmp_path / "w.pt", poison)
    with pytest.raises(CheckpointError, match=r"w\.pt: state_dict\.head\.3\.bias holds (NaN|infinite) values"):
        load_checkpoint(bad)


@pytest.mark.parametrize(("change", "key"), [
    (lambda st: st.pop("steps_per_epoch"), r"train_state\.steps_per_epoch is missing"),
    (lambda st: st.update(epoch="3"), r"train_state\.epoch is str, expected int"),
    (lambda st: st.update(global_step=-4), r"train_state\.global_step is -4"),
    (lambda st: st["rng"].pop("torch"), r"train_state\.rng\.torch is missing"),
])
def test_damaged_train_state_names_the_key(tmp_path, trained, change, key):
    bad = mutate(trained, tmp_path / "s.pt", lambda raw: change(raw["train_state"]))
    with pytest.raises(CheckpointError, match=r"s\.pt: " + key):
        load_checkpoint(bad)


def test_the_cli_prints_one_line_for_a_poisoned_checkpoint(tmp_path, ckpt):
    def poison(raw):
        raw["state_dict"]["features.0.1.weight"][0, 0, 0, 0] = math.nan

    bad = mutate(ckpt, tmp_path / "p.pt", poison)
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((48, 64, 3), np.uint8))
    run = subprocess.run([sys.executable, "-m", "vbp_live.cli.main", "run", str(frames), "-c", str(bad),
                          "--no-output", "--quiet"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith("p.pt: state_dict.features.0.1.weight holds NaN values "
                                                        "(a diverged or damaged model)")


def test_training_refuses_model_args_it_cannot_build(tmp_path):
    ds = make_steering_dataset(tmp_path / "ds", n=48)
    cfg = load_config(None, [f"data.path={ds}", f"run_dir={tmp_path / 'run'}", "model.name=netsvf",
                             "model.args={foo: 1}", "train.progress=false"])
    with pytest.raises(ConfigError, match=r"model\.args\.foo is not an argument of netsvf"):
        train(cfg)


def test_a_yaml_list_as_config_is_one_clear_error(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- lr: 0.1\n- epochs: 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping"):
        load_config(bad)


def _edit_manifest(ds: Path, change) -> None:
    man = ds / "manifest.yaml"
    data = yaml.safe_load(man.read_text())
    change(data)
    man.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_frame_shape_that_lies_with_the_same_byte_count_is_detected(tmp_path):
    ds = make_steering_dataset(tmp_path / "ds", n=24, height=24, width=48)
    good = PreparedDataset(ds)
    assert good.manifest[FINGERPRINT_KEY].startswith("sha256:")
    _edit_manifest(ds, lambda m: m.update(frame_shape=[12, 96]))  # same bytes per frame, scrambled rows
    with pytest.raises(DatasetError, match=r"manifest\.yaml: frame_shape \[12, 96\] or frames\.u8 was changed"):
        PreparedDataset(ds)


def test_replaced_frames_are_detected(tmp_path):
    ds = make_steering_dataset(tmp_path / "ds", n=24, height=24, width=48)
    data = bytearray((ds / "frames.u8").read_bytes())
    data[:100] = bytes(100)  # frame 0 changed, same size
    (ds / "frames.u8").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=FINGERPRINT_KEY):
        PreparedDataset(ds)


@pytest.mark.parametrize(("change", "match"), [
    (lambda m: m.update(frame_shape=[24, "x"]), r"frame_shape must be"),
    (lambda m: m.update(frame_shape=[100000, 100000]), r"frame_shape must be"),
    (lambda m: m.update(num_frames="many"), r"manifest says num_frames 'many'"),
    (lambda m: m.pop("crop"), r"crop is not a valid crop"),
])
def test_malformed_manifests_are_one_line(tmp_path, change, match):
    ds = make_steering_dataset(tmp_path / "ds", n=8)
    _edit_manifest(ds, change)
    with pytest.raises(DatasetError, match=match):
        PreparedDataset(ds)


def test_a_malformed_index_names_the_file(tmp_path):
    ds = make_steering_dataset(tmp_path / "ds", n=8)
    lines = (ds / "index.csv").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "soon", 1)
    (ds / "index.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"index\.csv: malformed \(ValueError"):
        PreparedDataset(ds)
