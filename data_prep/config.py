"""Typed configuration of ``vbp-live prep`` (``configs/prep.yaml``).

Every step of the preparation is a section here; the sections the recording readers use
(camera, steering, sync, simulator) are defined in :mod:`vbp_live.recordings.options`. YAML files
and ``--set`` overrides are read by the one config loader (:mod:`vbp_live.core.config`: safe
YAML, one value rule) and checked against these dataclasses: unknown keys and wrong types are
refused naming the key and where it came from (``file:line`` or ``--set``), so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vbp_live.core import config
from vbp_live.core.config import ConfigValueError
from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.core.sync import METHODS
from vbp_live.recordings.images import MAX_PIXELS
from vbp_live.recordings.options import (
    ANGLE_UNITS,
    CameraConfig,
    FolderConfig,
    RecordingOptions,
    SimulatorConfig,
    SteeringConfig,
    SyncConfig,
    TubConfig,
)

# Crops for the cameras of donkeycar tubs and frame folders, beside the paper's (CROP_PRESETS).
# donkey: the lower two thirds (rows 40-120) of a 160x120 donkeycar frame at its own resolution,
# RGB, x/255 (the sky cut off, as donkeycar's ROI_CROP_TOP option does); train donkeycar_linear on it.
# pilotnet: NVIDIA PilotNet's 66x200 YUV input, from the band below the horizon (rows 60:-25 of
# the 160-row simulator frame, as the Keras behavioral-cloning projects cut it), x/127.5 - 1.
CAMERA_PRESETS: dict[str, dict[str, Any]] = {
    "donkey": {"top": 40 / 120, "bottom": 1.0, "out_height": 80, "out_width": 160, "color": "rgb"},
    "pilotnet": {"top": 60 / 160, "bottom": 135 / 160, "out_height": 66, "out_width": 200, "color": "yuv",
                 "interpolation": "linear", "scale": [1 / 127.5], "offset": [-1.0]},
}


def crop_presets() -> dict[str, CropSpec]:
    """Every crop preset ``crop.preset`` may name: the paper's and the camera presets."""
    return {**CROP_PRESETS, **{k: CropSpec.from_dict(v) for k, v in CAMERA_PRESETS.items()}}


@dataclass(frozen=True)
class FilterConfig:
    """Step 3. Attributes: min_speed_mps: keep frames with speed strictly above this."""

    min_speed_mps: float = 5.0


@dataclass(frozen=True)
class CropConfig:
    """Steps 4-5: grayscale, crop band and network input size.

    Attributes:
        preset: ``netsvf`` (640x125), ``nethvf`` (351x125), ``signnet``, or a camera preset
            (``donkey``: 160x80 colour, the lower part of a donkeycar frame), see :func:`crop_presets`.
        top, bottom, left, right, out_height, out_width, color, interpolation: optional
            overrides of the preset's :class:`~vbp_live.core.preprocess.CropSpec` fields
            (band edges are fractions of the frame height/width; color: gray, bgr, rgb, yuv, hsv).
        grayscale: the older spelling of ``color``: true = ``gray``, false = ``bgr`` (``color`` wins).
        horizon: the horizon row (fraction of the height) of the camera the band was chosen for
            (``--crop-of`` copies a model's).
        source_horizon: the horizon row of the recordings (``--horizon``): the band moves by
            ``source_horizon - horizon``, keeping its rows' distance from the horizon.
        source_horizons: the same per recording file (its name, e.g. ``drive_1.bag``), for inputs
            whose cameras differ; files not named use ``source_horizon``. The dataset records the
            band at ``horizon`` (what a model trained on it takes, moved by ``--horizon`` at run time).
    """

    preset: str = "netsvf"
    top: float | None = None
    bottom: float | None = None
    left: float | None = None
    right: float | None = None
    out_height: int | None = None
    out_width: int | None = None
    color: str | None = None
    grayscale: bool | None = None
    interpolation: str | None = None
    horizon: float | None = None
    source_horizon: float | None = None
    source_horizons: dict[str, float] = field(default_factory=dict)

    def spec(self) -> CropSpec:
        """The dataset's crop: the preset + overrides, moved to ``source_horizon`` when that is set
        and no file has its own (``source_horizons``: then the band at the reference horizon)."""
        return self.spec_for(None)

    def spec_for(self, source: str | None) -> CropSpec:
        """The band the frames of recording file ``source`` are cut from (None: the dataset's crop)."""
        base = self.base_spec()
        key, h = "crop.source_horizon", self.source_horizon
        if self.source_horizons:  # the dataset records the reference band; each file its own or source_horizon
            key, h = "crop.source_horizons", None if source is None else self.source_horizons.get(source, h)
        if h is None:
            return base
        try:
            return base.at_horizon(h)
        except ValueError as e:
            raise ConfigValueError(key, f"{key}: {e}") from None

    def base_spec(self) -> CropSpec:
        """The crop of the preset and the overrides, before it follows ``source_horizon``."""
        presets = crop_presets()
        if self.preset not in presets:
            choices = ", ".join(sorted(presets))
            raise ConfigValueError("crop.preset", f"crop.preset must be one of {choices}; got {self.preset!r}")
        skip = ("preset", "grayscale", "source_horizon", "source_horizons")
        over = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and v is not None}
        if self.grayscale is not None and self.color is None:
            over["color"] = "gray" if self.grayscale else "bgr"
        try:
            return CropSpec.from_dict({**presets[self.preset].to_dict(), **over})
        except ValueError as e:
            raise ConfigValueError("crop", f"crop: {e}") from None


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
        max_pixels: images whose header states more pixels are refused before decoding
            (``image_too_large`` in ``dropped.csv``).
    """

    threads: int = 2
    mode: str = "gray"
    max_pixels: int = MAX_PIXELS


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
    tub: TubConfig = field(default_factory=TubConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        self.crop.spec()
        sync, split = self.sync, self.split
        if sync.method not in METHODS:
            choices = ", ".join(METHODS)
            raise ConfigValueError("sync.method", f"sync.method must be one of {choices}; got {sync.method!r}")
        if sync.max_gap_s is not None and sync.max_gap_s <= 0:
            raise ConfigValueError("sync.max_gap_s", f"sync.max_gap_s must be > 0 or null, got {sync.max_gap_s}")
        if not 0.0 <= split.test_fraction <= 1.0:
            raise ConfigValueError("split.test_fraction",
                                   f"split.test_fraction must be in [0, 1], got {split.test_fraction}")
        if split.test_count is not None and split.test_count < 0:
            raise ConfigValueError("split.test_count", f"split.test_count must be >= 0 or null, got {split.test_count}")
        if self.decode.mode not in ("gray", "color"):
            raise ConfigValueError("decode.mode", f"decode.mode must be one of gray, color; got {self.decode.mode!r}")
        self._check_recordings()
        for key, v in (("decode.threads", self.decode.threads),
                       ("output.checkpoint_every", self.output.checkpoint_every),
                       ("decode.max_pixels", self.decode.max_pixels)):
            if v < 1:
                raise ConfigValueError(key, f"{key} must be >= 1, got {v}")

    def _check_recordings(self) -> None:
        tub, folder = self.tub, self.folder
        if folder.angle_unit not in ANGLE_UNITS:
            units = ", ".join(ANGLE_UNITS)
            raise ConfigValueError("folder.angle_unit", f"folder.angle_unit must be one of {units}; "
                                   f"got {folder.angle_unit!r}")
        if folder.time_unit not in ("s", "ms", "us", "ns"):
            raise ConfigValueError("folder.time_unit", f"folder.time_unit must be one of s, ms, us, ns; "
                                   f"got {folder.time_unit!r}")
        for key, v, top in (("tub.full_scale_deg", tub.full_scale_deg, 360.0),
                            ("tub.frame_period_s", tub.frame_period_s, 3600.0),
                            ("folder.full_scale_deg", folder.full_scale_deg, 360.0), ("folder.fps", folder.fps, 1e6)):
            if not 0 < v <= top:
                raise ConfigValueError(key, f"{key} must be in (0, {top:g}], got {v}")
        if folder.fps < 1e-3:
            raise ConfigValueError("folder.fps", f"folder.fps must be at least 0.001, got {folder.fps}")

    def recording_options(self) -> RecordingOptions:
        """The sections the recording readers use (camera, steering, sync, simulator, tub, folder)."""
        return RecordingOptions(self.camera, self.steering, self.sync, self.simulator, self.tub, self.folder)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists)."""
        return config.to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PrepConfig:
        """Build from a (partial) dict, e.g. a manifest's ``preprocessing``; missing keys keep their defaults."""
        return config.from_dict(cls, data)


def load_config(path: str | os.PathLike[str] | None = None, overrides: config.OverridesLike = None) -> PrepConfig:
    """Read a prep config YAML and apply overrides (:func:`vbp_live.core.config.load`).

    Args:
        path: YAML file; None uses the built-in defaults (identical to ``configs/prep.yaml``).
        overrides: applied on top of the file, in order: a ``{dotted key: value}`` dict
            (``{"sync.method": "zoh"}``), ``--set`` strings (``["sync.method=zoh"]``) or
            :class:`~vbp_live.core.config.Override` objects.

    Raises:
        ConfigError: one line naming the origin (``file:line`` or ``--set ...``) and the key.
    """
    return config.load(PrepConfig, path, overrides)
