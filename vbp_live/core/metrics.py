"""Pure metric math for comparing attribution maps (numpy only).

Conventions: a *map* is a float array (H, W) where larger means "more relevant"; ties are
broken by position (stable sort), so every ordering is deterministic.
"""

from __future__ import annotations

import numpy as np


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the flattened ``a``, ties given their average rank (as scipy's default)."""
    flat = np.asarray(a, np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vals = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], flat.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(flat.size, np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally sized arrays; NaN if either is constant."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"arrays differ in size: {x.size} vs {y.size}")
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN if either map is constant."""
    return pearson(rankdata(a), rankdata(b))


def top_mask(a: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction·n)`` largest entries (ties by position)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = np.asarray(a, np.float64).ravel()
    k = int(np.ceil(fraction * flat.size))
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    return keep.reshape(np.shape(a))


def topk_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.05) -> float:
    """Intersection over union of the top ``fraction`` pixels of two maps."""
    ma, mb = top_mask(a, fraction), top_mask(b, fraction)
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else float("nan")


def mass_fraction(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (non-negative part of the) relevance that falls inside ``mask``; NaN if none."""
    r = np.clip(np.asarray(relevance, np.float64), 0.0, None)
    m = np.asarray(mask, bool)
    if r.shape != m.shape:
        raise ValueError(f"relevance {r.shape} and mask {m.shape} differ in shape")
    total = r.sum()
    return float(r[m].sum() / total) if total > 0 else float("nan")


def mass_ratio(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Relevance share inside ``mask`` divided by the mask's area share (1 = no preference).

    NaN when the mask is empty or the map has no positive relevance.
    """
    return MassTally().add(relevance, np.asarray(mask, bool)).ratio()


class MassTally:
    """:func:`mass_ratio` pooled over many images: total mass inside / total mass, over total area share.

    ``coverage`` may be a bool mask or fractional per-pixel coverage in [0, 1] (a full-frame mask
    after the network's crop and resize). Pooling weighs every pixel alike, where averaging
    per-image ratios would weigh an image in which the region is tiny as much as any other.
    """

    def __init__(self) -> None:
        self.inside = self.total = self.area = self.pixels = 0.0

    def add(self, relevance: np.ndarray, coverage: np.ndarray) -> MassTally:
        """Add one image: its map (H, W) and the region's coverage (H, W)."""
        r = np.clip(np.asarray(relevance, np.float64), 0.0, None)
        c = np.asarray(coverage, np.float64)
        if r.shape != c.shape:
            raise ValueError(f"relevance {r.shape} and coverage {c.shape} differ in shape")
        self.inside += float((r * c).sum())
        self.total += float(r.sum())
        self.area += float(c.sum())
        self.pixels += c.size
        return self

    def share(self) -> float:
        """Pooled relevance share inside the region; NaN without positive relevance."""
        return self.inside / self.total if self.total > 0 else float("nan")

    def area_share(self) -> float:
        """Pooled share of the pixels the region covers (NaN before any image)."""
        return self.area / self.pixels if self.pixels else float("nan")

    def ratio(self) -> float:
        """Pooled mass share over area share (1 = no preference); NaN for an empty region or no mass."""
        return self.share() / self.area_share() if self.area > 0 else float("nan")


def region_scores(a: np.ndarray, patch: int) -> np.ndarray:
    """Sum of ``a`` over a grid of ``patch``×``patch`` regions (edge ones may be smaller): (ceil(H/p), ceil(W/p))."""
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    x = np.asarray(a, np.float64)
    h, w = x.shape
    gh, gw = -(-h // patch), -(-w // patch)
    padded = np.zeros((gh * patch, gw * patch))
    padded[:h, :w] = x
    return padded.reshape(gh, patch, gw, patch).sum(axis=(1, 3))


def most_relevant_first(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Flat indices of ``scores`` from the largest to the smallest.

    Ties are broken by ``tiebreak`` (larger first; e.g. seeded random numbers, so flat regions of
    a map are not always taken from the top-left), else by position.
    """
    s = -np.asarray(scores, np.float64).ravel()
    if tiebreak is None:
        return np.argsort(s, kind="stable")
    t = np.asarray(tiebreak, np.float64).ravel()
    if t.size != s.size:
        raise ValueError(f"tiebreak has {t.size} entries for {s.size} scores")
    return np.lexsort((-t, s))


def aopc(deltas: np.ndarray) -> float:
    """Area over the perturbation curve (Samek et al.): mean of the output changes over steps 0..L.

    ``deltas[k]`` is the change after k perturbation steps (for a regression output: |y_k − y_0|);
    a 2-D input (curves × steps) is averaged over curves too.
    """
    d = np.asarray(deltas, np.float64)
    if d.shape[-1] < 1:
        raise ValueError("need at least one step")
    return float(d.mean())


def curve_auc(y: np.ndarray, x: np.ndarray | None = None) -> float:
    """Area under a curve by the trapezoid rule, x normalized to [0, 1] (evenly spaced if None)."""
    yv = np.asarray(y, np.float64)
    if yv.size < 2:
        raise ValueError("a curve needs at least two points")
    xv = np.linspace(0.0, 1.0, yv.size) if x is None else np.asarray(x, np.float64)
    span = xv[-1] - xv[0]
    if span <= 0:
        raise ValueError("x must increase")
    return float(np.sum((yv[1:] + yv[:-1]) * np.diff(xv)) / 2.0 / span)
