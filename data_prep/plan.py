"""Decide, before decoding any image, which frames are kept and with which labels.

Steps 1 (synchronize), 3 (speed filter) and 6 (time-ordered split) of the paper's
preprocessing work on timestamps and measurements alone; step 2 (center camera) was applied
by the recording reader. The result says, for every camera frame read, either its steering/speed or
the first reason it was dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_prep.config import PrepConfig, SplitConfig
from vbp_live.core.sync import (
    FrameSync,
    Samples,
    clean_samples,
    drop_counts,
    overlapping_sources,
    sync_frames,
    sync_frames_per_source,
)
from vbp_live.recordings.base import Scan

log = logging.getLogger(__name__)

SLOW = "slow"  # speed <= filter.min_speed_mps


@dataclass
class Plan:
    """Every frame of a scan, in time order.

    Attributes:
        ordinal: (F,) the frame's position in the scan (what ``Recording.payloads`` yields).
        t: (F,) int64 timestamps (ns), ascending.
        steering: (F,) rad (NaN where dropped). speed: (F,) m/s.
        source: (F,) index into ``names``. names: source names.
        reason: (F,) "" for kept frames, else the drop reason.
        info: extra counts (reordered frames, cleaned samples, ...).
    """

    ordinal: np.ndarray
    t: np.ndarray
    steering: np.ndarray
    speed: np.ndarray
    source: np.ndarray
    names: list[str]
    reason: np.ndarray
    info: dict[str, Any]

    @property
    def kept(self) -> np.ndarray:
        """(F,) bool, time order."""
        return self.reason == ""

    def wanted(self) -> np.ndarray:
        """(F,) bool indexed by ordinal: frames whose images must be decoded."""
        w = np.zeros(len(self.ordinal), bool)
        w[self.ordinal[self.kept]] = True
        return w

    def by_ordinal(self) -> np.ndarray:
        """(F,) position in time order of each ordinal (inverse of ``ordinal``)."""
        inv = np.empty(len(self.ordinal), np.int64)
        inv[self.ordinal] = np.arange(len(self.ordinal))
        return inv

    def dropped(self) -> dict[str, int]:
        """Frames dropped per reason."""
        return drop_counts(self.reason)


def make_plan(scan: Scan, cfg: PrepConfig) -> Plan:
    """Synchronize, filter by speed and record drop reasons for every frame of ``scan``."""
    gap = cfg.sync.max_gap_ns()
    info: dict[str, Any] = {}
    if scan.presynced is None:
        fs = _sync(scan, cfg, gap, info)
        steering = fs.values["steering"]
        speed = fs.values["speed"] if scan.has_speed else np.full(len(fs.t), np.nan)
    else:
        fs = sync_frames(scan.frame_t, {}, cfg.sync.method, gap)
        nan = np.full(len(scan.frame_t), np.nan)
        steering, speed = (np.asarray(scan.presynced.get(k, nan), np.float64)[fs.order] for k in ("steering", "speed"))
        _mark_missing(fs, steering, speed if scan.has_speed else None)
    info["frames_reordered"] = fs.reordered
    reason = fs.reason.copy()
    if scan.reason is not None:
        pre = np.asarray(scan.reason, dtype=object)[fs.order]
        reason[pre != ""] = pre[pre != ""]  # the reader's reasons come first (deleted, missing image, ...)
    if scan.has_speed:
        reason[(reason == "") & ~(speed > cfg.filter.min_speed_mps)] = SLOW
    else:
        info["speed_filter"] = "skipped: the recording has no speed"
    return Plan(fs.order, fs.t, steering, speed, scan.frame_source[fs.order], scan.names, reason, info)


def _channels(scan: Scan, keep: np.ndarray | None, info: dict[str, Any]) -> dict[str, Samples]:
    """The scan's cleaned steering/speed samples (only those where ``keep``); their counts are added to ``info``."""
    channels = {}
    for name, samples in (("steering", scan.steering), ("speed", scan.speed)):
        if samples is None:
            continue
        t, v = samples if keep is None else (samples[0][keep], samples[1][keep])
        s = clean_samples(t, v)
        channels[name] = s
        counts = info.setdefault(f"{name}_samples", {"read": 0, "reordered": 0, "duplicate_times": 0, "non_finite": 0})
        for key, n in (("read", len(t)), ("reordered", s.reordered), ("duplicate_times", s.duplicates),
                       ("non_finite", s.non_finite)):
            counts[key] += int(n)
    return channels


def _sync(scan: Scan, cfg: PrepConfig, gap: int | None, info: dict[str, Any]) -> FrameSync:
    """Steering and speed onto the frames: pooled for one drive, per source for drives that overlap in time.

    Per source, the sample counts in ``info`` are the sums over the sources (an equal time in two drives is
    not a duplicate).
    """
    src = scan.sample_source
    if src is None or len(scan.frame_t) == 0 or not overlapping_sources(scan.frame_t, scan.frame_source):
        return sync_frames(scan.frame_t, _channels(scan, None, info), cfg.sync.method, gap)
    sources = np.union1d(scan.frame_source, src)  # every sample is counted, also a source without frames
    per_source = {int(k): _channels(scan, src == k, info) for k in sources}
    info["synchronized_per_source"] = "the sources overlap in time: each is synchronized with its own samples"
    log.info("%d sources overlap in time: synchronizing each with its own samples", len(per_source))
    return sync_frames_per_source(scan.frame_t, scan.frame_source, per_source, cfg.sync.method, gap)


def _mark_missing(fs: FrameSync, steering: np.ndarray, speed: np.ndarray | None) -> None:
    """Presynced rows with a NaN/inf value are dropped, never filled (speed None: not measured)."""
    for name, v in (("steering", steering), ("speed", speed)):
        if v is None:
            continue
        fs.reason[(fs.reason == "") & ~np.isfinite(v)] = f"{name}_missing"


def time_split(n: int, cfg: SplitConfig) -> np.ndarray:
    """Split labels for ``n`` time-ordered frames: the first are ``train``, the last ``test``.

    ``test_count`` (when set) is the exact number of test frames, else
    ``round(n * test_fraction)``; either is clipped to [0, n].
    """
    n_test = cfg.test_count if cfg.test_count is not None else int(round(n * cfg.test_fraction))
    n_test = min(max(n_test, 0), n)
    return np.array(["train"] * (n - n_test) + ["test"] * n_test, dtype=object)
