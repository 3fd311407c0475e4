"""Helpers for the trainer tests: a tiny registered net and small prepared datasets.

Also a command-line entry (``python tests/train_helpers.py train ...``) that registers the tiny
net and runs the real ``vbp-live`` CLI, so subprocess and torchrun tests use the real code path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vbp_live.core.preprocess import CropSpec
from vbp_live.io.dataset import DatasetWriter
from vbp_live.models import ConvNet, list_models, register_model


def register_tiny() -> None:
    """Register ``tiny_steer``: three BN-conv-ReLU blocks and a small head (fast on CPU)."""
    if "tiny_steer" in list_models():
        return

    @register_model
    def tiny_steer(height: int = 24, width: int = 48) -> ConvNet:
        return ConvNet((1, height, width), (4, 8, 8), (16, 1))


def make_steering_dataset(path: Path, n: int = 96, height: int = 24, width: int = 48, seed: int = 0,
                          test_fraction: float = 0.25) -> Path:
    """A learnable steering dataset: a bright slanted line whose slope is the steering angle."""
    rng = np.random.default_rng(seed)
    crop = CropSpec(top=0.5, bottom=1.0, out_height=height, out_width=width)
    w = DatasetWriter(path, (height, width), crop)
    steer = rng.uniform(-0.5, 0.5, n)
    rows = np.arange(height)[:, None]
    for i, s in enumerate(steer):
        x0 = width / 2 + s * (rows - height / 2) * 2
        frame = 30 + 200 * (np.abs(np.arange(width)[None, :] - x0) < 1.5) + rng.integers(0, 20, (height, width))
        w.append(frame.clip(0, 255).astype(np.uint8), 1_000_000 * i, float(s), 10.0, "synthetic")
    n_test = int(round(n * test_fraction))
    return w.finalize(["train"] * (n - n_test) + ["test"] * n_test)


if __name__ == "__main__":
    register_tiny()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vbp_live.cli.main import main

    sys.exit(main(sys.argv[1:]))
