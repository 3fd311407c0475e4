#!/usr/bin/env python
"""How far is a training step above its floor? Prints both, paired, in one run, and their ratio.

    python scripts/bench_train.py                          # NetSVF, batch 16, a temporary random dataset
    python scripts/bench_train.py --model nethvf --batch 32 --rounds 5
    python scripts/bench_train.py --dataset data/netsvf --set data.prefetch=0
    python scripts/bench_train.py --compare                # the floor under each precision / memory format

(a) floor: forward + backward of one fixed batch, already converted and on the device, timed alone
    (no loader, no optimizer, no bookkeeping).
(b) training: the full step as ``Trainer.fit`` runs it: the prefetching loader (and augmentation
    when the config enables it), forward, backward, the SGD step, the running metrics, the
    progress-bar update and the callbacks (metrics CSV, a VBP snapshot hook that is not due).
(c) overhead = b_time / a_time - 1 (target <= 15 %).

Noise: the two are measured in alternating rounds (``--steps`` floor steps, then ``--steps``
training steps, ``--rounds`` times) inside one training run: a callback pauses the loop after
every ``--steps`` steps to time the floor, and that time is left out of (b). Medians are printed.
``--compare`` times only the floor, alternating one step of each variant (fp32 / bf16 autocast,
contiguous / channels-last), each on its own model built from the same seed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.dataset import DatasetWriter
from vbp_live.train.callbacks import Callback, MetricsCSV
from vbp_live.train.config import Config, load_config
from vbp_live.train.data import BatchLoader, TrainData, load_data
from vbp_live.train.loop import Trainer
from vbp_live.train.snapshots import VBPSnapshots, pick_frames

TARGET = 0.15


def make_dataset(path: Path, n: int, model: str) -> Path:
    """n random-texture frames with the model's crop size (enough to defeat caching of one batch)."""
    crop = CROP_PRESETS[model]
    w = DatasetWriter(path, (crop.out_height, crop.out_width), crop)
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = rng.integers(0, 256, (crop.out_height, crop.out_width), dtype=np.uint8)
        w.append(frame, i * 50_000_000, float(rng.normal(0, 0.1)), 10.0, "bench")
    return w.finalize(["train"] * (n - n // 10) + ["test"] * (n // 10))


class FloorTimer:
    """Forward + backward of one fixed batch on ``trainer``'s model (gradients dropped, no optimizer)."""

    def __init__(self, trainer: Trainer, data: TrainData, batch: int):
        rows = np.sort(data.train_idx[:batch])
        loader = BatchLoader(data.frames, data.targets, [rows], prefetch=0, crop=data.crop)
        x, y = loader.load(rows)
        self.trainer = trainer
        self.x, self.y = x.to(trainer.device), y.to(trainer.device)  # (B, C, H, W), (B,)
        self.times: list[float] = []

    def step(self) -> float:
        """Seconds of one forward + backward."""
        self.trainer.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        self.trainer.forward_loss(self.x, self.y).backward()
        dt = time.perf_counter() - t0
        self.trainer.optimizer.zero_grad(set_to_none=True)
        self.times.append(dt)
        return dt


class Alternate(Callback):
    """After every ``steps`` training steps: time ``steps`` floor steps (left out of the step times).

    The first ``warmup`` steps (loader start, first allocations) are not recorded.
    """

    def __init__(self, floor: FloorTimer, steps: int, warmup: int):
        self.floor, self.steps, self.warmup = floor, steps, warmup
        self.step_times: list[float] = []
        self._mark = 0.0

    def before_train(self, trainer: Trainer) -> None:
        self._mark = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        now = time.perf_counter()
        if trainer.global_step > self.warmup:
            self.step_times.append(now - self._mark)
        due = trainer.global_step >= self.warmup and (trainer.global_step - self.warmup) % self.steps == 0
        if due and trainer.global_step < trainer.cfg.train.max_steps:  # a block of floor steps before each block
            for _ in range(self.steps):
                self.floor.step()
        self._mark = time.perf_counter()


def bench_config(path: Path, args: argparse.Namespace, run_dir: str) -> Config:
    """The training config of the run: defaults, the bench's settings, then ``--set`` overrides."""
    total = args.warmup + args.rounds * args.steps
    return load_config(None, [f"data.path={path}", f"model.name={args.model}", f"train.batch_size={args.batch}",
                              "train.progress=false", "train.tensorboard=false", f"train.threads={args.threads}",
                              f"train.max_steps={total}", f"run_dir={run_dir}", *args.set])


def callbacks(cfg: Config, data: TrainData, floor_cb: Alternate) -> list[Callback]:
    """The run's callbacks: the CSV writer, a snapshot hook scheduled past the end (checked, never due)."""
    rows = pick_frames(data.val_idx, cfg.snapshot.frames, cfg.snapshot.indices)
    late = [float(cfg.train.epochs)]
    return [MetricsCSV(Path(cfg.run_dir) / "metrics.csv"), VBPSnapshots(Path(cfg.run_dir) / "snapshots", rows, late),
            floor_cb]


def measure(cfg: Config, data: TrainData, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(floor step seconds, training step seconds) from one alternating run."""
    trainer = Trainer(cfg, data)
    floor = FloorTimer(trainer, data, args.batch)
    floor.step()  # warm the floor path too
    floor.times.clear()
    alt = Alternate(floor, args.steps, args.warmup)
    trainer.callbacks = callbacks(cfg, data, alt)
    trainer.fit()
    return floor.times, alt.step_times


VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp32+cl": ("fp32", True), "bf16+cl": ("bf16", True)}


def compare(data: TrainData, cfg: Config, args: argparse.Namespace) -> dict[str, list[float]]:
    """Floor seconds per variant, one step of each in turn per round (same seed, same batch)."""
    x, y = BatchLoader(data.frames, data.targets, [], crop=data.crop).load(np.sort(data.train_idx[:args.batch]))
    torch.manual_seed(cfg.train.seed)
    models = {}
    for name in VARIANTS:
        torch.manual_seed(cfg.train.seed)
        models[name] = Trainer(cfg, data).raw_model
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(args.rounds + 1):
        for name, (precision, cl) in VARIANTS.items():
            model = models[name]
            xi = x.contiguous(memory_format=torch.channels_last) if cl else x  # (B, C, H, W)
            if cl:
                model.to(memory_format=torch.channels_last)
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(xi)  # (B, 1)
            ((out.float().reshape(-1) - y) ** 2).sum().backward()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    return times


def report(floor: list[float], full: list[float], batch: int) -> None:
    """Medians, frames/s and the overhead ratio."""
    a, b = statistics.median(floor), statistics.median(full)
    ratio = b / a - 1
    print(f"(a) floor: forward + backward alone  : {batch / a:8.2f} frames/s  ({a:.3f} s/step, {len(floor)} steps)")
    print(f"(b) training step as Trainer runs it : {batch / b:8.2f} frames/s  ({b:.3f} s/step, {len(full)} steps)")
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(f"(c) overhead b/a - 1                 : {ratio * 100:+7.1f} %  ({verdict} the target <= {TARGET:.0%})")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="a prepared dataset (default: a temporary one with random frames)")
    p.add_argument("--model", default="netsvf", choices=["netsvf", "nethvf"])
    p.add_argument("--frames", type=int, default=0, help="frames of the temporary dataset (default: enough)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    p.add_argument("--steps", type=int, default=3, help="floor steps and training steps per round")
    p.add_argument("--warmup", type=int, default=2, help="training steps not timed")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--interop-threads", type=int, default=0, help="torch inter-op threads (0 = default)")
    p.add_argument("--compare", action="store_true", help="time the floor of fp32/bf16 x contiguous/channels-last")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any training config override, e.g. data.prefetch=0 (repeatable)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)
    with tempfile.TemporaryDirectory() as tmp:
        need = int((args.warmup + args.rounds * args.steps + 2) * args.batch * 1.25)
        path = Path(args.dataset) if args.dataset else make_dataset(Path(tmp) / "ds", max(args.frames, need),
                                                                     args.model)
        cfg = bench_config(path, args, f"{tmp}/run")
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        data = load_data(cfg.data)
        h, w = data.frames.shape[1:3]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
              f"({torch.get_num_interop_threads()} inter-op), {args.model} {w}x{h}, batch {args.batch}, "
              f"prefetch {cfg.data.prefetch}, {args.rounds} rounds x {args.steps} steps")
        if args.compare:
            for name, t in compare(data, cfg, args).items():
                med = statistics.median(t)
                print(f"floor {name:8s}: {args.batch / med:8.2f} frames/s  ({med:.3f} s/step)")
            return
        report(*measure(cfg, data, args), args.batch)


if __name__ == "__main__":
    main()
