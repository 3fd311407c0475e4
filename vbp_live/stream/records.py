"""Per-frame prediction log: ``index,time_s,pred_deg,true_deg,error_deg`` as CSV (written atomically)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from vbp_live.io.atomic import write_text_atomic
from vbp_live.io.frames import FrameRecord
from vbp_live.stream.engine import Prediction

FIELDS = ("index", "time_s", "pred_deg", "true_deg", "error_deg")


class PredictionLog:
    """Collects one row per output frame; :meth:`close` writes the CSV (error = actual - predicted).

    Args:
        path: the CSV file, or None to keep the rows in memory only (``rows``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else None
        self.rows: list[tuple[int, float, float, float | None, float | None]] = []

    def add(self, rec: FrameRecord, pred: Prediction) -> None:
        """Record one frame's prediction and, where known, its truth and error (degrees)."""
        pred_deg = math.degrees(pred.steering_rad)
        true_deg = None if rec.truth_rad is None else math.degrees(rec.truth_rad)
        err = None if true_deg is None else true_deg - pred_deg
        self.rows.append((rec.index, rec.time_s, pred_deg, true_deg, err))

    def to_csv(self) -> str:
        """The rows as CSV text (empty cells where there is no truth)."""
        buf = io.StringIO()
        buf.write(",".join(FIELDS) + "\n")
        for i, t, p, a, e in self.rows:
            cells = [str(i), f"{t:.6f}", f"{p:.4f}", "" if a is None else f"{a:.4f}", "" if e is None else f"{e:.4f}"]
            buf.write(",".join(cells) + "\n")
        return buf.getvalue()

    def close(self) -> None:
        """Write the CSV (if a path was given)."""
        if self.path is not None:
            write_text_atomic(self.path, self.to_csv())

    def rmse_deg(self) -> float | None:
        """Root mean squared error in degrees over frames with truth (None without truth)."""
        errs = [e for *_, e in self.rows if e is not None]
        return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else None
