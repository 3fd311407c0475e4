"""Validation metrics: steering RMSE (radians and degrees of steering wheel angle), within-1°/5°, accuracy.

Metrics are accumulated as sums (so DDP ranks can all-reduce them) and finished into a dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vbp_live.core.preprocess import CropSpec
from vbp_live.models import frames_to_input

REGRESSION_SUMS = ("n", "sq_err", "abs_err", "within_1deg", "within_5deg")
CLASSIFICATION_SUMS = ("n", "nll", "correct")


def loss_sum(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Summed (not averaged) loss of a local batch: ``mse`` on (B, 1) outputs, ``nll`` on log-probs."""
    if loss == "mse":
        return F.mse_loss(out.float().reshape(-1), y.float(), reduction="sum")
    return F.nll_loss(out.float(), y.long(), reduction="sum")


def batch_sums(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Metric sums of one batch, float64 on the CPU in the order of ``REGRESSION_SUMS`` / ``CLASSIFICATION_SUMS``.

    The sums are stacked on the batch's device and copied once (one sync per batch, not one per sum).
    """
    out = out.float()
    n = torch.tensor(float(len(y)), device=out.device)
    if loss == "mse":
        err = out.reshape(-1) - y.float()  # (B,)
        err_deg = torch.rad2deg(err).abs()  # (B,)
        vals = [n, (err * err).sum(), err.abs().sum(), (err_deg <= 1.0).sum().float(), (err_deg <= 5.0).sum().float()]
    else:
        vals = [n, F.nll_loss(out, y.long(), reduction="sum"), (out.argmax(1) == y).sum().float()]
    return torch.stack(vals).double().cpu()  # (k,)


def finish(sums: torch.Tensor, loss: str) -> dict[str, float]:
    """Turn all-reduced sums into metrics (RMSE in rad and in degrees of steering wheel angle, ...)."""
    s = sums.tolist()
    n = max(s[0], 1.0)
    if loss == "mse":
        rmse = math.sqrt(s[1] / n)
        return {"val_loss": s[1] / n, "val_rmse_rad": rmse, "val_rmse_deg": math.degrees(rmse),
                "val_mae_deg": math.degrees(s[2] / n), "val_within_1deg": s[3] / n, "val_within_5deg": s[4] / n}
    return {"val_loss": s[1] / n, "val_accuracy": s[2] / n}


@torch.no_grad()
def evaluate_sums(
    model: nn.Module,
    frames: np.ndarray,
    targets: np.ndarray,
    idx: Sequence[int] | np.ndarray,
    loss: str = "mse",
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    amp: bool = False,
    amp_dtype: torch.dtype | None = torch.float16,
    crop: CropSpec | None = None,
) -> torch.Tensor:
    """Run ``model`` (as it is: call ``.eval()`` first) over rows ``idx``; return the metric sums.

    ``crop``: the frames' preprocessing (its input scaling); None: ``x / 255``.

    The sums are float64 on the CPU, wherever the model runs; ``train.dist.all_sum`` reduces them
    on the process group's device.
    """
    device = torch.device(device)
    idx = np.asarray(idx)
    total = torch.zeros(len(REGRESSION_SUMS if loss == "mse" else CLASSIFICATION_SUMS), dtype=torch.float64)
    for i in range(0, len(idx), batch_size):
        rows = idx[i:i + batch_size]
        x = frames_to_input(np.asarray(frames[rows]), device, crop)  # (b, C, H, W)
        y = torch.as_tensor(np.asarray(targets[rows])).to(device)  # (b,)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp):
            out = model(x)  # (b, 1) or (b, classes)
        total += batch_sums(out, y, loss)
    return total


def evaluate_model(model: nn.Module, frames: np.ndarray, targets: np.ndarray, idx: Sequence[int] | np.ndarray,
                   loss: str = "mse", batch_size: int = 32, device: torch.device | str = "cpu",
                   crop: CropSpec | None = None) -> dict[str, float]:
    """Metrics of ``model`` in eval mode on rows ``idx`` (its train/eval mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return finish(evaluate_sums(model, frames, targets, idx, loss, batch_size, device, crop=crop), loss)
    finally:
        model.train(was_training)
