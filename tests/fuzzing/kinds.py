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


def _seed_recordings(base: Path) -> None:
    """Small valid recordings of every format prep reads (bag from :func:`_seed_state`)."""
    _paths()
    from recording_fixtures import write_data_txt_folder, write_label_csv_folder, write_tub_v1, write_tub_v2
    from test_csv_hardening import make_dump, make_simlog

    make_dump(base / "dump")
    make_simlog(base / "simlog")
    write_tub_v2(base / "tub_v2", n=8, start=3, deleted=[6, 4], size=(48, 36))
    write_tub_v1(base / "tub_v1", n=6)
    write_data_txt_folder(base / "data_txt", n=8, size=(48, 36))
    write_label_csv_folder(base / "label_csv", n=8)


PREP = ["--no-progress", "--set", "decode.threads=1"]
SMALL = ["--set", "crop.preset=donkey", "--set", "crop.out_height=20", "--set", "crop.out_width=40",
         "--set", "filter.min_speed_mps=0"]


def _bag(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.bag_mutators import mutate_bag

    (d / "x.bag").write_bytes(mutate_bag((base / "seed.bag").read_bytes(), rng))
    return ["prep", str(d / "x.bag"), "-o", str(d / "out"), *PREP]


def _bag_run(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.bag_mutators import mutate_bag

    (d / "x.bag").write_bytes(mutate_bag((base / "seed.bag").read_bytes(), rng))
    return ["run", str(d / "x.bag"), "--checkpoint", str(base / "ckpt.pt"), "--no-output", "--device", "cpu", "-q"]


def _dump(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.csv_mutators import mutate_dump

    target, _ = mutate_dump(base / "dump", d / "in", rng)
    return ["prep", str(target), "-o", str(d / "out"), *PREP]


def _simlog(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.csv_mutators import mutate_simlog

    target, _ = mutate_simlog(base / "simlog", d / "in", rng)
    return ["prep", str(target), "-o", str(d / "out"), *PREP, "--set", "filter.min_speed_mps=0"]


def _tub(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.tub_mutators import mutate_tub

    mutate_tub(base / rng.choice(["tub_v2", "tub_v1"]), d / "in", rng)
    return ["prep", str(d / "in"), "-o", str(d / "out"), *PREP, *SMALL]


def _folder(base: Path, d: Path, rng: random.Random) -> list[str]:
    from fuzzing.folder_mutators import mutate_folder

    mutate_folder(base / rng.choice(["data_txt", "label_csv"]), d / "in", rng)
    return ["prep", str(d / "in"), "-o", str(d / "out"), *PREP, *SMALL]


def _seed_all(base: Path) -> None:
    _seed_state(base)
    _seed_recordings(base)


KINDS: dict[str, Kind] = {
    k.name: k for k in [
        Kind("bag", _seed_all, _bag, "`prep` on a damaged Udacity bag"),
        Kind("bag-run", _seed_all, _bag_run, "`run` (overlay) on a damaged Udacity bag"),
        Kind("dump", _seed_all, _dump, "`prep` on a damaged bag dump (CSV + images)"),
        Kind("simlog", _seed_all, _simlog, "`prep` on a damaged simulator log (driving_log.csv + IMG/)"),
        Kind("tub", _seed_all, _tub, "`prep` on a damaged donkeycar tub (v2 or v1)"),
        Kind("folder", _seed_all, _folder, "`prep` on a damaged frame folder (data.txt or labels CSV)"),
        Kind("train-config", _seed_all, _train_config, "`train --config` on a mutated training YAML"),
        Kind("prep-config", _seed_all, _prep_config, "`prep --config` on a mutated prep YAML"),
        Kind("checkpoint", _seed_all, _checkpoint, "`run VIDEO --checkpoint` on a mutated checkpoint"),
        Kind("dataset", _seed_all, _dataset, "`train` on a mutated prepared dataset"),
    ]
}
