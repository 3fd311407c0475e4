"""Augmentation of training batches: flip, shifts with the steering correction, brightness, contrast.

It works on the uint8 batch as read from the dataset (``(B, H, W)`` or ``(B, H, W, C)``, the
network's crop), before :func:`vbp_live.models.frames_to_input`, in the loader thread: slice copies
do flip and both shifts, one lookup table per frame does brightness and contrast (cost measured in
docs/training.md#augmentation). Only the training loader applies it; validation and test frames
are never augmented.

Conventions: steering wheel angle (SWA) in radians, positive = left (as everywhere in vbp_live).
A shift of ``+dx`` input pixels moves the image content to the *right*: that is the view after the
car yawed *left* by ``dx`` pixels' worth of angle, so the lane ahead now lies to the right of the
heading and pure pursuit steers more to the right: ``swa' = swa - dx * swa_per_px``. A flip mirrors
the frame left-right and negates the angle (flip first, then shift). A vertical shift (pitch) and
the photometric changes leave the angle alone. Class labels are never changed.

Random draws: one generator per *global* batch, seeded with ``(train.seed, epoch, batch index)``,
draws every frame's parameters; a DDP rank takes the same strided slice as of the rows, so the
global batch is the same for any number of processes, and a resumed run is bit-identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from vbp_live.core.errors import ConfigError
from vbp_live.core.preprocess import CropSpec
from vbp_live.synth.camera import Camera
from vbp_live.synth.vehicle import VehicleParams
from vbp_live.train.config import AugmentConfig

log = logging.getLogger(__name__)

_STREAM = 0x617567  # "aug": keeps these draws apart from the batch plan's (seed, epoch) generator
SYNTH_CAMERA, SYNTH_VEHICLE = Camera(), VehicleParams()  # the synthetic world's defaults (focal 560 px, ...)
_PHOTOMETRIC = {"yuv": "y", "hsv": "v"}  # colour spaces whose brightness is one channel; others: all


@dataclass(frozen=True)
class AugmentDraw:
    """The random parameters of each frame of one batch (arrays of the batch's length).

    Attributes:
        flip: mirror left-right (the angle is negated).
        shift_x: input pixels the content moves to the right (negative: to the left).
        shift_y: input pixels the content moves down (negative: up).
        brightness: pixel levels added (of 255).
        contrast: factor about the frame's mean.
    """

    flip: np.ndarray  # (B,) bool
    shift_x: np.ndarray  # (B,) int64
    shift_y: np.ndarray  # (B,) int64
    brightness: np.ndarray  # (B,) float64
    contrast: np.ndarray  # (B,) float64

    def __len__(self) -> int:
        return len(self.flip)

    def paired(self) -> AugmentDraw:
        """These draws twice over: a batch of temporal pairs gives each frame's successor the frame's own."""
        return AugmentDraw(*(np.concatenate([getattr(self, f.name)] * 2) for f in fields(self)))

    def shard(self, rank: int, world: int) -> AugmentDraw:
        """This rank's part, the same strided slice as :func:`vbp_live.train.data.shard` takes of the rows."""
        return AugmentDraw(*(getattr(self, f.name)[rank::world] for f in fields(self)))


def yaw_swa_per_rad(params: VehicleParams = SYNTH_VEHICLE) -> float:
    """d(SWA)/d(target bearing) of pure pursuit at bearing 0: ``ratio * 2 * wheelbase / lookahead``.

    Pure pursuit steers ``swa = ratio * atan(2 * wheelbase * sin(a) / lookahead)`` towards a target
    at bearing ``a``; yawing the car by ``t`` moves the bearing by ``-t``. (14.8 * 2 * 2.85 / 12 = 7.03.)
    """
    return params.steering_ratio * 2.0 * params.wheelbase_m / params.lookahead_m


def auto_swa_per_px(crop: CropSpec, camera: Camera = SYNTH_CAMERA,
                    params: VehicleParams = SYNTH_VEHICLE) -> float:
    """The ``auto`` SWA correction per input pixel of horizontal shift, for the synthetic world's geometry.

    One frame pixel near the image centre is a yaw of ``1 / focal_px`` rad; one input pixel is
    ``crop width in frame pixels / out_width`` frame pixels (the crop's horizontal scale). NetSVF's
    crop (640 -> 640 px): 7.03 / 560 = 0.01256 rad (0.72 deg) per pixel.

    Raises:
        ConfigError: the crop does not fit the synthetic camera's frame (set the value explicitly).
    """
    try:
        _, _, x0, x1 = crop.box(camera.height, camera.width)
    except ValueError:
        raise ConfigError(f"augment.shift_swa_per_px=auto needs a crop that fits the synthetic camera's "
                          f"{camera.width}x{camera.height} frame; this dataset's crop does not: set a number") from None
    frame_px_per_input_px = (x1 - x0) / crop.out_width
    return yaw_swa_per_rad(params) * frame_px_per_input_px / camera.focal_px


def photometric_channels(crop: CropSpec) -> np.ndarray | None:
    """Channels brightness and contrast act on: None = all (gray, BGR, RGB); Y of YUV, V of HSV."""
    letter = _PHOTOMETRIC.get(crop.color)
    if letter is None:
        return None
    order = crop.channel_order or crop.color
    return np.array([c == letter for c in order])


def draw(cfg: AugmentConfig, n: int, flip_prob: float, seed: int, epoch: int, batch: int) -> AugmentDraw:
    """Parameters for the ``n`` frames of global batch ``batch`` of ``epoch`` (a pure function of its arguments)."""
    rng = np.random.default_rng([seed, epoch, batch, _STREAM])
    flip = rng.random(n) < flip_prob
    shift_x = rng.integers(-cfg.shift_px, cfg.shift_px + 1, n)
    shift_y = rng.integers(-cfg.shift_y_px, cfg.shift_y_px + 1, n)
    brightness = rng.uniform(-cfg.brightness, cfg.brightness, n) * 255.0
    contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast, n)
    return AugmentDraw(flip, shift_x, shift_y, brightness, contrast)


def geometric(frames: np.ndarray, d: AugmentDraw) -> np.ndarray:
    """Flip, then shift each frame, replicating the border. (B, H, W[, C]) uint8 -> a new array like it.

    ``out[b, r, c] = f[clip(r - shift_y), clip(c - shift_x)]`` with ``f`` the frame, mirrored where
    ``flip``. Done with slice copies per frame (tests check it against that formula as one gather).
    """
    out = np.empty_like(frames)
    for i, (flip, dx, dy) in enumerate(zip(d.flip.tolist(), d.shift_x.tolist(), d.shift_y.tolist(), strict=True)):
        _shift_into(out[i], frames[i, :, ::-1] if flip else frames[i], dy, dx)
    return out


def _span(d: int, n: int) -> tuple[slice, slice]:
    """(source, destination) slices of a length-``n`` axis moved by ``d`` (|d| < n)."""
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


def _shift_into(dst: np.ndarray, src: np.ndarray, dy: int, dx: int) -> None:
    """``dst`` = ``src`` moved down ``dy`` and right ``dx`` pixels, the uncovered border replicated."""
    (ys, yd), (xs, xd) = _span(dy, src.shape[0]), _span(dx, src.shape[1])
    dst[yd, xd] = src[ys, xs]
    if dy > 0:
        dst[:dy] = dst[dy:dy + 1]
    elif dy < 0:
        dst[dy:] = dst[dy - 1:dy]
    if dx > 0:
        dst[:, :dx] = dst[:, dx:dx + 1]
    elif dx < 0:
        dst[:, dx:] = dst[:, dx - 1:dx]


def photometric(frames: np.ndarray, d: AugmentDraw, channels: np.ndarray | None = None) -> np.ndarray:
    """``clip(round((x - mean) * contrast + mean + brightness))`` per frame, as one lookup table per frame.

    ``mean`` is the frame's mean over the ``channels`` it acts on (None: all; others stay as they
    are). (B, H, W[, C]) uint8 -> a new array like it.
    """
    b = len(frames)
    sel = frames if channels is None else frames[..., channels]
    mean = sel.reshape(b, -1).mean(axis=1)  # (B,)
    lut = (np.arange(256.0) - mean[:, None]) * d.contrast[:, None] + (mean + d.brightness)[:, None]  # (B, 256)
    lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)  # (B, 256)
    if channels is None:
        out = np.empty_like(frames)
        for i in range(b):
            cv2.LUT(frames[i], lut[i], dst=out[i])
        return out
    out = frames.copy()
    for i in range(b):
        out[i][..., channels] = lut[i][frames[i][..., channels]]
    return out


def steering_targets(targets: np.ndarray, d: AugmentDraw, swa_per_px: float) -> np.ndarray:
    """The angles of the augmented frames: negated where flipped, minus ``shift_x * swa_per_px``.

    Returns:
        (B,) of the dtype of ``targets``.
    """
    y = np.asarray(targets, np.float64)  # (B,)
    y = np.where(d.flip, -y, y) - d.shift_x * swa_per_px  # (B,)
    return y.astype(np.asarray(targets).dtype, copy=False)


class Augmenter:
    """The training split's augmentation for one run.

    Args:
        cfg: the ``augment`` section (``enabled`` is not looked at: build one only when it is on).
        crop: the dataset's preprocessing (the input's scale and colour space).
        input_hw: the network input's (H, W), to check the shifts.
        seed: ``train.seed``.
        regression: the targets are steering angles (flip negates them, shifts correct them);
            False: class labels (never changed; flips only with an explicit ``flip_prob``).
        pairs: batches are temporal pairs (:func:`vbp_live.train.data.pair_batches`): the second
            half of a batch gets the first half's draws, so a frame and its successor change alike.

    Raises:
        ConfigError: a shift as wide as the input, or an ``auto`` correction the crop cannot give.
    """

    def __init__(self, cfg: AugmentConfig, crop: CropSpec, input_hw: tuple[int, int], seed: int,
                 regression: bool = True, pairs: bool = False):
        h, w = input_hw
        for key, n, side in (("shift_px", cfg.shift_px, w), ("shift_y_px", cfg.shift_y_px, h)):
            if n >= side:
                raise ConfigError(f"augment.{key}={n} must be less than the input's {side} pixels")
        self.cfg, self.seed, self.regression, self.pairs = cfg, seed, regression, pairs
        self.flip_prob = (0.5 if regression else 0.0) if cfg.flip_prob == "auto" else float(cfg.flip_prob)
        self.swa_per_px = 0.0
        if regression:
            auto = cfg.shift_swa_per_px == "auto"
            self.swa_per_px = auto_swa_per_px(crop) if auto else float(cfg.shift_swa_per_px)
        self.channels = photometric_channels(crop)
        self._geometric = cfg.shift_px > 0 or cfg.shift_y_px > 0 or self.flip_prob > 0
        self._photometric = cfg.brightness > 0 or cfg.contrast > 0
        log.info("augmenting training batches: flip %.2f, shift +-%d px (%.5f rad SWA/px), +-%d px vertical, "
                 "brightness +-%.2f, contrast +-%.2f", self.flip_prob, cfg.shift_px, self.swa_per_px,
                 cfg.shift_y_px, cfg.brightness, cfg.contrast)

    def draw(self, epoch: int, batch: int, n: int) -> AugmentDraw:
        """Parameters of global batch ``batch`` (``n`` frames) of ``epoch``."""
        if self.pairs:
            return draw(self.cfg, n // 2, self.flip_prob, self.seed, epoch, batch).paired()
        return draw(self.cfg, n, self.flip_prob, self.seed, epoch, batch)

    def apply(self, frames: np.ndarray, targets: np.ndarray, d: AugmentDraw) -> tuple[np.ndarray, np.ndarray]:
        """Augment one batch: uint8 (B, H, W[, C]) frames and (B,) targets -> new arrays of the same kind."""
        if len(d) != len(frames):
            raise ValueError(f"{len(d)} draws for {len(frames)} frames")
        if self._geometric:
            frames = geometric(frames, d)
        if self._photometric:
            frames = photometric(frames, d, self.channels)
        if self.regression:
            targets = steering_targets(targets, d, self.swa_per_px)
        return frames, targets

    def for_epoch(self, epoch: int, global_sizes: Sequence[int], first: int = 0, rank: int = 0,
                  world: int = 1) -> EpochAugment:
        """The per-batch transform a :class:`~vbp_live.train.data.BatchLoader` applies this epoch.

        Args:
            epoch: the epoch.
            global_sizes: frames of each global batch the loader reads, in order.
            first: index in the epoch of the loader's first batch (``step_in_epoch`` on resume).
            rank, world: this process's strided slice.
        """
        draws = [self.draw(epoch, first + i, n).shard(rank, world) for i, n in enumerate(global_sizes)]
        return EpochAugment(self, draws)


@dataclass(frozen=True)
class EpochAugment:
    """Callable ``(position, frames, targets) -> (frames, targets)`` for the loader's batch ``position``."""

    augmenter: Augmenter
    draws: list[AugmentDraw]

    def __call__(self, position: int, frames: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.augmenter.apply(frames, targets, self.draws[position])


def make_augmenter(cfg: AugmentConfig, crop: CropSpec, input_hw: tuple[int, int], seed: int,
                   regression: bool, pairs: bool = False) -> Augmenter | None:
    """An :class:`Augmenter` when ``cfg.enabled``, else None (the loader then reads frames as they are)."""
    return Augmenter(cfg, crop, input_hw, seed, regression, pairs) if cfg.enabled else None

