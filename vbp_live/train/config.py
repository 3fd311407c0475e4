"""The typed training configuration: YAML file + ``key=value`` overrides, checked against dataclasses.

nanoGPT-style: every key has a typed default; an unknown key or a value of the wrong type fails
with a message naming the key, the expected type and the known keys. The resolved config is a
plain dict (:func:`config_to_dict`) that goes into the run directory and every checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml
from vbp_live.core.errors import ConfigError


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


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
        synthetic_frames, synthetic_size, num_classes, synthetic_seed: image count, image side in
            pixels, classes and seed of ``synthetic_signs``.
        prefetch: batches prepared ahead by the background loader thread (0 = load inline).
    """

    kind: str = "prepared"
    path: str = ""
    train_split: str = "train"
    val_split: str = "test"
    train_stride: int = 1
    val_stride: int = 1
    max_train_frames: int = 0
    max_val_frames: int = 0
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
    schedule: str = "constant"
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
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        amp: mixed precision on CUDA: ``auto`` (= ``fp16``), ``fp16`` (autocast + GradScaler),
            ``bf16`` (autocast, no scaler) or ``fp32`` (off). CPU runs always use fp32.
        threads: torch CPU threads (0 = leave torch's default).
        progress: show tqdm progress bars.
    """

    epochs: int = 32
    batch_size: int = 32
    loss: str = "mse"
    seed: int = 0
    max_steps: int = 0
    drop_last: bool = True
    device: str = "auto"
    amp: str = "auto"
    threads: int = 0
    progress: bool = True


@dataclass
class SnapshotConfig:
    """VisualBackProp masks of fixed validation frames during training (the paper's Figure 5).

    Attributes:
        epochs: when to take them, in (fractional) epochs; empty = off.
        frames: how many validation frames, spread evenly over the validation split.
        indices: explicit dataset rows instead (overrides ``frames``).
    """

    epochs: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 4.0, 16.0, 32.0])
    frames: int = 4
    indices: list[int] = field(default_factory=list)


@dataclass
class Config:
    """Everything a training run needs; ``run_dir`` receives config, metrics, snapshots, checkpoints."""

    run_dir: str = "runs/netsvf"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)

    def validate(self) -> "Config":
        """Check values that types alone cannot; returns self."""
        _choice("data.kind", self.data.kind, ("prepared", "synthetic_signs"))
        _choice("optim.schedule", self.optim.schedule, ("constant", "step", "cosine"))
        _choice("train.loss", self.train.loss, ("mse", "nll"))
        _choice("train.amp", self.train.amp, ("auto", "fp16", "bf16", "fp32"))
        if self.data.kind == "prepared" and not self.data.path:
            raise ConfigError("data.path is empty: name a prepared dataset directory (vbp-live prep)")
        for key, v in (("train.epochs", self.train.epochs), ("train.batch_size", self.train.batch_size),
                       ("data.train_stride", self.data.train_stride), ("data.val_stride", self.data.val_stride)):
            if v < 1:
                raise ConfigError(f"{key} must be >= 1, got {v}")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.optim.lr}")
        if any(e < 0 for e in self.snapshot.epochs):
            raise ConfigError(f"snapshot.epochs must be >= 0, got {self.snapshot.epochs}")
        return self


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_type_name(typing.get_args(tp)[0])}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, typing.get_args(tp)[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-3" as a string
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)} ({where} knows: {', '.join(hints)})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        kwargs[name] = _build(tp, value, f"{prefix}{name}.") if dataclasses.is_dataclass(tp) else _coerce(prefix + name, value, tp)
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.05)")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a nested dict; returns a new dict."""
    out = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        path, value = _parse_override(item)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[path[-1]] = value
    return out


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (optional), apply overrides, type-check and validate.

    Raises:
        ConfigError: naming the file or key that is wrong.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
    data = apply_overrides(data, overrides or [])
    try:
        return _build(Config, data).validate()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`config_to_dict` output (e.g. from a checkpoint)."""
    return _build(Config, data).validate()


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (YAML and checkpoint friendly)."""
    return dataclasses.asdict(cfg)


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and k != "args":
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(prefix + k)
    return out

