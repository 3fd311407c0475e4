"""Synchronizing vehicle measurements onto camera timestamps (pure numpy).

Cameras and CAN buses tick at different rates (Udacity: 20 Hz images, ~50 Hz steering
reports; comma2k19: 20 Hz frames, ~89 Hz CAN). Each frame needs one steering and one speed
value at *its* timestamp. :func:`sync_channel` resamples one measurement channel onto the
frame times, either by linear interpolation (default) or zero-order hold (the latest sample
at or before the frame, as Udacity's own evaluation generator does).

A frame is never given a made-up value: frames before the first sample, after the last
sample, or inside a gap between samples wider than ``max_gap_ns`` get NaN and a drop reason.

All times are integer nanoseconds (int64); values are float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("linear", "zoh")

# Per-channel reason codes returned by sync_channel (0 = synchronized).
OK, BEFORE_FIRST, AFTER_LAST, GAP = 0, 1, 2, 3
REASON_NAMES = {BEFORE_FIRST: "before_first", AFTER_LAST: "after_last", GAP: "gap"}


@dataclass(frozen=True)
class Samples:
    """A cleaned, strictly increasing time series.

    Attributes:
        t: (N,) int64 sample times in ns, strictly increasing.
        v: (N,) float64 values.
        reordered: how many input samples came earlier than their predecessor.
        duplicates: how many samples were removed because their time repeated an earlier one.
        non_finite: how many samples were removed because the value was NaN or infinite.
    """

    t: np.ndarray
    v: np.ndarray
    reordered: int = 0
    duplicates: int = 0
    non_finite: int = 0


_NO_SAMPLES = Samples(np.zeros(0, np.int64), np.zeros(0))  # a source without measurements of a channel


def count_reordered(t: np.ndarray) -> int:
    """Number of entries smaller than the entry before them (0 for a sorted array)."""
    t = np.asarray(t)
    return int(np.count_nonzero(t[1:] < t[:-1])) if t.size > 1 else 0


def stable_order(t: np.ndarray) -> np.ndarray:
    """Indices that sort ``t`` ascending, keeping input order among equal times."""
    return np.argsort(np.asarray(t, np.int64), kind="stable")


def first_of_duplicates(t_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask over a sorted array: True for the first entry of each distinct time."""
    keep = np.ones(len(t_sorted), bool)
    if len(t_sorted) > 1:
        keep[1:] = t_sorted[1:] != t_sorted[:-1]
    return keep


def clean_samples(t: np.ndarray, v: np.ndarray) -> Samples:
    """Sort samples by time (stable), keep the first of equal times, drop non-finite values.

    Args:
        t: (N,) sample times in ns, any order.
        v: (N,) values.

    Returns:
        :class:`Samples` with strictly increasing times and the counts of what was fixed.
    """
    t = np.asarray(t, np.int64).ravel()
    v = np.asarray(v, np.float64).ravel()
    if t.shape != v.shape:
        raise ValueError(f"sample times {t.shape} and values {v.shape} differ in length")
    finite = np.isfinite(v)
    t, v, non_finite = t[finite], v[finite], int(np.count_nonzero(~finite))
    reordered = count_reordered(t)
    order = stable_order(t)
    t, v = t[order], v[order]
    keep = first_of_duplicates(t)
    return Samples(t[keep], v[keep], reordered, int(np.count_nonzero(~keep)), non_finite)


def sync_channel(
    frame_t: np.ndarray, samples: Samples, method: str = "linear", max_gap_ns: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample one channel onto frame times.

    Args:
        frame_t: (F,) int64 frame times in ns (any order).
        samples: cleaned samples (see :func:`clean_samples`).
        method: ``linear`` (interpolate between the samples around the frame) or ``zoh``
            (hold the latest sample at or before the frame).
        max_gap_ns: drop a frame when the samples around it are further apart than this
            (linear), or when the held sample is older than this (zoh). None disables it.

    Returns:
        ``(values, reasons)``: (F,) float64 with NaN where dropped, and (F,) int8 reason codes
        (:data:`OK`, :data:`BEFORE_FIRST`, :data:`AFTER_LAST`, :data:`GAP`).
    """
    if method not in METHODS:
        raise ValueError(f"sync method must be one of {METHODS}, got {method!r}")
    ft = np.asarray(frame_t, np.int64).ravel()
    reasons = np.zeros(ft.shape, np.int8)
    values = np.full(ft.shape, np.nan)
    if samples.t.size == 0:
        reasons[:] = BEFORE_FIRST
        return values, reasons
    st, sv = samples.t, samples.v
    reasons[ft < st[0]] = BEFORE_FIRST
    reasons[ft > st[-1]] = AFTER_LAST
    inside = reasons == OK
    left = np.searchsorted(st, ft[inside], side="right") - 1  # st[left] <= t
    exact = st[left] == ft[inside]
    right = np.minimum(left + 1, st.size - 1)
    if method == "linear":
        vals, gap = _linear(ft[inside], st, sv, left, right, exact)
    else:
        vals, gap = sv[left], ft[inside] - st[left]
    values[inside] = vals
    if max_gap_ns is not None:
        too_wide = np.zeros(ft.shape, bool)
        too_wide[inside] = gap > max_gap_ns
        reasons[too_wide] = GAP
        values[too_wide] = np.nan
    return values, reasons


def _linear(
    t: np.ndarray, st: np.ndarray, sv: np.ndarray, left: np.ndarray, right: np.ndarray, exact: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation at ``t`` between samples ``left`` and ``right``; also the bracket width."""
    span = st[right] - st[left]  # int64 ns; 0 only where t hits the last sample exactly
    frac = np.where(span > 0, (t - st[left]) / np.maximum(span, 1), 0.0)
    vals = np.where(exact, sv[left], sv[left] + frac * (sv[right] - sv[left]))
    gap = np.where(exact, 0, span)
    return vals, gap


@dataclass(frozen=True)
class FrameSync:
    """Every frame, in time order, with its synchronized values or the reason it was dropped.

    Attributes:
        order: (F,) indices into the input frames, sorted by time (stable).
        t: (F,) int64 frame times in that order.
        values: channel name -> (F,) float64 values (NaN where the channel could not be synced).
        reason: (F,) object array: "" for a frame that synchronized, else the first reason
            that dropped it (``duplicate_timestamp`` or ``<channel>_<before_first|after_last|gap>``).
        reordered: how many input frames came earlier than their predecessor.
    """

    order: np.ndarray
    t: np.ndarray
    values: dict[str, np.ndarray]
    reason: np.ndarray
    reordered: int


def sync_frames(
    frame_t: np.ndarray, channels: dict[str, Samples], method: str = "linear", max_gap_ns: int | None = None
) -> FrameSync:
    """Sort frames by time, drop repeated timestamps, then sync every channel onto the rest.

    Args:
        frame_t: (F,) int64 frame times in ns, in recording order.
        channels: name -> cleaned samples (e.g. ``{"steering": ..., "speed": ...}``); the
            first channel in the dict that fails names the drop reason.
        method: ``linear`` or ``zoh`` (see :func:`sync_channel`).
        max_gap_ns: widest tolerated gap between samples (None: no limit).

    Returns:
        :class:`FrameSync`.
    """
    frame_t = np.asarray(frame_t, np.int64).ravel()
    order = stable_order(frame_t)
    t = frame_t[order]
    reason = np.full(t.shape, "", dtype=object)
    reason[~first_of_duplicates(t)] = "duplicate_timestamp"
    values = {}
    for name, samples in channels.items():
        vals, codes = sync_channel(t, samples, method, max_gap_ns)
        for code, rname in REASON_NAMES.items():
            reason[(codes == code) & (reason == "")] = f"{name}_{rname}"
        values[name] = vals
    return FrameSync(order, t, values, reason, count_reordered(frame_t))


def overlapping_sources(frame_t: np.ndarray, frame_source: np.ndarray) -> bool:
    """Whether the time spans of two sources' frames overlap (separate drives, not parts of one).

    Parts of one drive (Udacity's split bags) follow each other in time; drives recorded or
    simulated separately can share clock ranges, and must then each be synchronized with their
    own measurements.
    """
    frame_t, frame_source = np.asarray(frame_t, np.int64), np.asarray(frame_source)
    spans = sorted((int(frame_t[frame_source == k].min()), int(frame_t[frame_source == k].max()))
                   for k in np.unique(frame_source))
    return any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False))


def sync_frames_per_source(
    frame_t: np.ndarray, frame_source: np.ndarray, channels: dict[int, dict[str, Samples]], method: str = "linear",
    max_gap_ns: int | None = None,
) -> FrameSync:
    """:func:`sync_frames` for several drives at once: each source's frames meet only its own samples.

    Frames come out in time order over all sources (ties by input order); repeated timestamps are
    duplicates only within one source.

    Args:
        frame_t: (F,) int64 frame times in ns, in recording order.
        frame_source: (F,) source index of each frame.
        channels: source index -> that source's cleaned channels (as for :func:`sync_frames`).
        method, max_gap_ns: as for :func:`sync_frames`.
    """
    frame_t = np.asarray(frame_t, np.int64).ravel()
    frame_source = np.asarray(frame_source).ravel()
    order = stable_order(frame_t)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))  # time-order position of every input frame
    names = list(dict.fromkeys(n for ch in channels.values() for n in ch))
    values = {n: np.full(len(order), np.nan) for n in names}
    reason = np.full(len(order), "", dtype=object)
    reordered = 0
    for k in np.unique(frame_source):
        idx = np.flatnonzero(frame_source == k)  # this source's frames, input order
        own = channels.get(int(k), {})
        fs = sync_frames(frame_t[idx], {n: own.get(n, _NO_SAMPLES) for n in names}, method, max_gap_ns)
        at = rank[idx[fs.order]]
        for n in names:
            values[n][at] = fs.values[n]
        reason[at] = fs.reason
        reordered += fs.reordered
    return FrameSync(order, frame_t[order], values, reason, reordered)


def drop_counts(reason: np.ndarray) -> dict[str, int]:
    """How many frames each non-empty reason dropped, sorted by reason name."""
    names, counts = np.unique(np.asarray(reason, dtype=str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True) if n}
