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


def pair_loss_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed temporal-pair term of a local batch ``[a_0..a_{h-1}, b_0..b_{h-1}]`` (``b_i`` follows ``a_i``).

    ``sum(((p_a - p_b) - (y_a - y_b))**2)`` over the ``h`` pairs: the predicted change from a frame
    to the next against the true one.
    """
    p, t = out.float().reshape(-1), y.float()  # (2h,), (2h,)
    h = len(t) // 2
    d = (p[:h] - p[h:]) - (t[:h] - t[h:])  # (h,)
    return (d * d).sum()  # () float32


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


@torch.no_grad()
def predictions(model: nn.Module, frames: np.ndarray, idx: Sequence[int] | np.ndarray, batch_size: int = 32,
                crop: CropSpec | None = None) -> np.ndarray:
    """(len(idx),) float64: the first output of ``model`` (as it is: call ``.eval()`` first) on rows ``idx``."""
    idx = np.asarray(idx)
    device = next(model.parameters()).device
    out = [model(frames_to_input(np.asarray(frames[idx[i:i + batch_size]]), device, crop))  # (b, 1)
           .reshape(-1).double().cpu() for i in range(0, len(idx), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def step_stats(pred: np.ndarray, truth: np.ndarray, next_row: np.ndarray) -> dict[str, float]:
    """Frame-to-frame change of predictions and truth over the rows that have a next frame, in degrees.

    Args:
        pred, truth: (N,) radians of steering wheel angle, one per dataset row.
        next_row: (N,) each row's next frame (:func:`vbp_live.train.data.successors`), -1 where none.

    Returns:
        ``step_pairs`` and the p50/p95 of ``|pred[next] - pred|`` (``step_p50_deg``, ``step_p95_deg``),
        of ``|truth[next] - truth|`` (``truth_step_p95_deg``) and of the change of the error
        (``error_step_p95_deg``); NaN without pairs.
    """
    a = np.flatnonzero(next_row >= 0)  # (P,)
    b = next_row[a]  # (P,)
    dp, dt = np.degrees(np.abs(pred[b] - pred[a])), np.degrees(np.abs(truth[b] - truth[a]))  # (P,), (P,)
    de = np.degrees(np.abs((pred[b] - truth[b]) - (pred[a] - truth[a])))  # (P,)

    def pct(v: np.ndarray, q: float) -> float:
        return float(np.percentile(v, q)) if len(v) else math.nan

    return {"step_pairs": int(len(a)), "step_p50_deg": pct(dp, 50), "step_p95_deg": pct(dp, 95),
            "truth_step_p95_deg": pct(dt, 95), "error_step_p95_deg": pct(de, 95)}


def error_stats(pred: np.ndarray, truth: np.ndarray, large_deg: float = 20.0) -> dict[str, float]:
    """Where an RMSE comes from: a constant offset, a gain, or neither, in degrees.

    Args:
        pred, truth: (N,) radians of steering wheel angle.
        large_deg: ``|truth|`` from which a frame counts as a large angle.

    Returns:
        ``error_mean_deg`` (the bias; RMSE² = bias² + ``error_std_deg``²), ``error_std_deg``,
        ``gain`` (the least-squares slope of pred on truth: 1 for a model that steers as far as the
        truth, below 1 for one that steers too little; NaN if truth is constant), ``corr`` (NaN likewise),
        ``large_frames`` and ``large_rmse_deg`` (frames with ``|truth| >= large_deg``; NaN without).
    """
    p, t = np.degrees(np.asarray(pred, np.float64)), np.degrees(np.asarray(truth, np.float64))  # (N,), (N,)
    if not len(t):
        return {"error_mean_deg": math.nan, "error_std_deg": math.nan, "gain": math.nan, "corr": math.nan,
                "large_frames": 0, "large_rmse_deg": math.nan}
    e = p - t  # (N,)
    big = np.abs(t) >= large_deg  # (N,)
    var_t = float(np.var(t))
    cov = float(np.mean((p - p.mean()) * (t - t.mean())))
    spread = math.sqrt(var_t * float(np.var(p)))
    return {
        "error_mean_deg": float(e.mean()),
        "error_std_deg": float(e.std()),
        "gain": cov / var_t if var_t > 0 else math.nan,
        "corr": cov / spread if spread > 0 else math.nan,
        "large_frames": int(big.sum()),
        "large_rmse_deg": float(np.sqrt(np.mean(np.square(e[big])))) if big.any() else math.nan,
    }
