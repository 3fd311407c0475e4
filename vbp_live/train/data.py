"""Training data: frames + targets + splits, a per-epoch batch plan, and a prefetching loader.

The batch order is a pure function of ``(seed, epoch)``: resuming mid-epoch replays the same
plan and skips the batches already done. Every DDP rank builds the same *global* batch and takes
a strided slice of it (``batch[rank::world]``), so the global batch is identical for any number
of processes. Frames are read from the memory-mapped dataset with one fancy-indexing call per
batch (indices sorted for locality), augmented when the training loader is given an ``augment``
transform (:mod:`vbp_live.train.augment`; validation never is) and converted with
:func:`vbp_live.models.frames_to_input`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vbp_live.core.errors import InputError
from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.io.dataset import PreparedDataset
from vbp_live.models import frames_to_input
from vbp_live.train.config import DataConfig
from vbp_live.train.signs import make_sign_dataset

log = logging.getLogger(__name__)

# (position of the batch in the loader's list, uint8 frames, targets) -> augmented (frames, targets)
BatchTransform = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class TrainData:
    """Frames and targets with their train/validation rows.

    Attributes:
        frames: uint8 (N, H, W) or (N, H, W, 3), usually a numpy memmap.
        targets: (N,) float32 steering wheel angle in radians, or int64 class ids.
        train_idx, val_idx: dataset rows of each split, in time order (training rows repeat where
            ``data.curve_repeat`` asks).
        crop: the preprocessing that produced the frames (goes into checkpoints).
        info: where the data came from (recorded in checkpoint meta).
        next_row: (N,) the dataset row of each row's next frame in the same recording and split
            (:func:`successors`), -1 where there is none; None when the data has no time order.
    """

    frames: np.ndarray
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    crop: CropSpec
    info: dict[str, Any] = field(default_factory=dict)
    next_row: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the network input."""
        h, w = self.frames.shape[1:3]
        return (1 if self.frames.ndim == 3 else self.frames.shape[3], int(h), int(w))


def successors(timestamps_ns: np.ndarray, sources: Sequence[str], split: np.ndarray) -> np.ndarray:
    """(N,) int64: the row of each row's next frame, -1 where none.

    The next frame is the next in time of the same recording (``sources``; a prepared dataset of
    several recordings interleaves their rows by time) when it is of the same split and at most 1.5
    median frame intervals later (a frame the prep dropped leaves no successor).
    """
    ts = np.asarray(timestamps_ns, np.int64)  # (N,)
    nxt = np.full(len(ts), -1, np.int64)  # (N,)
    if len(ts) < 2:
        return nxt
    _, src = np.unique(np.asarray(sources), return_inverse=True)  # (N,) recording ids
    order = np.lexsort((ts, src))  # (N,) rows by recording, then time
    src, spl, dt = src[order], np.asarray(split)[order], np.diff(ts[order])  # (N,), (N,), (N-1,)
    same = (src[1:] == src[:-1]) & (spl[1:] == spl[:-1]) & (dt > 0)  # (N-1,)
    if not same.any():
        return nxt
    ok = same & (dt <= 1.5 * np.median(dt[same]))  # (N-1,)
    nxt[order[:-1][ok]] = order[1:][ok]
    return nxt


def pair_batches(rows: np.ndarray, next_row: np.ndarray, batch_size: int, seed: int, epoch: int,
                 world: int = 1) -> list[np.ndarray]:
    """Global batches of temporal pairs: ``batch_size / 2`` planned rows, then the next frame of each.

    The planned rows are those of ``rows`` that have a successor, shuffled by ``(seed, epoch)`` as
    :func:`epoch_batches` does; a trailing partial batch is dropped. A rank's strided slice
    (:func:`shard`) keeps each pair together when ``batch_size / 2`` is a multiple of ``world``.
    """
    firsts = np.asarray(rows)[next_row[rows] >= 0]
    halves = epoch_batches(firsts, batch_size // 2, seed, epoch, True, world)
    return [np.concatenate([a, next_row[a]]) for a in halves]  # (B,) = [a_0..a_{h-1}, next(a_0)..]


def _subset(idx: np.ndarray, stride: int, cap: int) -> np.ndarray:
    idx = idx[::stride]
    return idx[:cap] if cap > 0 else idx


def repeat_curves(rows: np.ndarray, steering_rad: np.ndarray, repeat: int, min_deg: float) -> np.ndarray:
    """``rows`` with each row whose |steering| is at least ``min_deg`` degrees repeated ``repeat`` times.

    The order is kept (a repeated row's copies follow it); the epoch plan shuffles them.
    """
    rows = np.asarray(rows)
    if repeat <= 1 or len(rows) == 0:
        return rows
    sharp = np.abs(np.degrees(steering_rad[rows])) >= min_deg  # (R,)
    return np.repeat(rows, np.where(sharp, repeat, 1))  # (R + (repeat - 1) * sharp.sum(),)


def load_data(cfg: DataConfig) -> TrainData:
    """Open the data a config names; raises ValueError naming the dataset if a split is empty."""
    if cfg.kind == "synthetic_signs":

        frames, labels = make_sign_dataset(
            cfg.synthetic_frames, cfg.num_classes, cfg.synthetic_size, cfg.synthetic_seed
        )
        n_val = max(1, len(frames) // 5)
        train_idx, val_idx = np.arange(len(frames) - n_val), np.arange(len(frames) - n_val, len(frames))
        size = cfg.synthetic_size
        crop = CropSpec(**{**CROP_PRESETS["signnet"].to_dict(), "out_height": size, "out_width": size})
        next_row = None  # class labels of independent images: no time order
        info = {
            "kind": "synthetic_signs", "frames": len(frames), "classes": cfg.num_classes, "seed": cfg.synthetic_seed,
        }
    else:
        ds = PreparedDataset(cfg.path)
        frames, labels, crop = ds.frames, ds.steering, ds.crop
        train_idx, val_idx = ds.indices(cfg.train_split), ds.indices(cfg.val_split)
        info = {"kind": "prepared", "path": str(ds.path), "frames": len(ds)}
        next_row = successors(ds.timestamps_ns, ds.sources, ds.split)
    train_rows = _subset(train_idx, cfg.train_stride, cfg.max_train_frames)
    if cfg.curve_repeat > 1:
        n = len(train_rows)
        train_rows = repeat_curves(train_rows, labels, cfg.curve_repeat, cfg.curve_min_deg)
        log.info("data.curve_repeat: %d of %d training rows steer %g deg or more, each planned %d times",
                 (len(train_rows) - n) // (cfg.curve_repeat - 1), n, cfg.curve_min_deg, cfg.curve_repeat)
    data = TrainData(frames, labels, train_rows, _subset(val_idx, cfg.val_stride, cfg.max_val_frames), crop,
                     info, next_row)
    for name, idx in (("train", data.train_idx), ("validation", data.val_idx)):
        if len(idx) == 0:
            raise InputError(f"{cfg.path or cfg.kind}: the {name} split is empty "
                             f"(splits {cfg.train_split!r}/{cfg.val_split!r}, strides, caps)")
    return data


def epoch_batches(indices: np.ndarray, batch_size: int, seed: int, epoch: int,
                  drop_last: bool = True, world: int = 1) -> list[np.ndarray]:
    """The global batches of one epoch: a (seed, epoch)-determined shuffle, each batch sorted.

    A trailing batch smaller than ``batch_size`` is dropped when ``drop_last``; one smaller than
    ``world`` is always dropped (a rank would get no frame).
    """
    perm = np.asarray(indices)[np.random.default_rng([seed, epoch]).permutation(len(indices))]
    batches = [np.sort(perm[i:i + batch_size]) for i in range(0, len(perm), batch_size)]
    if batches and len(batches[-1]) < (batch_size if drop_last else world):
        batches.pop()
    return batches


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's part of a global batch: a strided slice."""
    return batch[rank::world]


class BatchLoader:
    """Iterate ``(x, y)`` tensor batches for a list of row-index arrays, prefetching in a thread.

    Args:
        frames, targets: the arrays of :class:`TrainData`.
        batches: row indices per batch (already sharded for this rank).
        prefetch: batches read ahead by a background thread (0 = read inline).
        pin: pin host memory (for asynchronous copies to CUDA).
        crop: the frames' preprocessing (its input scaling); None: ``x / 255``.
        augment: applied to each batch's uint8 frames and targets before the conversion (the
            training split only, e.g. :meth:`vbp_live.train.augment.Augmenter.for_epoch`); None: off.
    """

    def __init__(self, frames: np.ndarray, targets: np.ndarray, batches: Sequence[np.ndarray],
                 prefetch: int = 2, pin: bool = False, crop: CropSpec | None = None,
                 augment: BatchTransform | None = None):
        self.frames, self.targets, self.batches, self.crop = frames, targets, list(batches), crop
        self.augment = augment
        self.prefetch, self.pin = prefetch, pin
        self._stop = threading.Event()

    def __len__(self) -> int:
        return len(self.batches)

    def load(self, idx: np.ndarray, position: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Read batch ``position``: one fancy-indexing read of the memmap, augmentation, uint8 -> float input."""
        frames, targets = np.asarray(self.frames[idx]), np.asarray(self.targets[idx])  # (B, H, W[, C]), (B,)
        if self.augment is not None:
            frames, targets = self.augment(position, frames, targets)
        x = frames_to_input(frames, spec=self.crop)  # (B, C, H, W)
        y = torch.as_tensor(targets)  # (B,)
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.prefetch <= 0:
            for i, idx in enumerate(self.batches):
                yield self.load(idx, i)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self._stop.clear()
        worker = threading.Thread(target=self._produce, args=(q,), daemon=True, name="vbp-loader")
        worker.start()
        try:
            for _ in self.batches:
                item = self._get(q, worker)
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            worker.join(timeout=5)

    def _produce(self, q: queue.Queue) -> None:
        try:
            for i, idx in enumerate(self.batches):
                item = self.load(idx, i)
                while not self._stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    @staticmethod
    def _get(q: queue.Queue, worker: threading.Thread) -> Any:
        while True:
            try:
                return q.get(timeout=0.5)
            except queue.Empty:
                if not worker.is_alive() and q.empty():
                    raise RuntimeError("the loader thread stopped without producing the next batch") from None
