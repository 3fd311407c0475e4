"""Prepared datasets: uint8 frames in one memory-mappable file, an index and a manifest.

Layout of a dataset directory (format ``vbp_live/dataset-v1``)::

    frames.u8       raw uint8 frames, C-order (N, H, W) or (N, H, W, 3): no decoding to train
    index.csv       i,timestamp_ns,steering_rad,speed_mps,source,split   (one row per frame)
    manifest.yaml   format, frame shape, count, crop (CropSpec), preprocessing config,
                    counts (read / kept / dropped per reason), split sizes, sources

``manifest.yaml`` is written last, so a directory without it is never a complete dataset.
:class:`DatasetWriter` builds the directory under ``<dir>.partial`` and renames it into place
on :meth:`~DatasetWriter.finalize`; :class:`PreparedDataset` reads it.

Resuming: a writer created with ``resume_key`` appends each row to ``<dir>.partial/rows.csv``
as well, and :meth:`~DatasetWriter.checkpoint` makes everything appended so far durable
(fsync) and records it in ``progress.yaml`` (written atomically, last). A later writer with the
same key picks up at the last checkpoint: frames and rows past it are cut off, so a run
killed at any instant (even ``kill -9``) resumes to the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vbp_live.core.errors import InputError
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.atomic import write_text_atomic

FORMAT = "vbp_live/dataset-v1"
INDEX_FIELDS = ["i", "timestamp_ns", "steering_rad", "speed_mps", "source", "split"]
_ROWS, _PROGRESS = "rows.csv", "progress.yaml"  # resume bookkeeping inside <dir>.partial


FINGERPRINT_KEY = "frames_fingerprint"
_FINGERPRINT_FRAMES = 4
MAX_FRAME_BYTES = 64 << 20  # one frame; a manifest claiming more is not a dataset this tool wrote


class DatasetError(InputError):
    """A dataset directory is missing, incomplete or inconsistent."""


def frames_fingerprint(frames: np.ndarray) -> str:
    """sha256 of the frame shape and of up to 4 whole frames spread over the set (first, ..., last).

    Stored in the manifest at :meth:`DatasetWriter.finalize` and checked on open: a ``frame_shape``
    edited to another one with the same byte count (which would read every frame scrambled) or
    a replaced ``frames.u8`` no longer matches. Reads 4 frames, so it is cheap for any size.
    """
    h = hashlib.sha256(repr(tuple(int(v) for v in frames.shape[1:])).encode())
    n = len(frames)
    for i in sorted({round(k * (n - 1) / max(1, _FINGERPRINT_FRAMES - 1)) for k in range(_FINGERPRINT_FRAMES)}
                    if n else []):
        h.update(np.ascontiguousarray(frames[i]).tobytes())
    return "sha256:" + h.hexdigest()


def _read_manifest(man: Path) -> dict[str, Any]:
    try:
        with open(man, encoding="utf-8") as f:
            manifest = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{man}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(manifest, dict):
        raise DatasetError(f"{man}: expected a mapping of manifest keys, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{man}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def _frame_shape(man: Path, shape: object) -> tuple[int, ...]:
    """``frame_shape`` as (H, W) or (H, W, 3) of positive ints within :data:`MAX_FRAME_BYTES`."""
    ok = (isinstance(shape, list) and len(shape) in (2, 3)
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
          and (len(shape) == 2 or shape[2] == 3))
    if not ok or int(np.prod(shape, dtype=np.float64)) > MAX_FRAME_BYTES:
        raise DatasetError(f"{man}: frame_shape must be [H, W] or [H, W, 3] of positive sizes "
                           f"(at most {MAX_FRAME_BYTES >> 20} MiB a frame), got {shape!r}")
    return tuple(shape)


class PreparedDataset:
    """Read-only view of a prepared dataset; ``frames`` is a numpy memmap (no copy, no decode)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        man = self.path / "manifest.yaml"
        if not man.is_file():
            unfinished = (self.path.parent / (self.path.name + ".partial")).exists()
            hint = " (an unfinished run? re-run `vbp-live prep`)" if unfinished else ""
            raise DatasetError(f"{self.path}: not a prepared dataset, manifest.yaml is missing{hint}")
        self.manifest = _read_manifest(man)
        try:
            self.crop = CropSpec.from_dict(self.manifest["crop"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{man}: crop is not a valid crop ({e})") from e
        self.frame_shape = _frame_shape(man, self.manifest.get("frame_shape"))
        self._read_index()
        self.frames = self._open_frames()
        self._check_fingerprint(man)

    def _read_index(self) -> None:
        index = self.path / "index.csv"
        try:
            with open(index, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            self.timestamps_ns = np.array([int(r["timestamp_ns"]) for r in rows], np.int64)
            self.steering = np.array([float(r["steering_rad"]) for r in rows], np.float32)
            self.speed = np.array([float(r["speed_mps"]) for r in rows], np.float32)
            self.sources = [str(r["source"]) for r in rows]
            self.split = np.array([str(r["split"]) for r in rows])
        except FileNotFoundError as e:
            raise DatasetError(f"{index}: missing (every prepared dataset has one)") from e
        except (KeyError, TypeError, ValueError, OverflowError, UnicodeDecodeError, csv.Error) as e:
            raise DatasetError(f"{index}: malformed ({type(e).__name__}: {e}); re-run `vbp-live prep`") from e

    def _open_frames(self) -> np.memmap:
        n = len(self.timestamps_ns)
        declared = self.manifest.get("num_frames")
        if not isinstance(declared, int) or isinstance(declared, bool) or n != declared:
            raise DatasetError(f"{self.path}: index.csv has {n} rows, manifest says num_frames {declared!r}")
        f = self.path / "frames.u8"
        want = n * int(np.prod(self.frame_shape))
        if not f.is_file() or f.stat().st_size != want:
            got = f.stat().st_size if f.is_file() else "missing"
            raise DatasetError(f"{f}: expected {want} bytes for {n} frames of {self.frame_shape}, got {got}")
        return np.memmap(f, np.uint8, "r", shape=(n, *self.frame_shape))

    def _check_fingerprint(self, man: Path) -> None:
        """The manifest's ``frames_fingerprint`` (datasets written since it exists) must match the frames."""
        stored = self.manifest.get(FINGERPRINT_KEY)
        if stored is None:
            return  # an older dataset: nothing to compare with
        if stored != frames_fingerprint(self.frames):
            raise DatasetError(
                f"{man}: frame_shape {list(self.frame_shape)} or frames.u8 was changed after the dataset was "
                f"written ({FINGERPRINT_KEY} does not match): the frames would be read scrambled; "
                "re-run `vbp-live prep`"
            )

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

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        frame_shape: tuple[int, ...],
        crop: CropSpec,
        overwrite: bool = False,
        resume_key: str | None = None,
    ):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise DatasetError(f"{self.out_dir}: already exists (use overwrite)")
        self.partial = self.out_dir.parent / (self.out_dir.name + ".partial")
        self.frame_shape, self.crop = tuple(frame_shape), crop
        self.frame_bytes = int(np.prod(self.frame_shape))
        self.resume_key = resume_key
        self.rows: list[tuple[int, float, float, str]] = []
        #: user state saved by the checkpoint this writer resumed from (None: fresh start)
        self.resumed_state: dict[str, Any] | None = None
        if resume_key is None or not self._resume(resume_key):
            self._start_clean()

    def _start_clean(self) -> None:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self._frames = open(self.partial / "frames.u8", "wb")  # noqa: SIM115 - open across append() calls; close() ends it
        self._rows_file = open(self.partial / _ROWS, "w", newline="", encoding="utf-8") if self.resume_key else None  # noqa: SIM115

    def _resume(self, key: str) -> bool:
        """Reopen ``<dir>.partial`` at its last checkpoint if it was made with ``key``."""
        prog = self.partial / _PROGRESS
        if not prog.is_file():
            return False
        with open(prog, encoding="utf-8") as f:
            p = yaml.safe_load(f) or {}
        n, rows_bytes = int(p.get("num_rows", -1)), int(p.get("rows_bytes", -1))
        frames, rows = self.partial / "frames.u8", self.partial / _ROWS
        if (p.get("key") != key or p.get("frame_shape") != list(self.frame_shape) or n < 0
                or not frames.is_file() or frames.stat().st_size < n * self.frame_bytes
                or not rows.is_file() or rows.stat().st_size < rows_bytes):
            return False
        os.truncate(frames, n * self.frame_bytes)
        os.truncate(rows, rows_bytes)
        with open(rows, newline="", encoding="utf-8") as f:
            self.rows = [(int(t), float(s), float(v), src) for t, s, v, src in csv.reader(f)]
        if len(self.rows) != n:
            self.rows = []
            return False
        self._frames = open(frames, "ab")  # noqa: SIM115 - open across append() calls; close() ends it
        self._rows_file = open(rows, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.resumed_state = p.get("state") or {}
        return True

    def append(self, frame: np.ndarray, timestamp_ns: int, steering_rad: float, speed_mps: float, source: str) -> None:
        """Add one preprocessed uint8 frame with its labels."""
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise DatasetError(f"frame {frame.dtype}{frame.shape} does not match {self.frame_shape} uint8")
        self._frames.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        row = (int(timestamp_ns), float(steering_rad), float(speed_mps), source)
        self.rows.append(row)
        if self._rows_file is not None:
            csv.writer(self._rows_file).writerow([row[0], repr(row[1]), repr(row[2]), row[3]])

    def __len__(self) -> int:
        return len(self.rows)

    def checkpoint(self, state: dict[str, Any] | None = None) -> None:
        """Make every appended frame and row durable; a resumed writer restarts from here.

        Args:
            state: small YAML-safe dict the caller needs to resume (e.g. how far it read);
                returned as :attr:`resumed_state` by the next writer with the same key.
        """
        if self._rows_file is None:
            raise DatasetError("checkpoint() needs a writer created with resume_key")
        for fh in (self._frames, self._rows_file):
            fh.flush()
            os.fsync(fh.fileno())
        progress = {
            "key": self.resume_key,
            "frame_shape": list(self.frame_shape),
            "num_rows": len(self.rows),
            "rows_bytes": self._rows_file.tell(),
            "state": state or {},
        }
        write_text_atomic(self.partial / _PROGRESS, yaml.safe_dump(progress, sort_keys=False))

    def finalize(
        self,
        splits: list[str] | np.ndarray,
        manifest_extra: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> Path:
        """Write index and manifest, then move the directory into place. Returns its path.

        Args:
            splits: one split label per frame, in final order.
            manifest_extra: more manifest keys (preprocessing config, counts, ...).
            order: optional permutation: final row ``i`` is appended row ``order[i]`` (e.g. to
                sort frames by time when they were appended in another order).
        """
        self._close_files()
        if len(splits) != len(self.rows):
            raise DatasetError(f"{len(splits)} split labels for {len(self.rows)} frames")
        if order is not None:
            self._reorder(np.asarray(order, np.int64))
        with open(self.partial / "index.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(INDEX_FIELDS)
            for i, ((t, s, v, src), sp) in enumerate(zip(self.rows, splits, strict=True)):
                w.writerow([i, t, repr(s), repr(v), src, sp])
        manifest = {
            "format": FORMAT,
            "num_frames": len(self.rows),
            "frame_shape": list(self.frame_shape),
            FINGERPRINT_KEY: self._fingerprint(),
            "crop": self.crop.to_dict(),
            "splits": {k: int(np.sum(np.asarray(splits) == k)) for k in sorted(set(splits))},
            **(manifest_extra or {}),
        }
        for name in (_PROGRESS, _ROWS):  # resume bookkeeping goes before the manifest appears
            (self.partial / name).unlink(missing_ok=True)
        write_text_atomic(self.partial / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self.partial, self.out_dir)
        return self.out_dir

    def _fingerprint(self) -> str:
        path, n = self.partial / "frames.u8", len(self.rows)
        frames = np.memmap(path, np.uint8, "r", shape=(n, *self.frame_shape)) if n else np.zeros((0, *self.frame_shape))
        try:
            return frames_fingerprint(frames)
        finally:
            del frames

    def _close_files(self) -> None:
        self._frames.close()
        if self._rows_file is not None:
            self._rows_file.close()

    def _reorder(self, order: np.ndarray) -> None:
        """Permute frames (block by block, bounded memory) and rows into ``order``."""
        n = len(self.rows)
        if sorted(order.tolist()) != list(range(n)):
            raise DatasetError(f"order is not a permutation of {n} rows")
        if np.array_equal(order, np.arange(n)):
            return
        src_path, dst_path = self.partial / "frames.u8", self.partial / "frames.u8.sorted"
        src = np.memmap(src_path, np.uint8, "r", shape=(n, self.frame_bytes)) if n else None
        with open(dst_path, "wb") as dst:
            for a in range(0, n, 256):
                dst.write(np.ascontiguousarray(src[order[a : a + 256]]).tobytes())
        del src
        os.replace(dst_path, src_path)
        self.rows = [self.rows[i] for i in order]

    def abort(self) -> None:
        """Close and delete the partial directory."""
        self._close_files()
        shutil.rmtree(self.partial, ignore_errors=True)
