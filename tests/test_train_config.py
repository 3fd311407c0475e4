"""Typed training config: YAML + overrides, unknown keys and wrong types fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from vbp_live.core.preprocess import CropSpec
from vbp_live.train.config import ConfigError, config_diff, config_from_dict, config_to_dict, load_config
from vbp_live.train.data import TrainData
from vbp_live.train.loop import build_model

ROOT = Path(__file__).resolve().parents[1]


TRAIN_CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if p.stem != "prep")  # prep.yaml: data_prep's


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_every_training_config_in_the_repo_loads(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.model.name in name  # netsvf.yaml, shipped_netsvf.yaml, randomized_nethvf_long.yaml, ...
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_paper_protocol_is_the_default():
    cfg = load_config(None, ["data.path=x"])
    assert (cfg.train.epochs, cfg.train.loss) == (32, "mse")
    assert cfg.snapshot.epochs == [0.1, 0.5, 1.0, 4.0, 16.0, 32.0]


def test_overrides_are_typed():
    cfg = load_config(None, ["data.path=d", "optim.lr=1", "optim.gamma=1e-3", "snapshot.epochs=[0.25, 2]",
                             "train.amp=bf16", "model.args={height: 135}"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.optim.gamma == 0.001
    assert cfg.snapshot.epochs == [0.25, 2.0]
    assert cfg.model.args == {"height": 135}


@pytest.mark.parametrize("override, words", [
    ("train.epochs=abc", ["--set train.epochs=abc:", "train.epochs must be an integer", "'abc'"]),
    ("train.epochs=2.5", ["train.epochs must be an integer, got 2.5"]),
    ("train.batch_size=true", ["train.batch_size must be an integer, got true"]),
    ("train.progress=3", ["train.progress must be true or false, got 3"]),
    ("snapshot.epochs=[0.1, x]", ["snapshot.epochs[1] must be a number, got 'x'"]),
    ("optim.lrr=0.1", ["--set optim.lrr=0.1: unknown key 'optim.lrr'; known keys: lr, momentum"]),
    ("nope=1", ["unknown key 'nope'; known keys: run_dir, model, data"]),
    ("train.loss=l1", ["train.loss must be one of mse, nll; got 'l1'"]),
    ("optim.schedule=linear", ["optim.schedule", "cosine"]),
    ("train.epochs", ["--set train.epochs: expected KEY=VALUE"]),
    ("train.device=gpu0", ["train.device must be auto, cpu, cuda or cuda:N"]),
    ("train.epochs=0", ["--set train.epochs=0: train.epochs must be >= 1, got 0"]),
])
def test_bad_overrides_fail_with_a_clear_message(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.path=d", override])
    for w in words:
        assert w in str(e.value)


def test_unknown_key_in_file_names_the_file_and_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"path": "d", "pth": "x"}}))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:3: unknown key 'data.pth'; known keys: kind, path, train_split,")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_bad_set_key_is_not_blamed_on_the_file():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs" / "netsvf.yaml", ["model.bogus=1"])
    assert str(e.value) == "--set model.bogus=1: unknown key 'model.bogus'; known keys: name, args"


def test_file_values_follow_the_same_rule_as_set(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  path: d\noptim:\n  lr: 1e-3\n  schedule: linear\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}:5: optim.schedule must be one of constant, step, cosine; got 'linear'"
    p.write_text("data:\n  path: d\noptim:\n  lr: -1e-3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}:4: optim.lr must be in (0, 10], got -0.001"


def test_prepared_data_needs_a_path():
    with pytest.raises(ConfigError, match="^data.path is empty"):
        load_config(None, [])
    with pytest.raises(ConfigError, match=r"signnet\.yaml:8: data.path is empty"):
        load_config(ROOT / "configs" / "signnet.yaml", ["data.kind=prepared"])


def test_config_diff_names_dotted_keys():
    a = config_to_dict(load_config(None, ["data.path=d"]))
    b = config_to_dict(load_config(None, ["data.path=d", "optim.lr=0.5", "train.max_steps=3", "model.args={w: 2}"]))
    assert config_diff(a, b) == ["model.args.w", "optim.lr", "train.max_steps"]


def test_checkpoint_config_is_checked_like_a_file():
    data = config_to_dict(load_config(None, ["data.path=d"]))
    data["optim"]["lr"] = "fast"
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, "run/last.pt")
    assert str(e.value) == "run/last.pt: optim.lr must be a number, got 'fast'"


def test_cli_reports_config_errors_in_one_line(capsys):
    from vbp_live.cli.main import main

    assert main(["train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", "train.epochs=abc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "vbp-live train: error: --set train.epochs=abc: train.epochs must be an integer, got 'abc'"


@pytest.mark.parametrize("override, words", [
    ("optim.lr=-0.01", "optim.lr must be in (0, 10]"),
    ("optim.lr=1e6", "optim.lr must be in (0, 10]"),
    ("optim.lr=.nan", "optim.lr must be in (0, 10]"),
    ("optim.gamma=-1", "optim.gamma must be > 0"),
    ("optim.grad_clip=-1", "optim.grad_clip must be >= 0"),
    ("optim.warmup_epochs=-2", "optim.warmup_epochs must be >= 0"),
    ("optim.momentum=1.5", "optim.momentum must be in [0, 1)"),
    ("optim.milestones=[4, -1]", "optim.milestones must be epochs >= 0"),
    ("train.max_steps=-5", "train.max_steps must be >= 0"),
    ("train.threads=-1", "train.threads must be in [0, 1024]"),
    ("train.threads=100000", "train.threads must be in [0, 1024]"),
    ("train.seed=9223372036854775808", "train.seed must be in [0, 2**63)"),
    ("snapshot.indices=[3, -2]", "snapshot.indices must be dataset rows >= 0"),
    ("data.prefetch=-1", "data.prefetch must be >= 0"),
])
def test_nonsense_numbers_are_refused_before_any_work(override, words):
    """Out-of-range settings fail at load time, naming the --set and the key (not after training starts)."""
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.path=x", override])
    msg = str(e.value)
    assert words in msg and f"--set {override}" in msg and "\n" not in msg


def test_frames_too_small_for_the_net_are_a_config_error():
    crop = CropSpec(top=0.5, bottom=0.9, out_height=40, out_width=60)
    data = TrainData(frames=np.zeros((4, 40, 60), np.uint8), targets=np.zeros(4, np.float32),
                     train_idx=np.arange(3), val_idx=np.arange(3, 4), crop=crop)
    cfg = load_config(ROOT / "configs" / "netsvf.yaml", ["data.path=runs/tiny"])
    with pytest.raises(ConfigError, match=r"^runs/tiny: its 40x60 \(H x W\) frames are too small for netsvf \("):
        build_model(cfg, data)


def test_a_regression_net_on_the_sign_classes_is_a_config_error(tmp_path, capsys):
    from vbp_live.cli.main import main

    assert main(["train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", "data.kind=synthetic_signs",
                 "--set", "train.loss=nll", "--set", "data.synthetic_frames=8", "--set", f"run_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("vbp-live train: error: model.name 'netsvf' has no class output for data.kind synthetic_signs "
                   "(models with one: signnet)")
