"""A recording's labels put onto its frames, for playback (no frame is dropped here).

Preparation (:func:`data_prep.plan.make_plan`) synchronizes the same way but also records why
frames are dropped; both use :mod:`vbp_live.core.sync`, so a frame gets the same steering in a
prepared dataset and in an overlay of the recording.
"""

from __future__ import annotations

import numpy as np

from vbp_live.core.sync import clean_samples, sync_channel
from vbp_live.recordings.base import Scan
from vbp_live.recordings.options import SyncConfig


def frame_steering(scan: Scan, sync: SyncConfig) -> np.ndarray:
    """Steering (rad) of every scanned frame, in ordinal order; NaN where it is not known.

    Frames outside the steering samples' time range or inside a gap wider than
    ``sync.max_gap_s`` get NaN rather than a made-up value.
    """
    if scan.presynced is not None:
        return np.asarray(scan.presynced["steering"], np.float64)  # (F,)
    if scan.steering is None:
        return np.full(len(scan.frame_t), np.nan)  # (F,)
    values, _ = sync_channel(scan.frame_t, clean_samples(*scan.steering), sync.method, sync.max_gap_ns())
    return values  # (F,)
