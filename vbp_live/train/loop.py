"""The training loop: explicit, readable, resumable (nanoGPT-style, no framework).

One :class:`Trainer` owns the model, optimizer, schedule and position (epoch, step). ``fit()``:

    before_train callbacks
    for each epoch:                                      # batch order = f(seed, epoch)
        for each (remaining) global batch:               # this rank's strided slice
            forward (autocast on CUDA), summed loss, one all-reduce of [loss, non-finite, stop]
            backward (GradScaler on CUDA), SGD step      # DDP averages gradients
            after_step callbacks                         # e.g. the VisualBackProp snapshot
            stop here on Ctrl-C/SIGTERM or max_steps     # resumable checkpoint, exit cleanly
        validate, checkpoint (atomic), after_epoch callbacks (metrics CSV)
    after_train callbacks

The loss on a rank is ``sum(local losses) * world / global_batch``, so the averaged DDP gradient
equals the single-process gradient of the mean loss over the global batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import ConfigError, VbpLiveError
from vbp_live.core.signals import Interrupted, StopRequest, stop_on_signals
from vbp_live.io.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from vbp_live.models import args_problem, create_model, list_models, model_arg_types
from vbp_live.train.augment import make_augmenter
from vbp_live.train.callbacks import Callback
from vbp_live.train.config import Config, config_diff, config_from_dict, config_to_dict
from vbp_live.train.data import BatchLoader, TrainData, epoch_batches, pair_batches, shard
from vbp_live.train.dist import DistInfo, all_sum, convert_batchnorm, pick_device
from vbp_live.train.metrics import evaluate_sums, finish, loss_sum, pair_loss_sum
from vbp_live.train.schedule import lr_at

log = logging.getLogger(__name__)

# Settings that may differ when resuming: they do not change the result.
RESUMABLE_CHANGES = {"run_dir", "train.max_steps", "train.progress", "train.device", "train.amp",
                     "train.threads", "train.channels_last", "data.prefetch", "data.path", "train.tensorboard",
                     "snapshot.video"}


class NonFiniteLossError(VbpLiveError, RuntimeError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint was kept.

    A user-facing error: the usual cause is the config (a learning rate too high, bad labels).
    """


def build_model(cfg: Config, data: TrainData) -> nn.Module:
    """Create the configured network for the data's input size; clear error on a mismatch."""
    c, h, w = data.input_shape
    args = dict(cfg.model.args)
    if cfg.model.name not in list_models(generic=True):
        raise ConfigError(f"model.name {cfg.model.name!r} is not a registered model "
                          f"(registered: {', '.join(list_models())})")
    problem = args_problem(cfg.model.name, args)
    if problem:
        raise ConfigError(f"model.{problem}")
    for key, val in (("height", h), ("width", w)):
        if args.setdefault(key, val) != val:
            raise ConfigError(f"model.args.{key}={args[key]} but the dataset's frames are {h}x{w} (H x W)")
    if c != 1:
        args.setdefault("channels", c)
    if cfg.train.loss == "nll" and cfg.data.kind == "synthetic_signs":
        if "num_classes" not in model_arg_types(cfg.model.name):
            raise ConfigError(f"model.name {cfg.model.name!r} has no class output for data.kind synthetic_signs "
                              f"(models with one: {', '.join(_classifiers())})")
        args.setdefault("num_classes", cfg.data.num_classes)
    try:
        return create_model(cfg.model.name, **args)
    except RuntimeError as e:  # the net's size probe: frames too small for its convolutions
        raise ConfigError(f"{cfg.data.path or cfg.data.kind}: its {h}x{w} (H x W) frames are too small for "
                          f"{cfg.model.name} ({e}); prepare the data with a larger crop.out_height/out_width") from e


def _classifiers() -> list[str]:
    return [n for n in list_models() if "num_classes" in model_arg_types(n)]


def _check_task(cfg: Config, data: TrainData) -> None:
    is_class = data.targets.dtype.kind in "iu"
    if cfg.train.loss == "nll" and not is_class:
        raise ConfigError(f"train.loss=nll needs class labels, but {cfg.data.path or cfg.data.kind} "
                          "has steering values")
    if cfg.train.loss == "mse" and is_class:
        raise ConfigError(f"train.loss=mse needs steering values, but {cfg.data.kind} has class labels: "
                          "use train.loss=nll")


class Trainer:
    """Train ``cfg.model`` on ``data``; ``fit()`` returns ``done``, ``interrupted`` or ``max_steps``.

    Args:
        cfg: the resolved config.
        data: frames, targets and splits.
        dist_info: rank/world/device (default: one process on ``cfg.train.device``).
        callbacks: hooks run on rank 0.
    """

    def __init__(self, cfg: Config, data: TrainData, dist_info: DistInfo | None = None,
                 callbacks: Sequence[Callback] = ()):
        _check_task(cfg, data)
        self.cfg, self.data = cfg, data
        self.dist = dist_info or DistInfo(0, 1, 0, pick_device(cfg.train.device))
        self.device = self.dist.device
        self.pairs = cfg.train.pair_weight > 0
        if self.pairs:
            self._check_pairs()
        self.run_dir = Path(cfg.run_dir)
        self.callbacks = list(callbacks) if self.dist.is_main else []
        self.amp_dtype = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.amp)
        self.amp = self.device.type == "cuda" and self.amp_dtype is not None
        torch.manual_seed(cfg.train.seed)
        self.raw_model = build_model(cfg, data)
        if self.dist.world > 1:
            convert_batchnorm(self.raw_model, self.device)
        self.raw_model.to(self.device).train()
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.raw_model.to(memory_format=self.memory_format)
        self.model = self._wrap(self.raw_model)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.raw_model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.augment = make_augmenter(cfg.augment, data.crop, data.input_shape[1:], cfg.train.seed,
                                      regression=cfg.train.loss == "mse", pairs=self.pairs)  # None when off
        self.steps_per_epoch = len(self.plan(0))
        if self.steps_per_epoch == 0:
            raise ConfigError(f"{len(data.train_idx)} training frames make no batch of {cfg.train.batch_size}")
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.stop_requested = False  # all ranks agreed to stop at this step boundary
        self._signals = StopRequest()  # this process got SIGINT/SIGTERM (set by the handler only)
        self.last_metrics: dict[str, float] = {}
        self._bar_val: dict[str, str] = {}  # last validation figure, shown on the progress bar
        self._saved_at = ""  # position of the checkpoint on disk
        self.lr = lr_at(cfg.optim, 0, self.steps_per_epoch, self.total_steps)
        self.epoch_sums = [0.0, 0, 0.0]  # loss * frames, frames, seconds of this epoch so far

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # BatchNorm statistics are already global (dist.convert_batchnorm): no buffer broadcast per forward.
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    @property
    def stop_signal(self) -> int | None:
        """The signal (SIGINT/SIGTERM) this process got during :meth:`fit`, None if none."""
        return self._signals.signum

    @property
    def checkpoint_path(self) -> Path:
        """``<run_dir>/last.pt``: written every epoch, on interruption and at the end."""
        return self.run_dir / "last.pt"

    def _check_pairs(self) -> None:
        """Temporal pairs need successors in the data and pairs that a rank's slice keeps together."""
        half, world = self.cfg.train.batch_size // 2, self.dist.world
        if self.data.next_row is None:
            raise ConfigError(f"train.pair_weight: {self.cfg.data.kind} data has no time order to pair frames by")
        if half % world:
            raise ConfigError(f"train.pair_weight: train.batch_size / 2 = {half} must be a multiple of the "
                              f"{world} processes (each keeps its pairs together)")
        n = int((self.data.next_row[self.data.train_idx] >= 0).sum())
        log.info("temporal pairs (weight %g): %d of %d training rows have a next frame",
                 self.cfg.train.pair_weight, n, len(self.data.train_idx))

    def plan(self, epoch: int) -> list:
        """The global batches (dataset rows) of ``epoch``."""
        t = self.cfg.train
        if self.pairs:
            return pair_batches(self.data.train_idx, self.data.next_row, t.batch_size, t.seed, epoch,
                                self.dist.world)
        return epoch_batches(self.data.train_idx, t.batch_size, t.seed, epoch, t.drop_last, self.dist.world)

    # ----------------------------------------------------------------------------- the loop
    def fit(self) -> str:
        """Run (or continue) training to the end, an interruption or ``train.max_steps``."""
        self._call("before_train")
        status = "done"
        with self._stop_on_signals(), self._progress() as bar:
            while self.epoch < self.cfg.train.epochs and status == "done":
                status = self.train_epoch(bar)
                if status == "done":
                    self.end_epoch(bar)
            if status != "done":
                self.save()
        self._call("after_train")
        return status

    def train_epoch(self, bar: Any) -> str:
        """Steps of the current epoch from ``step_in_epoch`` on; returns ``done`` or why it stopped."""
        batches = self.plan(self.epoch)[self.step_in_epoch:]
        augment = None if self.augment is None else self.augment.for_epoch(
            self.epoch, [len(b) for b in batches], self.step_in_epoch, self.dist.rank, self.dist.world)
        loader = BatchLoader(self.data.frames, self.data.targets,
                             [shard(b, self.dist.rank, self.dist.world) for b in batches],
                             prefetch=self.cfg.data.prefetch, pin=self.device.type == "cuda", crop=self.data.crop,
                             augment=augment)
        t0 = time.perf_counter()
        for (x, y), rows in zip(loader, batches, strict=True):
            loss = self.train_step(x, y, len(rows))
            self.step_in_epoch += 1
            self.global_step += 1
            self.epoch_sums[0] += loss * len(rows)
            self.epoch_sums[1] += len(rows)
            self.epoch_sums[2] += time.perf_counter() - t0  # loading + step, not the callbacks
            bar.update(1)
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss:.4g}", lr=f"{self.lr:.3g}", **self._bar_val,
                            refresh=False)
            self._call("after_step")
            if self.stop_requested:
                log.warning("stop requested: saving %s at epoch %d step %d", self.checkpoint_path, self.epoch,
                            self.step_in_epoch)
                return "interrupted"
            if self.cfg.train.max_steps and self.global_step >= self.cfg.train.max_steps:
                return "max_steps"
            t0 = time.perf_counter()
        return "done"

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed loss of a local batch already on the device: the forward pass as training runs it."""
        if x.ndim == 4:
            x = x.contiguous(memory_format=self.memory_format)  # (b, C, H, W)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp):
            out = self.model(x)  # (b, 1) or (b, classes)
        total = loss_sum(out, y, self.cfg.train.loss)  # () float32
        if self.pairs:  # b = 2 h: the mean over frames plus the weight times the mean over pairs
            total = total + 2.0 * self.cfg.train.pair_weight * pair_loss_sum(out, y)
        return total

    def train_step(self, x: torch.Tensor, y: torch.Tensor, global_n: int) -> float:
        """One SGD step on this rank's slice of a global batch of ``global_n`` frames; returns its mean loss."""
        x = x.to(self.device, non_blocking=True)  # (b, C, H, W)
        y = y.to(self.device, non_blocking=True)  # (b,)
        self.lr = lr_at(self.cfg.optim, self.global_step, self.steps_per_epoch, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        total = self.forward_loss(x, y)
        value = total.item()  # the step's one device sync
        flags = torch.tensor([value, float(not math.isfinite(value)), float(self._signals.event.is_set())],
                             dtype=torch.float64)  # (3,) loss, non-finite, stop; on the CPU
        all_sum(flags)  # reduced on the process group's device, back into this CPU tensor
        if flags[1] > 0:
            raise NonFiniteLossError(self._nonfinite_message(float(flags[0])))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total * (self.dist.world / global_n)).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        signaled = self._signals.event.is_set() or bool(flags[2] > 0)  # any rank signaled
        self.stop_requested = self.stop_requested or signaled
        return float(flags[0]) / global_n

    def _position(self) -> str:
        return f"epoch {self.epoch}" + (f", step {self.step_in_epoch}" if self.step_in_epoch else "")

    def _kept(self) -> str:
        if not self.checkpoint_path.is_file():
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {self.checkpoint_path} ({self._saved_at}) is kept"

    def _nonfinite_message(self, value: float) -> str:
        return (f"loss is {value} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1} "
                f"(lr {self.lr:.3g}); training stopped and {self._kept()}. Try a lower optim.lr or optim.grad_clip.")

    def end_epoch(self, bar: Any) -> None:
        """Validate, checkpoint, run after_epoch callbacks."""
        metrics = self.validate()
        self.epoch += 1
        self.step_in_epoch = 0
        loss, frames, seconds = self.epoch_sums
        self.epoch_sums = [0.0, 0, 0.0]
        self.last_metrics = {"epoch": self.epoch, "step": self.global_step, "lr": self.lr,
                             "train_loss": loss / max(frames, 1), **metrics,
                             "train_frames_per_s": frames / max(seconds, 1e-9)}
        self.save()
        key = "val_rmse_deg" if self.cfg.train.loss == "mse" else "val_accuracy"
        self._bar_val = {key: f"{metrics[key]:.4g}"}
        log.info("epoch %d/%d: %s", self.epoch, self.cfg.train.epochs, ", ".join(
            f"{k} {v:.4g}" for k, v in self.last_metrics.items() if k.startswith(("train_", "val_"))))
        for cb in self.callbacks:
            cb.after_epoch(self, self.last_metrics)

    def validate(self) -> dict[str, float]:
        """Metrics on the validation split (sharded over ranks, sums all-reduced), eval mode."""
        t0 = time.perf_counter()
        self.raw_model.eval()
        try:
            idx = self.data.val_idx[self.dist.rank::self.dist.world]
            sums = evaluate_sums(self.raw_model, self.data.frames, self.data.targets, idx, self.cfg.train.loss,
                                 self.cfg.train.batch_size, self.device, self.amp, self.amp_dtype, self.data.crop)
        finally:
            self.raw_model.train()
        metrics = finish(all_sum(sums), self.cfg.train.loss)  # sums: (k,) float64 on the CPU
        metrics["val_frames_per_s"] = len(self.data.val_idx) / max(time.perf_counter() - t0, 1e-9)
        return metrics

    # ------------------------------------------------------------------------ checkpoints
    def train_state(self) -> dict[str, Any]:
        """Everything ``--resume`` needs besides the weights."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "steps_per_epoch": self.steps_per_epoch, "world": self.dist.world, "epoch_sums": list(self.epoch_sums),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng}

    def save(self) -> None:
        """Write ``last.pt`` atomically (rank 0); never over a good checkpoint with non-finite weights."""
        state = self.raw_model.state_dict()  # parameters and buffers (BatchNorm's running statistics)
        bad = [n for n, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise NonFiniteLossError(f"weights became non-finite ({', '.join(bad[:3])}, ...) by epoch {self.epoch}, "
                                     f"step {self.step_in_epoch}; training stopped and {self._kept()}")
        if self.dist.is_main:
            meta = {"metrics": self.last_metrics, "data": self.data.info, "torch": str(torch.__version__)}
            self._saved_at = self._position()
            save_checkpoint(self.checkpoint_path, self.raw_model, self.data.crop, config_to_dict(self.cfg),
                            self.train_state(), meta)

    def _check_fits(self, ckpt: Checkpoint) -> None:
        """Refuse a checkpoint of another model, input size or crop, naming both (the crop's reference
        horizon aside: it says which camera the band was chosen for, not what the network sees)."""
        ckpt.check_model(self.raw_model.model_name, self.raw_model.model_args)
        if not ckpt.crop.same_band(self.data.crop):
            raise CheckpointError(f"{ckpt.path}: trained with crop {ckpt.crop}, but the dataset has {self.data.crop}")

    def _load_weights(self, ckpt: Checkpoint) -> None:
        """``ckpt``'s weights into the model, as float32 (an exported checkpoint holds fp16)."""
        self.raw_model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                        for k, v in ckpt.state_dict.items()})

    def init_weights(self, ckpt: Checkpoint) -> None:
        """Start from ``ckpt``'s weights (same model and crop); the optimizer and schedule start fresh."""
        self._check_fits(ckpt)
        self._load_weights(ckpt)
        log.info("initialized the weights from %s", ckpt.path)

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint written by :meth:`save` (same model, crop and settings)."""
        self._check_fits(ckpt)
        if ckpt.train_state is None:
            raise CheckpointError(f"{ckpt.path}: has no train_state (a shipped or exported model?); cannot resume")
        saved = config_to_dict(config_from_dict(ckpt.config, str(ckpt.path)))  # keys added since: their defaults
        changed = [k for k in config_diff(saved, config_to_dict(self.cfg)) if k not in RESUMABLE_CHANGES]
        if changed:
            raise CheckpointError(f"{ckpt.path}: cannot resume with changed settings: {', '.join(changed)}")
        st = ckpt.train_state
        if st["steps_per_epoch"] != self.steps_per_epoch:
            raise CheckpointError(f"{ckpt.path}: {st['steps_per_epoch']} steps per epoch, now {self.steps_per_epoch}")
        self._load_weights(ckpt)
        self.optimizer.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        self.epoch_sums = list(st["epoch_sums"])
        self._saved_at = self._position()
        self.lr = lr_at(self.cfg.optim, self.global_step, self.steps_per_epoch, self.total_steps)
        torch.set_rng_state(st["rng"]["torch"])
        if "cuda" in st["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])
        self.last_metrics = dict(ckpt.meta.get("metrics") or {})
        log.info("resuming %s at epoch %d, step %d", ckpt.path, self.epoch, self.step_in_epoch)

    # ---------------------------------------------------------------------------- helpers
    def _call(self, hook: str) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self)

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Any]:
        from tqdm import tqdm

        disable = not (self.cfg.train.progress and self.dist.is_main)
        with tqdm(total=self.total_steps, initial=self.global_step, unit="step", disable=disable,
                  dynamic_ncols=True, desc=self.cfg.model.name) as bar:
            yield bar

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM set a flag; the loop saves at the next step boundary. A 2nd Ctrl-C aborts."""

        def again(req: StopRequest, signum: int) -> None:
            if signum == signal.SIGINT:
                raise Interrupted(signum)

        with stop_on_signals(self._signals.event, "stopping after this step (Ctrl-C again to abort)", again) as req:
            self._signals = req
            yield
