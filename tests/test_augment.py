"""Training augmentation: flip, shifts and their steering correction, photometric changes, training split only.

Sign convention (vbp_live's): steering wheel angle positive = left. Shifting the image content to
the right by ``dx`` pixels is the view after the car yawed *left*: the road ahead now appears to
the right of the heading, so the driver (pure pursuit) steers more to the right, i.e. the angle
*decreases*: ``swa' = swa - dx * shift_swa_per_px``. The test against the synthetic world's own
camera and controller below checks that sign and size rather than taking them on trust.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import make_steering_dataset, tiny_registered

from vbp_live.core.errors import ConfigError
from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.io.checkpoint import CheckpointError, load_checkpoint
from vbp_live.models import frames_to_input
from vbp_live.synth.camera import Camera, world_to_vehicle
from vbp_live.synth.road import build_road
from vbp_live.synth.vehicle import VehicleParams, pure_pursuit_swa
from vbp_live.train import Trainer, load_config, load_data
from vbp_live.train.augment import (
    AugmentDraw,
    Augmenter,
    auto_swa_per_px,
    draw,
    geometric,
    photometric,
    photometric_channels,
)
from vbp_live.train.config import AugmentConfig
from vbp_live.train.data import BatchLoader, epoch_batches, shard
from vbp_live.train.run import train

SVF = CROP_PRESETS["netsvf"]
OFF = AugmentConfig(enabled=True, brightness=0.0, contrast=0.0, shift_px=0, shift_y_px=0, flip_prob=0.0)


@pytest.fixture(scope="module", autouse=True)
def _tiny_steer():
    with tiny_registered():
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_steering_dataset(tmp_path_factory.mktemp("data") / "ds", n=96)  # 72 train / 24 test, 24 x 48


def tiny(run_dir: Path, ds: Path, *extra: str):
    base = [f"run_dir={run_dir}", "model.name=tiny_steer", f"data.path={ds}", "train.epochs=2",
            "train.batch_size=8", "train.progress=false", "train.threads=1", "optim.lr=0.05", "snapshot.epochs=[]"]
    return load_config(None, base + list(extra))


def frames_like(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def manual(n: int, flip=False, dx=0, dy=0, brightness=0.0, contrast=1.0) -> AugmentDraw:
    values = zip((flip, dx, dy, brightness, contrast), (bool, np.int64, np.int64, np.float64, np.float64), strict=True)
    return AugmentDraw(*(np.full(n, v, dt) for v, dt in values))


def gather_reference(frames: np.ndarray, d: AugmentDraw) -> np.ndarray:
    """The definition as one gather: out[b, r, c] = f[clip(r - dy), clip(c - dx)], f mirrored where flipped."""
    b, h, w = frames.shape[:3]
    cols = np.clip(np.arange(w) - d.shift_x[:, None], 0, w - 1)  # (B, W)
    cols = np.where(d.flip[:, None], w - 1 - cols, cols)  # (B, W)
    rows = np.clip(np.arange(h) - d.shift_y[:, None], 0, h - 1)  # (B, H)
    return frames[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


# --------------------------------------------------------------------------- flip and shifts
@pytest.mark.parametrize("shape", [(4, 12, 20), (4, 12, 20, 3)], ids=["gray", "colour"])
def test_flip_mirrors_the_image_and_negates_the_angle(shape):
    aug = Augmenter(replace(OFF, flip_prob=1.0), SVF, shape[1:3], seed=0)
    frames, angles = frames_like(shape), np.array([0.3, -0.1, 0.0, 1.2], np.float32)
    out, y = aug.apply(frames, angles, aug.draw(0, 0, 4))
    assert np.array_equal(out, frames[:, :, ::-1]) and out.flags.c_contiguous
    assert y.dtype == np.float32 and np.array_equal(y, -angles)


def test_shift_moves_the_content_and_replicates_the_border():
    frames = np.zeros((2, 6, 10), np.uint8)
    frames[:, :, 4] = 200  # a bright column
    frames[:, :, 0], frames[:, 0, :] = 50, 90  # a marked left edge and top row
    out = geometric(frames, manual(2, dx=3, dy=2))
    assert np.array_equal(np.flatnonzero(out[0, 3] == 200), [7])  # content moved right by 3
    assert np.all(out[0, :, :3] == out[0, :, 3:4])  # left border: copies of the old edge column
    assert np.all(out[0, :2] == out[0, 2:3])  # top border: copies of the old top row
    assert out[0, 3, 3] == 50 and out[0, 2, 7] == 90  # the old edge column and top row, moved
    left = geometric(frames, manual(2, dx=-4))
    assert np.array_equal(np.flatnonzero(left[0, 3] == 200), [0]) and np.all(left[0, :, 6:] == left[0, :, 5:6])


@pytest.mark.parametrize("shape", [(16, 24, 48), (5, 9, 7, 3)], ids=["gray", "colour"])
def test_geometric_fast_path_matches_the_gather_definition(shape):
    cfg = AugmentConfig(shift_px=shape[2] - 1, shift_y_px=shape[1] - 1)  # every shift up to the whole side
    for batch in range(20):
        d = draw(cfg, shape[0], 0.5, seed=1, epoch=0, batch=batch)
        frames = frames_like(shape, batch)
        assert np.array_equal(geometric(frames, d), gather_reference(frames, d))


def test_shift_correction_sign_and_size_follow_the_synthetic_worlds_camera_and_pure_pursuit():
    """Yaw the car left by t: the road moves right in the image and pure pursuit steers right, as the formula says."""
    cam, params = Camera(), VehicleParams()
    road = build_road(np.zeros(4000))  # straight, 1 km along +x
    per_px = auto_swa_per_px(SVF)  # NetSVF: one input pixel is one frame pixel
    for yaw in (0.004, 0.01, 0.02):  # rad, left +
        fwd, left = world_to_vehicle(np.array([500.0]), np.array([0.0]), 0.0, 0.0, yaw)  # the road far ahead
        u_yawed = cam.project(fwd - cam.forward_m, left - cam.lateral_m, 0.0, 0.0)[0][0]
        dx = u_yawed - cam.cx  # image shift of the road (px, + = right)
        swa = pure_pursuit_swa(road, 100.0, 0.0, yaw, params) - pure_pursuit_swa(road, 100.0, 0.0, 0.0, params)
        assert dx > 0 and swa < 0  # road appears to the right -> steer right (negative)
        assert swa == pytest.approx(-dx * per_px, rel=0.01)
        aug = Augmenter(replace(OFF, shift_px=8), SVF, (125, 640), 0)
        y = aug.apply(np.zeros((1, 125, 640), np.uint8), np.zeros(1, np.float32), manual(1, dx=round(dx)))[1]
        assert y[0] == pytest.approx(-round(dx) * per_px, rel=1e-6) and y[0] < 0


def test_auto_correction_is_the_documented_derivation():
    k = 14.8 * 2 * 2.85 / 12 / 560  # ratio * 2 * wheelbase / look-ahead / focal, rad per pixel
    assert auto_swa_per_px(SVF) == pytest.approx(k)  # 640 px of frame -> 640 input px
    assert auto_swa_per_px(CROP_PRESETS["nethvf"]) == pytest.approx(k * 640 / 351)  # 640 -> 351
    assert math.degrees(auto_swa_per_px(SVF)) == pytest.approx(0.719, abs=1e-3)
    cfg = AugmentConfig(enabled=True, shift_swa_per_px=0.002)
    assert Augmenter(cfg, SVF, (125, 640), 0).swa_per_px == 0.002
    huge = CropSpec(top=0, bottom=900, out_height=100, out_width=100, units="pixel")  # taller than 480 rows
    with pytest.raises(ConfigError, match="shift_swa_per_px=auto .* set a number"):
        Augmenter(AugmentConfig(enabled=True), huge, (100, 100), 0)


# ------------------------------------------------------------------------------ photometric
def photometric_reference(frames: np.ndarray, d: AugmentDraw) -> np.ndarray:
    x = frames.astype(np.float64)
    shape = (-1,) + (1,) * (frames.ndim - 1)
    mean = x.reshape(len(x), -1).mean(1).reshape(shape)
    y = (x - mean) * d.contrast.reshape(shape) + mean + d.brightness.reshape(shape)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(8, 24, 48), (3, 5, 6, 3)], ids=["gray", "colour"])
def test_brightness_and_contrast_match_the_formula(shape):
    d = draw(AugmentConfig(brightness=0.5, contrast=0.9), shape[0], 0.0, seed=3, epoch=1, batch=2)
    frames = frames_like(shape)
    assert np.array_equal(photometric(frames, d), photometric_reference(frames, d))
    assert np.all(photometric(np.full((1, 4, 4), 250, np.uint8), manual(1, brightness=30.0)) == 255)  # clipped


def test_brightness_of_yuv_and_hsv_moves_only_the_luma_or_value_channel():
    yuv = CropSpec(top=0.5, bottom=1.0, out_height=4, out_width=4, color="yuv", channel_order="vuy")
    assert photometric_channels(yuv).tolist() == [False, False, True]
    assert photometric_channels(CropSpec(top=0.5, bottom=1.0, out_height=4, out_width=4, color="bgr")) is None
    frames = frames_like((2, 4, 4, 3)) // 2
    out = photometric(frames, manual(2, brightness=40.0), photometric_channels(yuv))
    assert np.array_equal(out[..., :2], frames[..., :2])
    assert np.array_equal(out[..., 2], frames[..., 2] + 40)


# --------------------------------------------------------------------------- classification
def test_class_labels_never_change_and_auto_does_not_flip_signs():
    labels = np.array([3, 7, 1, 0], np.int64)
    aug = Augmenter(AugmentConfig(enabled=True, shift_px=5, brightness=0.0, contrast=0.0), SVF, (20, 20), 0,
                    regression=False)
    assert aug.flip_prob == 0.0 and aug.swa_per_px == 0.0
    d = aug.draw(0, 0, 4)
    assert not d.flip.any() and d.shift_x.any()
    out, y = aug.apply(frames_like((4, 20, 20)), labels, d)
    assert y is labels
    asked = Augmenter(replace(OFF, flip_prob=1.0), SVF, (20, 20), 0, regression=False)  # flips only when asked
    frames = frames_like((4, 20, 20))
    out, y = asked.apply(frames, labels, asked.draw(0, 0, 4))
    assert np.array_equal(out, frames[:, :, ::-1]) and y is labels


# ----------------------------------------------------------------------------- determinism
def test_draws_are_a_function_of_seed_epoch_and_batch():
    cfg = AugmentConfig()
    a = draw(cfg, 16, 0.5, seed=5, epoch=2, batch=7)
    assert all(np.array_equal(x, y) for x, y in zip(vars(a).values(), vars(draw(cfg, 16, 0.5, 5, 2, 7)).values(),
                                                     strict=True))
    for other in (draw(cfg, 16, 0.5, 6, 2, 7), draw(cfg, 16, 0.5, 5, 3, 7), draw(cfg, 16, 0.5, 5, 2, 8)):
        assert not np.array_equal(a.brightness, other.brightness)
    assert a.flip.any() and not a.flip.all() and np.abs(a.shift_x).max() <= cfg.shift_px
    assert np.abs(a.brightness).max() <= 0.2 * 255 and np.all(np.abs(a.contrast - 1) <= 0.3)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_augments_its_slice_of_the_same_global_batch(world):
    aug = Augmenter(AugmentConfig(enabled=True, shift_px=6, shift_y_px=3), SVF, (12, 20), seed=0)
    frames, angles = frames_like((10, 12, 20)), np.linspace(-1, 1, 10).astype(np.float32)
    whole_frames, whole_angles = aug.for_epoch(4, [10], first=3)(0, frames, angles)
    for rank in range(world):
        f, y = aug.for_epoch(4, [10], first=3, rank=rank, world=world)(0, shard(frames, rank, world),
                                                                       shard(angles, rank, world))
        assert np.array_equal(f, shard(whole_frames, rank, world)) and np.array_equal(y, shard(whole_angles, rank,
                                                                                                    world))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_the_loader_applies_it_per_batch_position(dataset, prefetch):
    data = load_data(tiny(Path("unused"), dataset).data)
    batches = epoch_batches(data.train_idx, 8, 0, 0)
    aug = Augmenter(AugmentConfig(enabled=True), data.crop, (24, 48), seed=0)
    epoch = aug.for_epoch(0, [len(b) for b in batches])
    got = list(BatchLoader(data.frames, data.targets, batches, prefetch=prefetch, crop=data.crop, augment=epoch))
    for i, ((x, y), rows) in enumerate(zip(got, batches, strict=True)):
        f, t = aug.apply(np.asarray(data.frames[rows]), np.asarray(data.targets[rows]), epoch.draws[i])
        assert torch.equal(x, frames_to_input(f, spec=data.crop)) and torch.equal(y, torch.from_numpy(t))
        assert not torch.equal(y, torch.as_tensor(np.asarray(data.targets[rows])))  # the angles were corrected


# ------------------------------------------------------------------ the loop: training split only
def test_validation_is_never_augmented(tmp_path, dataset):
    heavy = ["augment.enabled=true", "augment.brightness=1", "augment.contrast=0.9", "augment.flip_prob=1"]
    on, off = (Trainer(tiny(tmp_path / d, dataset, *extra), load_data(tiny(tmp_path, dataset).data))
               for d, extra in (("on", heavy), ("off", [])))
    assert on.augment is not None and off.augment is None
    assert on.validate()["val_rmse_rad"] == off.validate()["val_rmse_rad"]  # same init, same validation frames


@pytest.mark.slow
def test_max_steps_stop_then_resume_with_augmentation_is_exact(tmp_path, dataset):
    aug = ["augment.enabled=true", "augment.shift_px=3", "train.epochs=3"]  # 48 px wide: 0.17 rad per px
    plain = train(tiny(tmp_path / "plain", dataset, "train.epochs=3"))
    straight = train(tiny(tmp_path / "a", dataset, *aug))
    stopped = train(tiny(tmp_path / "b", dataset, *aug, "train.max_steps=13"))  # mid epoch 2 (9 steps an epoch)
    assert stopped.status == "max_steps"
    resumed = train(tiny(tmp_path / "b", dataset, *aug), resume=True)
    assert resumed.status == "done" and resumed.global_step == 27
    a, b, p = (load_checkpoint(r.checkpoint).state_dict for r in (straight, resumed, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert not all(torch.equal(a[k], p[k]) for k in a)  # and the augmentation did change training
    with pytest.raises(CheckpointError, match="augment.flip_prob"):
        train(tiny(tmp_path / "b", dataset, *aug, "augment.flip_prob=0.1"), resume=True)


def test_a_checkpoint_from_before_augmentation_resumes_as_off(tmp_path, dataset):
    first = train(tiny(tmp_path / "run", dataset, "train.max_steps=3"))
    ckpt = load_checkpoint(first.checkpoint)
    ckpt.config.pop("augment")  # as written before the section existed
    cfg = tiny(tmp_path / "run", dataset)
    Trainer(cfg, load_data(cfg.data)).restore(ckpt)  # no "changed settings"
    on = tiny(tmp_path / "run", dataset, "augment.enabled=true")
    with pytest.raises(CheckpointError, match="augment.enabled"):
        Trainer(on, load_data(on.data)).restore(ckpt)


# --------------------------------------------------------------------------------- the config
def test_off_by_default_and_absent_from_nothing():
    cfg = load_config(None, ["data.path=x"])
    assert cfg.augment == AugmentConfig() and not cfg.augment.enabled


@pytest.mark.parametrize("override, words", [
    ("augment.brightness=1.5", "augment.brightness must be in [0, 1] (a fraction of 255), got 1.5"),
    ("augment.contrast=1", "augment.contrast must be in [0, 1)"),
    ("augment.contrast=-0.1", "augment.contrast must be in [0, 1)"),
    ("augment.shift_px=-2", "augment.shift_px must be in [0, 4096] input pixels, got -2"),
    ("augment.shift_px=2.5", "augment.shift_px must be an integer"),
    ("augment.shift_y_px=5000", "augment.shift_y_px must be in [0, 4096]"),
    ("augment.flip_prob=1.5", "augment.flip_prob must be auto or in [0, 1], got 1.5"),
    ("augment.flip_prob=sometimes", "augment.flip_prob must be a number or one of auto"),
    ("augment.shift_swa_per_px=-0.01", "augment.shift_swa_per_px must be auto or in [0, 1] rad"),
    ("augment.shift_swa_per_px=.nan", "augment.shift_swa_per_px must be auto or in [0, 1]"),
    ("augment.rotate=5", "unknown key 'augment.rotate'; known keys: enabled, brightness"),
])
def test_bad_augment_settings_fail_in_one_line(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.path=x", override])
    msg = str(e.value)
    assert msg.startswith(f"--set {override}: ") and words in msg and "\n" not in msg


def test_settings_that_need_the_data_or_the_task_fail_before_training(tmp_path, dataset):
    with pytest.raises(ConfigError, match=r"augment.shift_swa_per_px must be auto or 0 with train.loss=nll"):
        load_config(None, ["data.kind=synthetic_signs", "train.loss=nll", "augment.shift_swa_per_px=0.01"])
    wide = tiny(tmp_path / "run", dataset, "augment.enabled=true", "augment.shift_px=48")
    with pytest.raises(ConfigError, match=r"augment.shift_px=48 must be less than the input's 48 pixels"):
        Trainer(wide, load_data(wide.data))
