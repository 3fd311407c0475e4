"""Prepared datasets: uint8 frames in one memory-mappable file, an index and a manifest.

Layout of a dataset directory (format ``vbp_live/dataset-v1``)::

    frames.u8       raw uint8 frames, C-order (N, H, W) or (N, H, W, 3): no decoding to train
    index.csv       i,timestamp_ns,steering_rad,speed_mps,source,split   (one row per frame)
    manifest.yaml   format, frame shape, count, crop (CropSpec), preprocessing config,
                    counts (read / kept / dropped per reason), split sizes, sources

``manifest.yaml`` is written last, so a directory without it is never a complete dataset.
:class:`DatasetWriter` builds the directory under ``<dir>.partial`` and renames it into place
on :meth:`~DatasetWriter.finalize`; :class:`PreparedDataset` reads it.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vbp_live.core.preprocess import CropSpec
from vbp_live.io.atomic import write_text_atomic

FORMAT = "vbp_live/dataset-v1"
INDEX_FIELDS = ["i", "timestamp_ns", "steering_rad", "speed_mps", "source", "split"]


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete or inconsistent."""


class PreparedDataset:
    """Read-only view of a prepared dataset; ``frames`` is a numpy memmap (no copy, no decode)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        man = self.path / "manifest.yaml"
        if not man.is_file():
            hint = " (an unfinished run? re-run `vbp-live prep`)" if (self.path.parent / (self.path.name + ".partial")).exists() else ""
            raise DatasetError(f"{self.path}: not a prepared dataset, manifest.yaml is missing{hint}")
        with open(man, encoding="utf-8") as f:
            self.manifest: dict[str, Any] = yaml.safe_load(f) or {}
        if self.manifest.get("format") != FORMAT:
            raise DatasetError(f"{man}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self.crop = CropSpec.from_dict(self.manifest["crop"])
        self.frame_shape = tuple(int(v) for v in self.manifest["frame_shape"])
        self._read_index()
        self.frames = self._open_frames()

    def _read_index(self) -> None:
        with open(self.path / "index.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.timestamps_ns = np.array([int(r["timestamp_ns"]) for r in rows], np.int64)
        self.steering = np.array([float(r["steering_rad"]) for r in rows], np.float32)
        self.speed = np.array([float(r["speed_mps"]) for r in rows], np.float32)
        self.sources = [r["source"] for r in rows]
        self.split = np.array([r["split"] for r in rows])

    def _open_frames(self) -> np.memmap:
        n = len(self.timestamps_ns)
        if n != int(self.manifest["num_frames"]):
            raise DatasetError(f"{self.path}: index.csv has {n} rows, manifest says {self.manifest['num_frames']}")
        f = self.path / "frames.u8"
        want = n * int(np.prod(self.frame_shape))
        if not f.is_file() or f.stat().st_size != want:
            got = f.stat().st_size if f.is_file() else "missing"
            raise DatasetError(f"{f}: expected {want} bytes for {n} frames of {self.frame_shape}, got {got}")
        return np.memmap(f, np.uint8, "r", shape=(n, *self.frame_shape))

    def __len__(self) -> int:
        return len(self.timestamps_ns)

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split ("train" or "test"), in time order."""
        return np.flatnonzero(self.split == split)


class DatasetWriter:
    """Append frames and labels, then :meth:`finalize` to make the dataset appear atomically.

    Args:
        out_dir: final dataset directory (must not exist unless ``overwrite``).
        frame_shape: (H, W) or (H, W, 3) of every frame.
        crop: the preprocessing that produced the frames.
    """

    def __init__(self, out_dir: str | os.PathLike[str], frame_shape: tuple[int, ...], crop: CropSpec, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise DatasetError(f"{self.out_dir}: already exists (use overwrite)")
        self.partial = self.out_dir.parent / (self.out_dir.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self.frame_shape, self.crop = tuple(frame_shape), crop
        self.rows: list[tuple[int, float, float, str]] = []
        self._frames = open(self.partial / "frames.u8", "wb")

    def append(self, frame: np.ndarray, timestamp_ns: int, steering_rad: float, speed_mps: float, source: str) -> None:
        """Add one preprocessed uint8 frame with its labels."""
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise DatasetError(f"frame {frame.dtype}{frame.shape} does not match {self.frame_shape} uint8")
        self._frames.write(np.ascontiguousarray(frame).tobytes())
        self.rows.append((int(timestamp_ns), float(steering_rad), float(speed_mps), source))

    def finalize(self, splits: list[str] | np.ndarray, manifest_extra: dict[str, Any] | None = None) -> Path:
        """Write index and manifest, then move the directory into place. Returns its path."""
        self._frames.close()
        if len(splits) != len(self.rows):
            raise DatasetError(f"{len(splits)} split labels for {len(self.rows)} frames")
        with open(self.partial / "index.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(INDEX_FIELDS)
            for i, ((t, s, v, src), sp) in enumerate(zip(self.rows, splits)):
                w.writerow([i, t, repr(s), repr(v), src, sp])
        manifest = {
            "format": FORMAT,
            "num_frames": len(self.rows),
            "frame_shape": list(self.frame_shape),
            "crop": self.crop.to_dict(),
            "splits": {k: int(np.sum(np.asarray(splits) == k)) for k in sorted(set(splits))},
            **(manifest_extra or {}),
        }
        write_text_atomic(self.partial / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self.partial, self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        """Close and delete the partial directory."""
        self._frames.close()
        shutil.rmtree(self.partial, ignore_errors=True)
