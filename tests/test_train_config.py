"""Typed training config: YAML + overrides, unknown keys and wrong types fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vbp_live.train.config import ConfigError, config_diff, config_from_dict, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["netsvf", "nethvf", "signnet", "shipped_netsvf"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.model.name == name.replace("shipped_", "")
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
    ("train.epochs=abc", ["train.epochs", "int", "abc"]),
    ("train.epochs=2.5", ["train.epochs", "int"]),
    ("train.batch_size=true", ["train.batch_size", "int"]),
    ("train.progress=3", ["train.progress", "bool"]),
    ("snapshot.epochs=[0.1, x]", ["snapshot.epochs[1]", "float"]),
    ("optim.lrr=0.1", ["optim.lrr", "unknown", "lr"]),
    ("nope=1", ["nope", "unknown"]),
    ("train.loss=l1", ["train.loss", "mse", "nll"]),
    ("optim.schedule=linear", ["optim.schedule", "cosine"]),
    ("train.epochs", ["key=value"]),
    ("train.epochs=0", ["train.epochs", ">= 1"]),
])
def test_bad_overrides_fail_with_a_clear_message(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.path=d", override])
    for w in words:
        assert w in str(e.value)


def test_unknown_key_in_file_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"path": "d", "pth": "x"}}))
    with pytest.raises(ConfigError, match=r"c\.yaml.*data\.pth"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_prepared_data_needs_a_path():
    with pytest.raises(ConfigError, match="data.path"):
        load_config(None, [])


def test_config_diff_names_dotted_keys():
    a = config_to_dict(load_config(None, ["data.path=d"]))
    b = config_to_dict(load_config(None, ["data.path=d", "optim.lr=0.5", "train.max_steps=3"]))
    assert config_diff(a, b) == ["optim.lr", "train.max_steps"]


def test_cli_reports_config_errors_in_one_line(capsys):
    from vbp_live.cli.main import main

    assert main(["train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", "train.epochs=abc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vbp-live train: error:") and "train.epochs: expected int" in err and "\n" not in err
