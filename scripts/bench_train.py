#!/usr/bin/env python
"""How far is a training step above its floor? Prints both, paired, in one run, and their ratio.

    python scripts/bench_train.py                          # NetSVF, batch 16, a temporary random dataset
    python scripts/bench_train.py --model nethvf --batch 32 --rounds 5
    python scripts/bench_train.py --augment --set data.prefetch=0   # loader augmentation, no prefetch thread
    python scripts/bench_train.py --compare                # the floor under each precision / memory format
    python scripts/bench_train.py --rmse-check 300         # validation RMSE, channels-last off vs on

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
contiguous / channels-last), each on its own model built from the same seed. ``--precision bf16``
runs the bench (both a and b) under CPU bf16 autocast, which is not a training option: it measured
slower on this CPU (no native bf16). ``--rmse-check N`` trains N steps twice from the same seed
on a small learnable synthetic dataset, once contiguous and once channels-last, and prints both
validation RMSEs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vbp_live.core.preprocess import CROP_PRESETS, CropSpec
from vbp_live.io.dataset import DatasetWriter
from vbp_live.train.callbacks import Callback, MetricsCSV
from vbp_live.train.config import Config, load_config
from vbp_live.train.data import BatchLoader, TrainData, load_data
from vbp_live.train.loop import Trainer
from vbp_live.train.run import train
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
    cl = [] if args.channels_last == "config" else [f"train.channels_last={args.channels_last == 'on'}".lower()]
    cl += ["augment.enabled=true"] if args.augment else []
    return load_config(None, [f"data.path={path}", f"model.name={args.model}", f"train.batch_size={args.batch}",
                              "train.progress=false", "train.tensorboard=false", f"train.threads={args.threads}",
                              f"train.max_steps={total}", f"run_dir={run_dir}", *cl, *args.set])


def callbacks(cfg: Config, data: TrainData, floor_cb: Alternate) -> list[Callback]:
    """The run's callbacks: the CSV writer, a snapshot hook scheduled past the end (checked, never due)."""
    rows = pick_frames(data.val_idx, cfg.snapshot.frames, cfg.snapshot.indices)
    late = [float(cfg.train.epochs)]
    return [MetricsCSV(Path(cfg.run_dir) / "metrics.csv"), VBPSnapshots(Path(cfg.run_dir) / "snapshots", rows, late),
            floor_cb]


def measure(cfg: Config, data: TrainData, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(floor step seconds, training step seconds) from one alternating run."""
    trainer = Trainer(cfg, data)
    if args.precision == "bf16":  # bench only: what CPU bf16 autocast would cost end to end
        trainer.amp, trainer.amp_dtype = True, torch.bfloat16
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
    models = {}
    for name in args.compare.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"--compare: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        cl = VARIANTS[name][1]
        torch.manual_seed(cfg.train.seed)
        fmt = torch.channels_last if cl else torch.contiguous_format
        models[name] = Trainer(cfg, data).raw_model.to(memory_format=fmt)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds + 1):
        for name, model in models.items():
            precision, cl = VARIANTS[name]
            xi = x.contiguous(memory_format=torch.channels_last) if cl else x  # (B, C, H, W)
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(xi)  # (B, 1)
            ((out.float().reshape(-1) - y) ** 2).sum().backward()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    return times


def make_learnable(path: Path, n: int, height: int = 125, width: int = 160) -> Path:
    """n noisy frames with a bright slanted line whose slant is the steering angle (learnable, seed 0)."""
    crop = CropSpec(0.0, 1.0, height, width)
    w = DatasetWriter(path, (height, width), crop)
    rng = np.random.default_rng(0)
    rows = np.arange(height)[:, None]  # (H, 1)
    for i in range(n):
        steer = float(rng.uniform(-0.3, 0.3))
        centre = width / 2 + rng.normal(0, 4) + steer * 150 * (1 - rows / height)  # (H, 1) line column per row
        img = rng.normal(80, 20, (height, width)) + 120 * (np.abs(np.arange(width)[None] - centre) < 2)
        w.append(np.clip(img, 0, 255).astype(np.uint8), i * 50_000_000, steer, 10.0, "rmse-check")
    return w.finalize(["train"] * (n - n // 5) + ["test"] * (n // 5))


def rmse_check(steps: int, tmp: str, model: str) -> None:
    """Validation RMSE after ``steps`` steps, same seed, contiguous vs channels-last."""
    path = make_learnable(Path(tmp) / "learnable", 1000)
    data = load_data(load_config(None, [f"data.path={path}"]).data)
    zero = np.degrees(np.sqrt(np.mean(np.square(data.targets[data.val_idx]))))
    per_epoch = len(data.train_idx) // 16  # batch 16: whole epochs, each ending with its validation
    print(f"predicting 0: val RMSE {zero:.3f} deg")
    for cl in (False, True):
        cfg = load_config(None, [f"data.path={path}", f"model.name={model}", "train.batch_size=16",
                                 "train.progress=false", "train.tensorboard=false", "snapshot.epochs=[]",
                                 "optim.lr=0.005", f"train.epochs={max(1, round(steps / per_epoch))}",
                                 f"train.channels_last={str(cl).lower()}", f"run_dir={tmp}/rmse_{cl}"])
        t0 = time.perf_counter()
        res = train(cfg, callbacks=[])
        m = res.metrics
        print(f"channels_last={cl!s:5}: val RMSE {m.get('val_rmse_deg', float('nan')):.3f} deg after "
              f"{res.global_step} steps ({res.metrics.get('epoch')} epochs), {time.perf_counter() - t0:.0f} s")


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
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: CPU autocast (bench only)")
    p.add_argument("--channels-last", default="config", choices=["config", "on", "off"],
                   help="train.channels_last (config: the config's value, on by default)")
    p.add_argument("--rmse-check", type=int, default=0, metavar="STEPS",
                   help="train about STEPS steps (whole epochs of 50) contiguous and channels-last from one seed; "
                        "print validation RMSE")
    p.add_argument("--augment", action="store_true", help="augment.enabled=true (loader augmentation)")
    p.add_argument("--compare", nargs="?", const=",".join(VARIANTS), metavar="VARIANTS",
                   help=f"time the floor of these variants (default: {','.join(VARIANTS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any training config override, e.g. data.prefetch=0 (repeatable)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.rmse_check:
            rmse_check(args.rmse_check, tmp, args.model)
            return
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
              f"prefetch {cfg.data.prefetch}, {args.precision}, channels_last {cfg.train.channels_last}, "
              f"augment {cfg.augment.enabled}, "
              + (f"{args.rounds} rounds x one step per variant" if args.compare
                 else f"{args.rounds} rounds x {args.steps} steps"))
        if args.compare:
            times = compare(data, cfg, args)
            base = next(iter(times.values()))
            for name, t in times.items():
                med = statistics.median(t)
                paired = statistics.median(b / a for a, b in zip(base, t, strict=True))
                print(f"floor {name:8s}: {args.batch / med:8.2f} frames/s  ({med:.3f} s/step; per-round time ratio "
                      f"to the first, median {paired:.3f}; rounds {' '.join(f'{v:.2f}' for v in t)})")
            return
        report(*measure(cfg, data, args), args.batch)


if __name__ == "__main__":
    main()
