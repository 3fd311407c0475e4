"""Perturbation curves for a regression output (steering): does removing what a map calls relevant
change the prediction?

* Region perturbation, most relevant first (MoRF; Samek et al., arXiv 1509.06321): the image is
  cut into ``patch``×``patch`` regions ranked by their summed relevance; step k replaces the top
  ``k/steps · region_fraction`` of the regions with uniform noise (``region_fill="noise"``, as
  Samek et al.), the blurred copy (``"blur"``) or the image mean (``"mean"``). Tracked:
  ``|y_k − y_0|``; AOPC is its mean over the steps 0..L (higher = the map found what the output
  depends on). Noise patches add edges of their own, which a network that steers by lane
  markings reacts to wherever they land; the fills without new edges isolate the ranking.
* Deletion / insertion (Petsiuk et al., RISE): pixels ranked by relevance; deletion replaces the
  top ``k/steps`` of them with a blurred copy of the image, insertion starts from the blurred
  copy and puts the top pixels back. Tracked: ``|y_k − y_0|``. Deletion AUC: higher is better;
  insertion AUC: lower is better (the prediction comes back sooner).

The noise image, the blurred baseline and the random tie-break between equal map values are
drawn once per frame from the seed and shared by all methods, so methods differ only by their
ranking. A seeded random ranking is the reference every method should beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from vbp_live.core.metrics import most_relevant_first, region_scores

REGION_FILLS = ("noise", "blur", "mean")


@dataclass(frozen=True)
class PerturbSettings:
    """Settings of the perturbation curves (see the module docstring)."""

    patch: int = 10
    steps: int = 16
    region_fraction: float = 0.25
    region_fill: str = "noise"  # "noise", "blur" or "mean" (see the module docstring)
    blur_sigma: float = 8.0
    batch: int = 17

    def __post_init__(self) -> None:
        _check_fill(self.region_fill)


def _check_fill(kind: str) -> None:
    """Refuse a region fill that is not one of :data:`REGION_FILLS`."""
    if kind not in REGION_FILLS:
        raise ValueError(f"region_fill must be one of {', '.join(REGION_FILLS)}; got {kind!r}")


@dataclass
class FrameContext:
    """Per-frame randomness shared by every method: noise, blurred baseline, tie-breaks."""

    x: torch.Tensor  # (C, H, W)
    y0: float
    noise: torch.Tensor  # (C, H, W)
    blurred: torch.Tensor  # (C, H, W)
    pixel_tiebreak: np.ndarray  # (H, W)
    region_tiebreak: np.ndarray  # (gh, gw)
    random_map: np.ndarray  # (H, W): the random-ranking reference


def explained_outputs(model: nn.Module, xs: torch.Tensor, batch: int) -> np.ndarray:
    """The single regression output for each image (n,), float64."""
    ys = []
    with torch.no_grad():
        for s in range(0, len(xs), batch):
            out = model(xs[s:s + batch]).reshape(len(xs[s:s + batch]), -1)
            if out.shape[1] != 1:
                raise ValueError("the evaluation needs a single-output (steering) network; "
                                 f"this one has {out.shape[1]} outputs")
            ys.append(out[:, 0].double().cpu())
    return torch.cat(ys).numpy()


def frame_context(model: nn.Module, x: torch.Tensor, seed: int, s: PerturbSettings) -> FrameContext:
    """Draw the shared randomness of one frame ``x`` (C, H, W) from ``seed``."""
    rng = np.random.default_rng(seed)
    c, h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    noise = torch.from_numpy(rng.uniform(lo, hi if hi > lo else lo + 1.0, (c, h, w)).astype(np.float32)).to(x)
    img = x.detach().float().cpu().numpy().transpose(1, 2, 0)  # (H, W, C)
    blurred = cv2.GaussianBlur(img, (0, 0), s.blur_sigma).reshape(h, w, c).transpose(2, 0, 1)
    gh, gw = -(-h // s.patch), -(-w // s.patch)
    y0 = float(explained_outputs(model, x[None], 1)[0])
    return FrameContext(x, y0, noise, torch.from_numpy(np.ascontiguousarray(blurred)).to(x),
                        rng.random((h, w)), rng.random((gh, gw)), rng.random((h, w)))


def _rank_image(order: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    return rank.reshape(shape)


def region_perturbation(model: nn.Module, ctx: FrameContext, relevance: np.ndarray, s: PerturbSettings) -> np.ndarray:
    """``|y_k − y_0|`` for k = 0..steps while the most relevant regions are replaced by noise."""
    h, w = relevance.shape
    scores = region_scores(relevance, s.patch)
    rank = _rank_image(most_relevant_first(scores, ctx.region_tiebreak), scores.shape)
    pixel_rank = np.repeat(np.repeat(rank, s.patch, 0), s.patch, 1)[:h, :w]  # (H, W) region rank per pixel
    counts = [round(k / s.steps * s.region_fraction * scores.size) for k in range(s.steps + 1)]
    masks = torch.from_numpy(np.stack([pixel_rank < n for n in counts])).to(ctx.x.device)  # (L+1, H, W)
    xs = torch.where(masks[:, None], region_fill(ctx, s.region_fill)[None], ctx.x[None])  # (L+1, C, H, W)
    return np.abs(explained_outputs(model, xs, s.batch) - ctx.y0)


def region_fill(ctx: FrameContext, kind: str) -> torch.Tensor:
    """What perturbed regions are replaced with, (C, H, W): see the module docstring."""
    _check_fill(kind)
    if kind == "noise":
        return ctx.noise
    if kind == "blur":
        return ctx.blurred
    return torch.full_like(ctx.x, float(ctx.x.float().mean()))  # "mean"


def deletion_insertion(model: nn.Module, ctx: FrameContext, relevance: np.ndarray,
                       s: PerturbSettings) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves ``|y_k − y_0|`` (k = 0..steps, fraction k/steps of the pixels)."""
    h, w = relevance.shape
    rank = torch.from_numpy(_rank_image(most_relevant_first(relevance, ctx.pixel_tiebreak), (h, w))).to(ctx.x.device)
    masks = torch.stack([rank < round(k / s.steps * h * w) for k in range(s.steps + 1)])[:, None]  # (L+1, 1, H, W)
    deleted = torch.where(masks, ctx.blurred[None], ctx.x[None])  # (L+1, C, H, W)
    inserted = torch.where(masks, ctx.x[None], ctx.blurred[None])
    ys = explained_outputs(model, torch.cat([deleted, inserted]), s.batch)
    d = np.abs(ys - ctx.y0)
    return d[: s.steps + 1], d[s.steps + 1:]
