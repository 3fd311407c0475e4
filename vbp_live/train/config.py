"""The typed training configuration: YAML file + ``--set key=value`` overrides, checked against dataclasses.

nanoGPT-style: every key has a typed default. Loading goes through the one config loader
(:mod:`vbp_live.core.config`): an unknown key or a value of the wrong type fails with one line
naming where it came from (``file:line`` or ``--set ...``), the key, the expected type and the
known keys. The resolved config is a plain dict (:func:`config_to_dict`) that goes into the run
directory and every checkpoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vbp_live.core import config
from vbp_live.core.config import ConfigValueError, config_diff
from vbp_live.core.errors import ConfigError
from vbp_live.models.device import DEVICE_NAME

__all__ = ["AugmentConfig", "Config", "ConfigError", "DataConfig", "ModelConfig", "OptimConfig", "SnapshotConfig",
           "TrainConfig", "config_diff", "config_from_dict", "config_to_dict", "load_config"]



@dataclass
class ModelConfig:
    """Which registered network to train.

    Attributes:
        name: registry name (``netsvf``, ``nethvf``, ``signnet``, ...).
        args: extra factory arguments; height/width/channels default to the dataset's frames.
    """

    name: str = "netsvf"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the frames come from.

    Attributes:
        kind: ``prepared`` (a ``vbp-live prep`` dataset directory) or ``synthetic_signs``
            (procedurally drawn traffic-sign classes for signnet, generated in memory).
        path: the prepared dataset directory.
        train_split, val_split: split names in the dataset index.
        train_stride, val_stride: keep every k-th frame of a split (1 = all): a time-uniform subset.
        max_train_frames, max_val_frames: cap after striding (0 = no cap).
        curve_repeat, curve_min_deg: each training row whose steering wheel angle is at least
            ``curve_min_deg`` degrees either way appears ``curve_repeat`` times in every epoch's plan
            (after striding and capping; 1 = off): more gradient from the sharp curves a drive
            has few of. Steering data only; validation is never repeated.
        synthetic_frames, synthetic_size, num_classes, synthetic_seed: image count, image side in
            pixels, classes and seed of ``synthetic_signs``.
        prefetch: batches prepared ahead by the background loader thread (0 = load inline).
    """

    kind: Literal["prepared", "synthetic_signs"] = "prepared"
    path: str = ""
    train_split: str = "train"
    val_split: str = "test"
    train_stride: int = 1
    val_stride: int = 1
    max_train_frames: int = 0
    max_val_frames: int = 0
    curve_repeat: int = 1
    curve_min_deg: float = 20.0
    synthetic_frames: int = 2000
    synthetic_size: int = 125
    num_classes: int = 43
    synthetic_seed: int = 0
    prefetch: int = 2


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule (a pure function of the global step: exact resume).

    Attributes:
        lr: base learning rate.
        momentum, weight_decay, nesterov: SGD settings.
        schedule: ``constant``, ``step`` (times ``gamma`` at each of ``milestones`` epochs) or
            ``cosine`` (from ``lr`` to ``lr * min_lr_ratio`` over the run).
        warmup_epochs: linear warm-up from 0 (fractions allowed).
        grad_clip: clip the global gradient norm (0 = off).
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: Literal["constant", "step", "cosine"] = "constant"
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    warmup_epochs: float = 0.0
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    """The loop itself.

    Attributes:
        epochs: number of epochs (the paper: 32).
        batch_size: the *global* batch size (split across DDP ranks).
        loss: ``mse`` (steering regression) or ``nll`` (classification, log-softmax nets).
        seed: seeds initialization and the per-epoch shuffle (a function of seed and epoch).
        max_steps: stop after this many optimizer steps in total, saving a resumable checkpoint (0 = off).
        drop_last: drop the last incomplete batch of an epoch.
        device: ``auto`` (CUDA when available, else CPU; the default), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision on CUDA: ``auto`` (= ``fp16``), ``fp16`` (autocast + GradScaler),
            ``bf16`` (autocast, no scaler) or ``fp32`` (off). CPU runs always use fp32.
        threads: torch CPU threads (0 = leave torch's default).
        channels_last: keep the network's weights and each batch in the channels-last memory format
            (faster convolutions in the forward and backward passes; the same values up to float rounding).
        progress: show tqdm progress bars.
        tensorboard: TensorBoard event files in ``<run_dir>/tensorboard`` (metrics per epoch, snapshot
            images): ``auto`` (when the tensorboard package is installed), ``true`` (an error without it)
            or ``false``.
        init_from: start from the weights of this checkpoint (same model and crop; a training run's
            ``last.pt`` or an exported model) with a fresh optimizer and learning-rate schedule:
            fine-tuning, or a longer run that continues a shorter one (a warm restart). Empty = random
            initialization. Ignored by ``--resume``, which continues the run's own ``last.pt``.
        pair_weight: weight of the temporal-pair term (0 = off; steering regression on a prepared
            dataset only). When on, each batch is ``batch_size / 2`` planned frames and the next frame of
            each (same recording and split, at most 1.5 median frame intervals later), both with the same
            augmentation, and the loss adds ``pair_weight * mean(((p_a - p_b) - (y_a - y_b))**2)``: the
            change of the prediction from one frame to the next must match the change of the truth. It
            trains down the frame-to-frame jitter that the per-frame loss leaves alone
            (docs/training.md#temporal-pairs). ``train_loss`` then includes the term.
    """

    epochs: int = 32
    batch_size: int = 32
    loss: Literal["mse", "nll"] = "mse"
    seed: int = 0
    max_steps: int = 0
    drop_last: bool = True
    device: str = "auto"
    amp: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    threads: int = 0
    channels_last: bool = True
    progress: bool = True
    tensorboard: bool | Literal["auto"] = "auto"
    init_from: str = ""
    pair_weight: float = 0.0


@dataclass
class SnapshotConfig:
    """VisualBackProp masks of fixed validation frames during training (the paper's Figure 5).

    Attributes:
        epochs: when to take them, in (fractional) epochs; empty = off.
        frames: how many validation frames, spread evenly over the validation split.
        indices: explicit dataset rows instead (overrides ``frames``).
        video: also write ``snapshots.mp4`` (the frames with each snapshot's mask in turn).
    """

    epochs: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 4.0, 16.0, 32.0])
    frames: int = 4
    indices: list[int] = field(default_factory=list)
    video: bool = True


@dataclass
class AugmentConfig:
    """Augmentation of the training split only (never validation or test); see docs/training.md#augmentation.

    Every frame of a training batch gets its own random draw, a function of ``(train.seed, epoch,
    batch index)``, so a resumed run is bit-identical. Angles are positive = left.

    Attributes:
        enabled: off by default: a config without this section trains exactly as before.
        brightness: add a uniform offset in [-b, b] of the full pixel range (0.2 = +-51 of 255).
        contrast: scale about the frame's mean by a factor uniform in [1 - c, 1 + c].
        shift_px: horizontal shift, a whole number of input pixels uniform in [-n, n] (a small yaw of
            the camera); the border is replicated and the steering angle corrected.
        shift_y_px: vertical shift in input pixels (a small pitch); no steering correction.
        shift_swa_per_px: steering wheel angle correction in rad per input pixel of horizontal shift
            (image content moved right by one pixel: ``swa -= shift_swa_per_px``); ``auto`` derives it
            from the synthetic world's camera and pure pursuit and the dataset's crop.
        flip_prob: probability of a horizontal flip (the angle is negated); ``auto`` = 0.5 for
            steering (``train.loss: mse``), 0 for classification (a mirrored sign is another sign).
    """

    enabled: bool = False
    brightness: float = 0.2
    contrast: float = 0.3
    shift_px: int = 12
    shift_y_px: int = 4
    shift_swa_per_px: float | Literal["auto"] = "auto"
    flip_prob: float | Literal["auto"] = "auto"

    def ranges(self) -> list[tuple[str, Any, Callable[[float], bool], str]]:
        """(key, value, predicate, rule in words) of the numeric settings (``auto`` is not checked)."""
        out: list[tuple[str, Any, Callable[[float], bool], str]] = [
            ("augment.brightness", self.brightness, lambda v: 0 <= v <= 1, "in [0, 1] (a fraction of 255)"),
            ("augment.contrast", self.contrast, lambda v: 0 <= v < 1, "in [0, 1) (factor 1 - c .. 1 + c)"),
            ("augment.shift_px", self.shift_px, lambda v: 0 <= v <= 4096, "in [0, 4096] input pixels"),
            ("augment.shift_y_px", self.shift_y_px, lambda v: 0 <= v <= 4096, "in [0, 4096] input pixels"),
        ]
        if self.shift_swa_per_px != "auto":
            out.append(("augment.shift_swa_per_px", self.shift_swa_per_px, lambda v: 0 <= v <= 1,
                        "auto or in [0, 1] rad of steering wheel angle per input pixel"))
        if self.flip_prob != "auto":
            out.append(("augment.flip_prob", self.flip_prob, lambda v: 0 <= v <= 1, "auto or in [0, 1]"))
        return out


@dataclass
class Config:
    """Everything a training run needs; ``run_dir`` receives config, metrics, snapshots, checkpoints."""

    run_dir: str = "runs/netsvf"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> Config:
        """Check what types alone cannot; returns self.

        Raises:
            ConfigValueError: naming the key (the loader adds where it came from).
        """
        if self.data.kind == "prepared" and not self.data.path:
            raise ConfigValueError("data.path", "data.path is empty: name a prepared dataset directory (vbp-live prep)")
        if not DEVICE_NAME.fullmatch(self.train.device):
            raise ConfigValueError("train.device",
                                   f"train.device must be auto, cpu, cuda or cuda:N; got {self.train.device!r}")
        for key, value, ok, rule in self._ranges():
            values = value if isinstance(value, list) else [value]
            if not all(math.isfinite(v) and ok(v) for v in values):
                raise ConfigValueError(key, f"{key} must be {rule}, got {value}")
        if self.train.loss == "nll" and self.augment.shift_swa_per_px not in ("auto", 0.0):
            raise ConfigValueError("augment.shift_swa_per_px", "augment.shift_swa_per_px must be auto or 0 with "
                                   "train.loss=nll: class labels get no steering correction")
        if self.train.pair_weight > 0:
            self._check_pairs()
        if self.data.curve_repeat > 1 and (self.data.kind != "prepared" or self.train.loss != "mse"):
            raise ConfigValueError("data.curve_repeat", "data.curve_repeat needs steering targets "
                                   "(data.kind=prepared, train.loss=mse)")
        return self

    def _check_pairs(self) -> None:
        """Temporal pairs need steering targets in time order and an even batch."""
        t = self.train
        if t.loss != "mse" or self.data.kind != "prepared":
            raise ConfigValueError("train.pair_weight", "train.pair_weight needs train.loss=mse and "
                                   "data.kind=prepared (pairs are consecutive frames of a recording)")
        if t.batch_size % 2:
            raise ConfigValueError("train.pair_weight", f"train.pair_weight needs an even train.batch_size "
                                   f"(half planned frames, half their successors), got {t.batch_size}")

    def _ranges(self) -> list[tuple[str, Any, Callable[[float], bool], str]]:
        """(key, value, predicate, rule in words) for every numeric setting; lists are checked item by item."""
        o, t, d, s = self.optim, self.train, self.data, self.snapshot
        at_least_1, non_negative = (lambda v: v >= 1), (lambda v: v >= 0)
        return [
            ("train.epochs", t.epochs, at_least_1, ">= 1"),
            ("train.batch_size", t.batch_size, at_least_1, ">= 1"),
            ("train.max_steps", t.max_steps, non_negative, ">= 0 (0 = no limit)"),
            ("train.threads", t.threads, lambda v: 0 <= v <= 1024, "in [0, 1024] (0 = torch's default)"),
            ("train.seed", t.seed, lambda v: 0 <= v < 2**63, "in [0, 2**63)"),
            ("train.pair_weight", t.pair_weight, non_negative, ">= 0 (0 = off)"),
            ("data.train_stride", d.train_stride, at_least_1, ">= 1"),
            ("data.val_stride", d.val_stride, at_least_1, ">= 1"),
            ("data.max_train_frames", d.max_train_frames, non_negative, ">= 0 (0 = no cap)"),
            ("data.max_val_frames", d.max_val_frames, non_negative, ">= 0 (0 = no cap)"),
            ("data.prefetch", d.prefetch, non_negative, ">= 0"),
            ("data.curve_repeat", d.curve_repeat, at_least_1, ">= 1 (1 = off)"),
            ("data.curve_min_deg", d.curve_min_deg, lambda v: v > 0, "> 0 degrees"),
            ("data.synthetic_frames", d.synthetic_frames, lambda v: v >= 2, ">= 2"),
            ("data.synthetic_size", d.synthetic_size, lambda v: v >= 8, ">= 8"),
            ("data.num_classes", d.num_classes, lambda v: v >= 2, ">= 2"),
            ("optim.lr", o.lr, lambda v: 0 < v <= 10, "in (0, 10]"),
            ("optim.momentum", o.momentum, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("optim.weight_decay", o.weight_decay, non_negative, ">= 0"),
            ("optim.gamma", o.gamma, lambda v: v > 0, "> 0 (a negative factor would ascend the loss)"),
            ("optim.min_lr_ratio", o.min_lr_ratio, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("optim.warmup_epochs", o.warmup_epochs, non_negative, ">= 0"),
            ("optim.grad_clip", o.grad_clip, non_negative, ">= 0 (0 = off)"),
            ("optim.milestones", o.milestones, non_negative, "epochs >= 0"),
            ("snapshot.epochs", s.epochs, non_negative, "epochs >= 0"),
            ("snapshot.frames", s.frames, non_negative, ">= 0"),
            ("snapshot.indices", s.indices, non_negative, "dataset rows >= 0"),
            *self.augment.ranges(),
        ]


def load_config(path: str | os.PathLike[str] | None = None, overrides: config.OverridesLike = None) -> Config:
    """Read a YAML config (optional), apply overrides, type-check and validate.

    Args:
        path: YAML file; None starts from the defaults (the paper's protocol).
        overrides: applied in order: ``--set`` strings (``["optim.lr=0.05"]``), a ``{dotted key: value}``
            dict or :class:`~vbp_live.core.config.Override` objects.

    Raises:
        ConfigError: one line naming the origin (``file:line`` or ``--set ...``), the key and what is wrong.
    """
    return config.load(Config, path, overrides)


def config_from_dict(data: Mapping[str, Any], origin: str = "") -> Config:
    """Rebuild a :class:`Config` from :func:`config_to_dict` output (e.g. from a checkpoint named by ``origin``)."""
    return config.from_dict(Config, data, origin)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (YAML and checkpoint friendly)."""
    return config.to_dict(cfg)
