"""The fuzz kinds: for each, a one-time setup that writes valid seed inputs, and a case function
that writes one seeded mutant and returns the ``vbp-live`` command line to run on it.

Setup and cases run in forked children (see :mod:`fuzzing.harness`), so they may use torch.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from fuzzing import state_mutators as sm

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


@dataclass(frozen=True)
class Kind:
    """One kind of input: ``setup(base)`` writes seed inputs once; ``case(base, dir, rng)`` -> argv."""

    name: str
    setup: Callable[[Path], None]
    case: Callable[[Path, Path, random.Random], list[str]]
    doc: str


def _paths() -> None:
    for p in (str(TESTS), str(REPO)):
        if p not in sys.path:
            sys.path.insert(0, p)


# ---------------------------------------------------------------- shared seed inputs

def _seed_bag(path: Path, n: int = 12) -> Path:
    """A small valid Udacity-layout bag (12 frames, steering at 50 Hz)."""
    _paths()
    from prep_fixtures import T0, flat_jpeg, steering_series, write_bag

    frames = [(T0 + 50_000_000 * i, flat_jpeg(40 + 10 * i, noise=8, seed=i)) for i in range(n)]
    steer = steering_series(T0 - 100_000_000, T0 + 50_000_000 * n + 100_000_000)
    return write_bag(path, frames, steer)


def _seed_state(base: Path) -> None:
    """A tiny dataset (netsvf-sized 125x160), a checkpoint, a 6-frame video and configs."""
    _paths()
    import numpy as np
    from stream_util import CROP, tiny_checkpoint, write_video

    from vbp_live.io.dataset import DatasetWriter

    rng = np.random.default_rng(0)
    w = DatasetWriter(base / "dataset", (CROP.out_height, CROP.out_width), CROP)
    for i in range(24):
        w.append(rng.integers(0, 255, (CROP.out_height, CROP.out_width), dtype=np.uint8), 10**6 * i,
                 float(rng.uniform(-0.3, 0.3)), 10.0, "fuzz")
    w.finalize(["train"] * 16 + ["test"] * 8)
    tiny_checkpoint(base / "ckpt.pt")
    write_video(base / "video.mp4", 6)
    cfg = yaml.safe_load((REPO / "configs/netsvf.yaml").read_text())
    cfg["data"].update(path=str(base / "dataset"), prefetch=1)
    cfg["train"].update(epochs=1, batch_size=8, max_steps=2, threads=1, progress=False, device="cpu")
    cfg["snapshot"].update(epochs=[], frames=1)
    (base / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (base / "prep.yaml").write_text((REPO / "configs/prep.yaml").read_text())
    _seed_bag(base / "seed.bag")


# ---------------------------------------------------------------- cases

def _train_config(base: Path, d: Path, rng: random.Random) -> list[str]:
    cfg = sm.write_yaml_mutant(base / "train.yaml", d / "train.yaml", rng)
    return ["train", "--config", str(cfg), "--set", f"run_dir={d / 'run'}", "--set", "train.max_steps=2"]


def _prep_config(base: Path, d: Path, rng: random.Random) -> list[str]:
    cfg = sm.write_yaml_mutant(base / "prep.yaml", d / "prep.yaml", rng)
    return ["prep", str(base / "seed.bag"), "-o", str(d / "out"), "--config", str(cfg), "--no-progress"]


def _checkpoint(base: Path, d: Path, rng: random.Random) -> list[str]:
    ck = sm.mutate_checkpoint(base / "ckpt.pt", d / "ckpt.pt", rng)
    return ["run", str(base / "video.mp4"), "--checkpoint", str(ck), "--no-output", "--device", "cpu"]


def _dataset(base: Path, d: Path, rng: random.Random) -> list[str]:
    ds = sm.mutate_dataset(base / "dataset", d / "dataset", rng)
    return ["train", "--config", str(base / "train.yaml"), "--set", f"data.path={ds}",
            "--set", f"run_dir={d / 'run'}"]


KINDS: dict[str, Kind] = {
    k.name: k for k in [
        Kind("train-config", _seed_state, _train_config, "`train --config` on a mutated training YAML"),
        Kind("prep-config", _seed_state, _prep_config, "`prep --config` on a mutated prep YAML"),
        Kind("checkpoint", _seed_state, _checkpoint, "`run VIDEO --checkpoint` on a mutated checkpoint"),
        Kind("dataset", _seed_state, _dataset, "`train` on a mutated prepared dataset"),
    ]
}
