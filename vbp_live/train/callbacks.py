"""The trainer's callback set (detectron2-style hooks) and the metrics CSV writer.

A callback may look at the trainer (``trainer.raw_model``, ``trainer.global_step``, ...) but must
not change training: the loop's results are the same with or without any callback.
Callbacks run on rank 0 only (they write files).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vbp_live.io.atomic import write_text_atomic

if TYPE_CHECKING:
    from vbp_live.train.loop import Trainer

log = logging.getLogger(__name__)


class Callback:
    """Base class: override the hook points you need."""

    def before_train(self, trainer: Trainer) -> None:
        """Once, before the first step (also after a resume)."""

    def after_step(self, trainer: Trainer) -> None:
        """After every optimizer step (``trainer.global_step`` already counts it)."""

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After each epoch's validation and checkpoint; ``metrics`` is that epoch's row."""

    def after_train(self, trainer: Trainer) -> None:
        """Once, when the run ends (finished, interrupted or stopped at max_steps)."""


class MetricsCSV(Callback):
    """One row per epoch in ``<run_dir>/metrics.csv`` (rewritten atomically each epoch).

    On resume, rows for epochs after the checkpoint's are dropped, so the file always matches
    the checkpoint.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def before_train(self, trainer: Trainer) -> None:
        """Load rows of a previous (resumed) run up to the checkpoint's epoch."""
        if trainer.epoch > 0 and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= trainer.epoch]
        else:
            self.rows = []

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Append the epoch's row and rewrite the file."""
        self.rows.append(dict(metrics))
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: _fmt(v) for k, v in r.items()})
        write_text_atomic(self.path, buf.getvalue())


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
