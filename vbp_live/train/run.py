"""One training run from a config: data, model, callbacks, resume, the loop (what ``vbp-live train`` calls)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from vbp_live.core.errors import ConfigError, UsageError
from vbp_live.core.signals import exit_code
from vbp_live.io.atomic import write_text_atomic
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.train.callbacks import Callback, MetricsCSV, TensorBoard
from vbp_live.train.config import Config, config_to_dict
from vbp_live.train.data import TrainData, load_data
from vbp_live.train.dist import DistInfo, cleanup_distributed, init_distributed, wait_for_all
from vbp_live.train.loop import Trainer
from vbp_live.train.snapshots import VBPSnapshots, pick_frames

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a run ended: ``status`` (done / interrupted / max_steps), where its checkpoint is, its last metrics.

    ``exit_code`` is the command's: 0, or 130/143 when Ctrl-C/SIGTERM interrupted it.
    """

    status: str
    checkpoint: Path
    run_dir: Path
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    stop_signal: int | None = None

    @property
    def exit_code(self) -> int:
        """0 when it ran to its end (or max_steps), else 128 + the stop signal (130 on Ctrl-C, 143 on SIGTERM)."""
        return exit_code(self.stop_signal) if self.status == "interrupted" else 0


def default_callbacks(cfg: Config, data: TrainData) -> list[Callback]:
    """The metrics CSV, TensorBoard (``train.tensorboard``) and, if snapshot epochs are set, the VBP snapshots."""
    run_dir = Path(cfg.run_dir)
    cbs: list[Callback] = [MetricsCSV(run_dir / "metrics.csv")]
    tb = TensorBoard.from_setting(run_dir / "tensorboard", cfg.train.tensorboard)
    if tb is not None:
        cbs.append(tb)
    outside = [i for i in cfg.snapshot.indices if i >= len(data.frames)]
    if outside:
        where = data.info.get("path") or cfg.data.path or cfg.data.kind
        raise ConfigError(f"snapshot.indices: rows {outside} are outside the {len(data.frames)} rows of {where}")
    rows = pick_frames(data.val_idx, cfg.snapshot.frames, cfg.snapshot.indices)
    if cfg.snapshot.epochs and len(rows):
        cbs.append(VBPSnapshots(run_dir / "snapshots", rows, cfg.snapshot.epochs, tb, cfg.snapshot.video))
    return cbs


def prepare_run_dir(cfg: Config, resume: bool, dist_info: DistInfo) -> None:
    """Refuse to overwrite a previous run unless resuming; write the resolved config (rank 0)."""
    run_dir = Path(cfg.run_dir)
    last = run_dir / "last.pt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"{last}: nothing to resume (no checkpoint in {run_dir})")
    if not resume and last.is_file():
        raise UsageError(f"{run_dir}: already holds a run (last.pt); use --resume, or set run_dir to a new directory")
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def train(cfg: Config, resume: bool = False, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train per ``cfg`` (under torchrun: this process's rank); resume from ``<run_dir>/last.pt`` if asked."""
    dist_info = init_distributed(cfg.train.device)
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        prepare_run_dir(cfg, resume, dist_info)
        data = load_data(cfg.data)
        cbs = default_callbacks(cfg, data) if callbacks is None else callbacks
        trainer = Trainer(cfg, data, dist_info, cbs)
        if resume:
            trainer.restore(load_checkpoint(trainer.checkpoint_path))
        elif cfg.train.init_from:
            trainer.init_weights(load_checkpoint(cfg.train.init_from))
        status = trainer.fit()
        wait_for_all()
        return TrainResult(status, trainer.checkpoint_path, Path(cfg.run_dir), trainer.global_step,
                           trainer.last_metrics, trainer.stop_signal)
    finally:
        cleanup_distributed()
