"""The shipped model: compact, self-describing, reproducible from the config in the repo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.models import frames_to_input
from vbp_live.train.config import Config, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "vbp_live" / "assets" / "netsvf_synth.pt"


def test_shipped_checkpoint_is_compact_and_complete():
    assert ASSET.stat().st_size < 8e6
    ck = load_checkpoint(ASSET)
    ck.check_model("netsvf", {"height": 125, "width": 640})
    assert ck.crop == CROP_PRESETS["netsvf"] and ck.train_state is None
    assert {v.dtype for v in ck.state_dict.values() if v.is_floating_point()} == {torch.float16}
    test = ck.meta["test"]
    assert test["frames"] > 1000 and 0 < test["val_rmse_deg"] < 30


# keys added after the shipped model was trained; they change where results are shown or the speed
# (channels_last: the memory format, same values up to float rounding), not what is learned, or
# default to what it did (init_from: "" = random initialization)
LATER_KEYS = {("train", "tensorboard"), ("train", "channels_last"), ("snapshot", "video"), ("train", "init_from")}
# sections added after it was trained: absent from its config = their defaults (augment: off)
LATER_SECTIONS = {"augment"}


def test_shipped_config_is_the_one_in_the_repo():
    ck = load_checkpoint(ASSET)
    repo = config_to_dict(load_config(ROOT / "configs" / "shipped_netsvf.yaml"))
    for section, key in LATER_KEYS:
        if key not in ck.config.get(section, {}):
            repo[section].pop(key)
    for section in LATER_SECTIONS:
        if section not in ck.config:
            assert repo.pop(section) == config_to_dict(Config())[section]
    assert ck.config == repo


def test_shipped_model_runs():
    model = load_checkpoint(ASSET).build_model()
    frame = np.full((2, 125, 640), 90, np.uint8)
    frame[1, :, 300:310] = 250  # a bright marking
    with torch.no_grad():
        out = model(frames_to_input(frame))  # (2, 1)
    assert out.shape == (2, 1) and torch.isfinite(out).all() and not model.training
