"""Typed configuration of ``vbp-live prep`` (``configs/prep.yaml``).

Every step of the preparation is a section here; the sections the recording readers use
(camera, steering, sync, simulator) are defined in :mod:`vbp_live.recordings.options`. YAML is
read with ``yaml.safe_load`` and checked against these dataclasses: unknown keys and wrong types
are refused with the dotted key path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.core.sync import METHODS
from vbp_live.recordings.options import CameraConfig, RecordingOptions, SimulatorConfig, SteeringConfig, SyncConfig


@dataclass(frozen=True)
class FilterConfig:
    """Step 3. Attributes: min_speed_mps: keep frames with speed strictly above this."""

    min_speed_mps: float = 5.0


@dataclass(frozen=True)
class CropConfig:
    """Steps 4-5: grayscale, crop band and network input size.

    Attributes:
        preset: ``netsvf`` (640x125) or ``nethvf`` (351x125), see ``CROP_PRESETS``.
        top, bottom, left, right, out_height, out_width, grayscale, interpolation: optional
            overrides of the preset's :class:`~vbp_live.core.preprocess.CropSpec` fields
            (band edges are fractions of the frame height/width).
    """

    preset: str = "netsvf"
    top: float | None = None
    bottom: float | None = None
    left: float | None = None
    right: float | None = None
    out_height: int | None = None
    out_width: int | None = None
    grayscale: bool | None = None
    interpolation: str | None = None

    def spec(self) -> CropSpec:
        """The resolved crop (preset + overrides)."""
        if self.preset not in CROP_PRESETS:
            raise ValueError(f"crop.preset must be one of {sorted(CROP_PRESETS)}, got {self.preset!r}")
        over = {k: v for k, v in dataclasses.asdict(self).items() if k != "preset" and v is not None}
        return CropSpec.from_dict({**CROP_PRESETS[self.preset].to_dict(), **over})


@dataclass(frozen=True)
class SplitConfig:
    """Step 6: time-ordered split; the last frames are the test set.

    Attributes:
        test_fraction: share of kept frames for testing (paper: 20 K of 210 K = 0.0952).
        test_count: exact number of test frames; when set it wins over test_fraction.
    """

    test_fraction: float = 0.0952
    test_count: int | None = None


@dataclass(frozen=True)
class DecodeConfig:
    """Image decoding.

    Attributes:
        threads: decode/preprocess worker threads (OpenCV releases the GIL).
        mode: ``gray`` decodes JPEG luma directly (fast; within a few gray levels of
            ``color``, which decodes BGR and lets the crop function convert, exactly like
            frames coming from a video at streaming time).
    """

    threads: int = 2
    mode: str = "gray"


@dataclass(frozen=True)
class OutputConfig:
    """Attributes: checkpoint_every: frames between resume checkpoints."""

    checkpoint_every: int = 2000


@dataclass(frozen=True)
class PrepConfig:
    """The whole preparation, one section per step."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        self.crop.spec()
        if self.sync.method not in METHODS:
            raise ValueError(f"sync.method must be one of {METHODS}, got {self.sync.method!r}")
        if self.sync.max_gap_s is not None and self.sync.max_gap_s <= 0:
            raise ValueError(f"sync.max_gap_s must be positive or null, got {self.sync.max_gap_s}")
        if not 0.0 <= self.split.test_fraction <= 1.0:
            raise ValueError(f"split.test_fraction must be in [0, 1], got {self.split.test_fraction}")
        if self.split.test_count is not None and self.split.test_count < 0:
            raise ValueError(f"split.test_count must be >= 0, got {self.split.test_count}")
        if self.decode.mode not in ("gray", "color"):
            raise ValueError(f"decode.mode must be 'gray' or 'color', got {self.decode.mode!r}")
        if self.decode.threads < 1 or self.output.checkpoint_every < 1:
            raise ValueError("decode.threads and output.checkpoint_every must be >= 1")

    def recording_options(self) -> RecordingOptions:
        """The sections the recording readers use (camera, steering, sync, simulator)."""
        return RecordingOptions(self.camera, self.steering, self.sync, self.simulator)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PrepConfig:
        """Build from a (partial) dict; missing keys keep their defaults."""
        return _build(cls, data or {}, "")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _build(cls: type, data: Any, path: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"section {path!r}" if path else "the top level"
        raise ValueError(f"unknown config key(s) {[f'{path}.{k}'.lstrip('.') for k in unknown]} in {where}; known: {sorted(known)}")
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}".lstrip(".")) for k, v in data.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str) -> Any:
    """Check/convert one value against its annotation."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{path}[]") for v in value)
    return _scalar(hint, value, path)


def _scalar(hint: type, value: Any, path: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise ValueError(f"{path}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


def load_config(path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None) -> PrepConfig:
    """Read a prep config YAML (safe_load) and apply dotted overrides (``{"sync.method": "zoh"}``).

    Args:
        path: YAML file; None uses the built-in defaults (identical to ``configs/prep.yaml``).
        overrides: dotted key -> value, applied on top of the file.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: config file not found")
        with open(p, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a YAML mapping at the top level")
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {part!r} is not a section")
        node[leaf] = value
    try:
        return PrepConfig.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path or 'config'}: {e}") from None
