"""The ground truth of a synthetic drive in one compact ``.npz`` file, and its loader.

Layout (format ``vbp_live/synth-gt-v1``; plain arrays, loadable without pickle)::

    format, config_json             format tag, the DriveConfig (with camera) as JSON
    world_json                      the drive's randomized world (WorldParams) as JSON (absent in
                                    files written before it existed: the default world)
    frame_times_ns, steering, steering_cmd, speed, accel, s, offset, heading_error,
    curvature, pitch                per camera frame (N,)
    lookahead_uv                    (N, 2) pixel of the pure-pursuit target (lane center ahead)
    steer_times_ns, steer_angle, steer_cmd, steer_torque, steer_speed   steering reports (M,)
    mask_names, mask_shape          ("lane", "hmark", "shadow", "car", "road"), (H, W)
    mask_data, mask_offsets         per frame: zlib(packbits(masks (5, H, W))) concatenated;
                                    frame i is mask_data[mask_offsets[i]:mask_offsets[i+1]]

Masks are compressed frame by frame while rendering, so memory stays small for long drives
and :meth:`GroundTruth.masks` decodes one frame on demand.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.io.atomic import atomic_path
from vbp_live.synth.drive import Drive, DriveConfig
from vbp_live.synth.render import MASK_NAMES, GroundTruthMasks
from vbp_live.synth.world import DEFAULT_WORLD, WorldParams, world_from_dict

FORMAT = "vbp_live/synth-gt-v1"
FRAME_FIELDS = ("frame_times_ns", "steering", "steering_cmd", "speed", "accel", "s", "offset",
                "heading_error", "curvature", "pitch")
STEER_FIELDS = ("steer_times_ns", "steer_angle", "steer_cmd", "steer_torque", "steer_speed")


class GroundTruthError(InputError):
    """A ground-truth file is missing, of another format or inconsistent."""


def pack_masks(masks: GroundTruthMasks) -> bytes:
    """One frame's masks -> ``zlib(packbits(stack))`` bytes (the per-frame entry of the file)."""
    return zlib.compress(np.packbits(masks.stack(), axis=None).tobytes(), 6)


def unpack_masks(data: bytes, shape: tuple[int, int], n: int = len(MASK_NAMES)) -> GroundTruthMasks:
    """Inverse of :func:`pack_masks` for ``n`` masks of ``shape`` (H, W)."""
    h, w = shape
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), np.uint8), count=n * h * w)
    return GroundTruthMasks.from_stack(bits.reshape(n, h, w).astype(bool))


class GroundTruthWriter:
    """Collects per-frame masks (compressed right away) and writes the file atomically on close."""

    def __init__(self, path: str | os.PathLike[str], drive: Drive) -> None:
        self.path, self.drive = Path(path), drive
        self.chunks: list[bytes] = []
        self.shape: tuple[int, int] | None = None

    def add(self, masks: GroundTruthMasks) -> None:
        """Append the masks of the next frame."""
        self.add_packed(pack_masks(masks), masks.lane.shape)

    def add_packed(self, data: bytes, shape: tuple[int, int]) -> None:
        """Append the next frame's masks already packed with :func:`pack_masks`."""
        self.shape = shape
        self.chunks.append(data)

    def close(self) -> Path:
        """Write the file (frames given so far; per-frame arrays are cut to that count)."""
        n, d = len(self.chunks), self.drive
        arrays: dict[str, Any] = {f: np.asarray(getattr(d, f))[:n] for f in FRAME_FIELDS}
        arrays.update({f: np.asarray(getattr(d, f)) for f in STEER_FIELDS})
        arrays["lookahead_uv"] = d.lookahead_pixels()[:n]
        cam = d.config.camera
        arrays.update(
            format=np.array(FORMAT), config_json=np.array(json.dumps(d.config.to_dict())),
            world_json=np.array(json.dumps(d.world.to_dict())),
            mask_names=np.array(MASK_NAMES), mask_shape=np.array(self.shape or (cam.height, cam.width)),
            mask_offsets=np.concatenate([[0], np.cumsum([len(c) for c in self.chunks])]).astype(np.int64),
            mask_data=np.frombuffer(b"".join(self.chunks), np.uint8),
        )
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return self.path


class GroundTruth:
    """A loaded ground-truth file. Per-frame arrays are attributes (``gt.steering[i]``, ...)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise GroundTruthError(f"{self.path}: ground-truth file not found")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self._arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, zlib.error) as e:
            raise GroundTruthError(f"{self.path}: not a readable .npz ground-truth file ({e})") from e
        fmt = str(self._arrays.get("format", ""))
        if fmt != FORMAT:
            raise GroundTruthError(f"{self.path}: format {fmt!r}, expected {FORMAT!r}")
        self.config = DriveConfig.from_dict(json.loads(str(self._arrays["config_json"])))
        self.world = self._world()
        self.mask_names = tuple(str(x) for x in self._arrays["mask_names"])
        self.mask_shape = tuple(int(x) for x in self._arrays["mask_shape"])
        if len(self._arrays["mask_offsets"]) != len(self) + 1:
            entries = len(self._arrays["mask_offsets"]) - 1
            raise GroundTruthError(f"{self.path}: {len(self)} frames but {entries} mask entries")

    def _world(self) -> WorldParams:
        text = self._arrays.get("world_json")
        if text is None:
            return DEFAULT_WORLD
        try:
            return world_from_dict(json.loads(str(text)))
        except (ValueError, TypeError, AttributeError) as e:
            raise GroundTruthError(f"{self.path}: world_json is not a synthetic world ({e})") from e

    def __len__(self) -> int:
        return len(self._arrays["frame_times_ns"])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("_arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def masks(self, i: int) -> GroundTruthMasks:
        """Decode the masks of frame ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1} in {self.path}")
        off = self._arrays["mask_offsets"]
        data = self._arrays["mask_data"][off[i]:off[i + 1]].tobytes()
        return unpack_masks(data, self.mask_shape, len(self.mask_names))  # type: ignore[arg-type]


def write_ground_truth(path: str | os.PathLike[str], drive: Drive, masks: list[GroundTruthMasks]) -> Path:
    """Write the ground truth of ``drive`` with the masks of its frames (in order)."""
    w = GroundTruthWriter(path, drive)
    for m in masks:
        w.add(m)
    return w.close()


def load_ground_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """Load a ground-truth file written by :func:`write_ground_truth` or ``vbp-live synth``."""
    return GroundTruth(path)
