"""The shipped models: compact, self-describing, reproducible from the configs in the repo.

``nethvf`` (the default) and ``netsvf``: trained on 96 randomized synthetic drives by
scripts/train_randomized.sh; ``netsvf-fixed``: the earlier NetSVF of one fixed-world drive
(scripts/train_shipped.sh).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.models import frames_to_input
from vbp_live.stream.session import SHIPPED, SHIPPED_MODELS
from vbp_live.train.config import config_diff, config_from_dict, config_to_dict, load_config
from vbp_live.train.loop import RESUMABLE_CHANGES

ROOT = Path(__file__).resolve().parents[1]
ASSET = SHIPPED_MODELS["netsvf-fixed"]
# name -> (model, the crop scripts/train_randomized.sh prepares (chosen on real dashcams; its reference
# horizon 0.47 H is stored at export, --horizon), the shipped stage's config)
RANDOMIZED = {
    "netsvf": ("netsvf", CropSpec(top=0.52, bottom=0.72, out_height=125, out_width=640, horizon=0.47),
               "randomized_netsvf_nominal"),
    "nethvf": ("nethvf", CropSpec(top=0.38, bottom=0.72, out_height=125, out_width=351, horizon=0.47),
               "randomized_nethvf_pitch_control"),
}
# the held-out drives, and the randomized ones again with the band moved to each drive's horizon
HELD_OUT = {"heldout_201", "heldout_202", "heldout_203", "heldout_fixed_2",
            "heldout_201_horizon", "heldout_202_horizon", "heldout_203_horizon"}


def test_every_shipped_model_is_tested_and_the_default_is_the_randomized_nethvf():
    assert set(SHIPPED_MODELS) == set(RANDOMIZED) | {"netsvf-fixed"} and SHIPPED_MODELS["nethvf"] == SHIPPED


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_checkpoint_is_compact_and_complete(name):
    asset = SHIPPED_MODELS[name]
    assert asset.stat().st_size < 8e6
    ck = load_checkpoint(asset)
    model, crop, _ = RANDOMIZED[name]
    ck.check_model(model, {"height": crop.out_height, "width": crop.out_width})
    assert ck.crop == crop and ck.train_state is None
    assert {v.dtype for v in ck.state_dict.values() if v.is_floating_point()} == {torch.float16}
    tests = ck.meta["test"]  # every held-out drive, measured on the fp16 weights as shipped
    assert {k.rsplit("_", 1)[0] for k in tests} == HELD_OUT
    for t in tests.values():
        assert t["frames"] > 300 and 0 < t["val_rmse_deg"] < 30


@pytest.mark.parametrize("name", RANDOMIZED)
def test_randomized_config_is_the_one_in_the_repo(name):
    ck = load_checkpoint(SHIPPED_MODELS[name])
    repo = config_to_dict(load_config(ROOT / "configs" / f"{RANDOMIZED[name][2]}.yaml"))
    saved = config_to_dict(config_from_dict(ck.config))  # keys added since: their defaults, as a resume reads it
    assert [k for k in config_diff(saved, repo) if k not in RESUMABLE_CHANGES] == []  # as a resume checks
    assert ck.config["data"]["path"] == repo["data"]["path"] and ck.config["run_dir"] == repo["run_dir"]


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_model_runs(name):
    ck = load_checkpoint(SHIPPED_MODELS[name])
    model, (h, w) = ck.build_model(), (ck.crop.out_height, ck.crop.out_width)
    frame = np.full((2, h, w), 90, np.uint8)
    frame[1, :, w // 2:w // 2 + 10] = 250  # a bright marking
    with torch.no_grad():
        out = model(frames_to_input(frame))  # (2, 1)
    assert out.shape == (2, 1) and torch.isfinite(out).all() and not model.training


def test_fixed_world_checkpoint_is_compact_and_complete():
    assert ASSET.stat().st_size < 8e6
    ck = load_checkpoint(ASSET)
    ck.check_model("netsvf", {"height": 125, "width": 640})
    assert ck.crop == CROP_PRESETS["netsvf"] and ck.train_state is None
    assert {v.dtype for v in ck.state_dict.values() if v.is_floating_point()} == {torch.float16}
    test = ck.meta["test"]
    assert test["frames"] > 1000 and 0 < test["val_rmse_deg"] < 30


def test_fixed_world_config_is_the_one_in_the_repo():
    """Keys added since it was trained read as their defaults (augment off, no pairs, every frame
    once), as a resume reads them: what it learned is what the file says."""
    ck = load_checkpoint(ASSET)
    saved = config_to_dict(config_from_dict(ck.config))
    assert saved == config_to_dict(load_config(ROOT / "configs" / "shipped_netsvf.yaml"))
