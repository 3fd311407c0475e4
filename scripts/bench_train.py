#!/usr/bin/env python
"""Does loading from the memory-mapped dataset keep up with training? Prints both rates in one run.

    python scripts/bench_train.py                         # a temporary 640x125 dataset, NetSVF
    python scripts/bench_train.py --dataset data/netsvf --batch 32 --steps 20

Loader alone: frames/s of reading batches (one fancy-indexing read of the memmap per batch,
sorted rows) and converting them to float input, without and with the prefetch thread.
Training: frames/s of full SGD steps (forward, MSE, backward, update) fed by the same loader.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.dataset import DatasetWriter
from vbp_live.train.config import load_config
from vbp_live.train.data import BatchLoader, epoch_batches, load_data
from vbp_live.train.loop import Trainer


def make_dataset(path: Path, n: int, model: str) -> Path:
    """n random-texture frames with the model's crop size (enough to defeat caching of one batch)."""
    crop = CROP_PRESETS[model]
    w = DatasetWriter(path, (crop.out_height, crop.out_width), crop)
    rng = np.random.default_rng(0)
    for i in range(n):
        w.append(
            rng.integers(0, 256, (crop.out_height, crop.out_width), dtype=np.uint8), i * 50_000_000, 0.0, 10.0, "bench"
        )
    return w.finalize(["train"] * (n - n // 10) + ["test"] * (n // 10))


def loader_rate(data, batches, prefetch: int) -> float:
    t0 = time.perf_counter()
    frames = sum(len(x) for x, _ in BatchLoader(data.frames, data.targets, batches, prefetch=prefetch))
    return frames / (time.perf_counter() - t0)


def train_rate(cfg, data, steps: int, warmup: int = 2) -> float:
    trainer = Trainer(cfg, data)
    batches = epoch_batches(data.train_idx, cfg.train.batch_size, 0, 0)[: steps + warmup]
    it = iter(BatchLoader(data.frames, data.targets, batches, prefetch=cfg.data.prefetch))
    for _ in range(warmup):
        x, y = next(it)
        trainer.train_step(x, y, len(x))
    t0, frames = time.perf_counter(), 0
    for x, y in it:
        trainer.train_step(x, y, len(x))
        frames += len(x)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="a prepared dataset (default: a temporary one with random frames)")
    p.add_argument("--model", default="netsvf", choices=["netsvf", "nethvf"])
    p.add_argument("--frames", type=int, default=1024, help="frames of the temporary dataset")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed training steps")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dataset) if args.dataset else make_dataset(Path(tmp) / "ds", args.frames, args.model)
        cfg = load_config(
            None,
            [
                f"data.path={path}",
                f"model.name={args.model}",
                f"train.batch_size={args.batch}",
                "train.progress=false",
                f"run_dir={tmp}/run",
            ],
        )
        data = load_data(cfg.data)
        batches = epoch_batches(data.train_idx, args.batch, 0, 0)
        loader_rate(data, batches, 0)  # warm the page cache so both loader figures read the same way
        inline, threaded = loader_rate(data, batches, 0), loader_rate(data, batches, 2)
        training = train_rate(cfg, data, args.steps)
    h, w = data.frames.shape[1:3]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} {w}x{h}, batch {args.batch}")
    print(f"loader alone (inline)          : {inline:9.1f} frames/s")
    print(f"loader alone (prefetch thread) : {threaded:9.1f} frames/s")
    print(f"training (SGD step, CPU)       : {training:9.1f} frames/s")
    print(f"loader / training              : {inline / training:9.1f}x  (> 1: loading keeps up)")


if __name__ == "__main__":
    main()
