"""Helpers for the trainer tests: a tiny net registered for a while, small prepared datasets.

Also a command-line entry (``python tests/train_helpers.py train ...``) that registers the tiny
net and runs the real ``vbp-live`` CLI, so subprocess and torchrun tests use the real code path.
With ``VBP_RECORD_COLLECTIVES=DIR`` set, that entry also records the device of every tensor each
torch.distributed collective is given and writes ``DIR/rank<k>.json`` at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.core.preprocess import CropSpec
from vbp_live.io.dataset import DatasetWriter
from vbp_live.models import ConvNet
from vbp_live.models.registry import register_model, registered_models

# the collectives a training run may call from Python (DDP's setup calls the two private ones)
COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce", "reduce_scatter",
               "reduce_scatter_tensor", "gather", "scatter", "all_to_all", "all_to_all_single", "barrier",
               "_broadcast_coalesced", "_verify_params_across_processes")


def tiny_steer(height: int = 24, width: int = 48) -> ConvNet:
    """``tiny_steer``: three BN-conv-ReLU blocks and a small head (fast on CPU)."""
    return ConvNet((1, height, width), (4, 8, 8), (16, 1))


@contextlib.contextmanager
def tiny_registered() -> Iterator[str]:
    """``tiny_steer`` in the model registry for the ``with`` block only; yields its name."""
    with registered_models(tiny_steer) as names:
        yield names[0]


def _devices(obj: Any) -> list[str]:
    """Devices of the tensors in ``obj`` (a tensor, or lists/tuples of them)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return [str(obj.device)]
    if isinstance(obj, (list, tuple)):
        return [d for item in obj for d in _devices(item)]
    return []


def record_collectives(out_dir: Path) -> None:
    """Wrap torch.distributed's collectives with a recorder that calls the real ones (see module doc)."""
    import torch.distributed as dist

    calls: list[dict[str, Any]] = []

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            devices = _devices(list(args) + list(kwargs.values()))
            ids = kwargs.get("device_ids")
            calls.append({"fn": name, "devices": devices, "device_ids": ids,
                          "backend": str(dist.get_backend()) if dist.is_initialized() else None})
            return real(*args, **kwargs)
        return recorded

    for name in COLLECTIVES:
        if hasattr(dist, name):
            setattr(dist, name, wrap(name, getattr(dist, name)))

    def dump() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(calls))

    atexit.register(dump)


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
    register_model(tiny_steer)  # for this process's life only
    if os.environ.get("VBP_RECORD_COLLECTIVES"):
        record_collectives(Path(os.environ["VBP_RECORD_COLLECTIVES"]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vbp_live.cli.main import main

    sys.exit(main(sys.argv[1:]))
