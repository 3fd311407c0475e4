"""The trainer's callback set (detectron2-style hooks), the metrics CSV writer and TensorBoard.

A callback may look at the trainer (``trainer.raw_model``, ``trainer.global_step``, ...) but must
not change training: the loop's results are the same with or without any callback.
Callbacks run on rank 0 only (they write files).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vbp_live.core.errors import ConfigError
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


def tensorboard_installed() -> bool:
    """The ``tensorboard`` package can be imported (``pip install vbp-live[tensorboard]``)."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoard(Callback):
    """TensorBoard event files in ``log_dir``: each epoch's metrics as scalars, and images (snapshots).

    The writer opens on first use, so a process that never writes (a DDP rank other than 0)
    leaves no event file. Steps are optimizer steps (``trainer.global_step``) for scalars and images alike.

    Args:
        log_dir: the event file folder (``tensorboard --logdir`` it).
    """

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    @classmethod
    def from_setting(cls, log_dir: str | Path, setting: bool | str) -> TensorBoard | None:
        """``"auto"``: one when tensorboard is installed; True: one (an error without tensorboard); False: None.

        Raises:
            ConfigError: True but tensorboard is not installed.
        """
        if setting is False or (setting == "auto" and not tensorboard_installed()):
            return None
        if setting is not True and setting != "auto":
            raise ConfigError(f"tensorboard must be auto, true or false; got {setting!r}")
        if not tensorboard_installed():
            raise ConfigError("train.tensorboard=true, but the tensorboard package is not installed "
                              "(pip install 'vbp-live[tensorboard]', or set train.tensorboard=false)")
        return cls(log_dir)

    @property
    def writer(self) -> Any:
        """The ``torch.utils.tensorboard.SummaryWriter`` (opened now if needed)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when it is used

            self._writer = SummaryWriter(str(self.log_dir))
        return self._writer

    def add_image(self, tag: str, image_bgr: np.ndarray, step: int) -> None:
        """One BGR (or gray) uint8 image at ``step``."""
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        self.writer.add_image(tag, np.ascontiguousarray(img[..., ::-1]), step, dataformats="HWC")  # (H, W, 3) RGB

    def add_scalars(self, values: dict[str, Any], step: int) -> None:
        """Every finite number in ``values`` as its own scalar at ``step``."""
        for key, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(key, v, step)

    def flush(self) -> None:
        """Write what is buffered (when a writer is open)."""
        if self._writer is not None:
            self._writer.flush()

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """The epoch's metrics row as scalars."""
        self.add_scalars({k: v for k, v in metrics.items() if k != "epoch"}, trainer.global_step)
        self.flush()

    def after_train(self, trainer: Trainer) -> None:
        """Close the event file."""
        self.close()

    def close(self) -> None:
        """Flush and close the writer (a later write opens a new event file)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
