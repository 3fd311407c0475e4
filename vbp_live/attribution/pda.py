"""Efficient prediction difference analysis (seed 003, Zhou & Kainz, Algorithms 2 and 3).

Each k×k window ``x_w`` is replaced by its *conditional mean* given the rest of the l×l patch
around it (a Gaussian over patch pixels, all channels, estimated from an image set), giving
``x'``; the evidence of the window is the change of the explained output,
``y(x) − y(x')``, averaged over the windows covering each pixel.

* ``pda`` (Algorithm 2): one forward pass per window, ``batch_size`` windows per pass.
* ``pda_grad`` (Algorithm 3): ``grad(x)ᵀ(x − x')`` per window: one forward and one backward
  pass per batch (a first-order Taylor approximation of Algorithm 2; exact for linear nets).

For a steering net the evidence is the change of the predicted angle (not the paper's
log-odds, which need class probabilities); for a classifier it is the change of the explained
score (logit or log-probability, whatever the net outputs). Signed: positive = the window
pushes the output up; default sign convention ``"output"`` (evidence for the predicted
direction is positive).

Runtime: Algorithm 2 costs one forward per window. With the paper's window 10, patch 18 and
the default stride = window, a 125×640 NetSVF input has 13 × 64 = 832 windows (about 832
forward passes per image: seconds on a CPU); a smaller stride multiplies that by
(window/stride)². The Gaussian is estimated from the images being explained unless
:meth:`PredictionDifference.fit` was given a representative image set; windows at the border
use a patch shifted inside the image (the conditional is computed per window offset, cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vbp_live.attribution.base import Attribution, check_input, output_dtype, preserved_state, register_method
from vbp_live.attribution.grad_common import (
    Target,
    apply_sign,
    autograd_session,
    check_sign,
    explained_output,
    input_gradient,
    resolve_target,
)

Pair = tuple[int, int]


def window_starts(n: int, k: int, stride: int) -> list[int]:
    """Start indices of windows of length ``k`` every ``stride`` along an axis of ``n``, the last flush with the end."""
    if k > n:
        raise ValueError(f"window {k} is larger than the input axis {n}")
    starts = list(range(0, n - k + 1, stride))
    if starts[-1] + k < n:
        starts.append(n - k)
    return starts


@dataclass(frozen=True)
class Window:
    """One window (rows r:r+kh, cols c:c+kw) and the patch around it (rows pr:pr+lh, cols pc:pc+lw)."""

    r: int
    c: int
    pr: int
    pc: int

    @property
    def offset(self) -> tuple[int, int]:
        """Position of the window inside its patch."""
        return self.r - self.pr, self.c - self.pc


def plan_windows(hw: Pair, window: Pair, patch: Pair, stride: Pair) -> list[Window]:
    """All windows of an ``hw`` input, each with its patch centred on it and shifted inside the image."""
    (h, w), (kh, kw), (lh, lw) = hw, window, patch
    out = []
    for r in window_starts(h, kh, stride[0]):
        pr = min(max(r - (lh - kh) // 2, 0), h - lh)
        for c in window_starts(w, kw, stride[1]):
            pc = min(max(c - (lw - kw) // 2, 0), w - lw)
            out.append(Window(r, c, pr, pc))
    return out


@dataclass
class PatchGaussian:
    """A Gaussian over (C, lh, lw) patches: mean (d,) and covariance (d, d), d = C·lh·lw, float64."""

    shape: tuple[int, int, int]
    mean: torch.Tensor
    cov: torch.Tensor
    _cond: dict = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, images: torch.Tensor, patch: Pair, max_patches: int = 20000,
            ridge: float = 1e-3, seed: int = 0) -> PatchGaussian:
        """Estimate from all patches of ``images`` (N, C, H, W), subsampled to ``max_patches`` (seeded).

        ``ridge`` (relative to the mean variance) is added to the diagonal so every conditional
        is well defined even from few patches.
        """
        c = images.shape[1]
        cols = F.unfold(images.detach().double().cpu(), patch)  # (N, d, L)
        p = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])  # (N*L, d)
        if p.shape[0] > max_patches:
            g = torch.Generator().manual_seed(seed)
            p = p[torch.randperm(p.shape[0], generator=g)[:max_patches]]
        mean = p.mean(0)
        centred = p - mean
        cov = centred.T @ centred / max(p.shape[0] - 1, 1)  # (d, d)
        cov += torch.eye(cov.shape[0], dtype=cov.dtype) * ridge * max(float(cov.diagonal().mean()), 1e-12)
        return cls((c, *patch), mean, cov)

    def conditional(self, offset: Pair, window: Pair) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a window at ``offset`` in the patch: (window idx, rest idx, A, b) with E[x_w | x_s] = b + A x_s."""
        key = (offset, window)
        if key not in self._cond:
            inside = torch.zeros(self.shape, dtype=torch.bool)
            inside[:, offset[0]:offset[0] + window[0], offset[1]:offset[1] + window[1]] = True
            wi, si = inside.flatten().nonzero()[:, 0], (~inside.flatten()).nonzero()[:, 0]
            if len(si) == 0:  # patch == window: the marginal mean
                a = torch.zeros(len(wi), 0, dtype=self.cov.dtype)
            else:
                a = torch.linalg.solve(self.cov[si][:, si], self.cov[si][:, wi]).T  # (|w|, |s|)
            b = self.mean[wi] - a @ self.mean[si]
            self._cond[key] = (wi, si, a, b)
        return self._cond[key]


class _PDABase(Attribution):
    """Windows, patch statistics and conditional means shared by Algorithms 2 and 3."""

    def __init__(self, model: nn.Module, window: int = 10, patch: int = 18, stride: int | None = None,
                 sign: str = "output", max_patches: int = 20000):
        super().__init__(model)
        if window < 1 or patch < window or (stride is not None and stride < 1):
            raise ValueError(f"need 1 <= window <= patch and stride >= 1, got window={window}, patch={patch}, "
                             f"stride={stride}")
        self.window, self.patch, self.stride = window, patch, stride or window
        self.sign, self.max_patches = check_sign(sign), max_patches
        self.stats: PatchGaussian | None = None

    def fit(self, images: torch.Tensor, seed: int = 0) -> _PDABase:
        """Estimate the patch Gaussian from a representative image set (N, C, H, W); returns self."""
        check_input(images)
        self.stats = PatchGaussian.fit(images, self._sizes(images)[1], self.max_patches, seed=seed)
        return self

    def _sizes(self, x: torch.Tensor) -> tuple[Pair, Pair, Pair]:
        h, w = x.shape[-2:]
        win = (min(self.window, h), min(self.window, w))
        return win, (min(self.patch, h), min(self.patch, w)), (self.stride, self.stride)

    def _stats_for(self, x: torch.Tensor, patch: Pair) -> PatchGaussian:
        stats = self.stats if self.stats is not None else PatchGaussian.fit(x, patch, self.max_patches)
        if stats.shape != (x.shape[1], *patch):
            raise ValueError(f"the patch Gaussian was fitted for patches {stats.shape}, "
                             f"this input needs {(x.shape[1], *patch)}")
        return stats

    def conditional_means(self, x: torch.Tensor) -> tuple[list[Window], torch.Tensor]:
        """All windows and their conditional means (B, n_windows, C, kh, kw) for input ``x``."""
        win, patch, stride = self._sizes(x)
        windows = plan_windows(tuple(x.shape[-2:]), win, patch, stride)
        stats = self._stats_for(x, patch)
        xd = x.detach().double().cpu()
        out = torch.empty(x.shape[0], len(windows), x.shape[1] * win[0] * win[1], dtype=torch.float64)
        groups: dict[Pair, list[int]] = {}
        for j, wdw in enumerate(windows):
            groups.setdefault(wdw.offset, []).append(j)
        for offset, idx in groups.items():
            _, si, a, b = stats.conditional(offset, win)
            patches = torch.stack([xd[:, :, w.pr:w.pr + patch[0], w.pc:w.pc + patch[1]].flatten(1) for w in
                                   (windows[j] for j in idx)], 1)  # (B, n, d)
            out[:, idx] = patches[:, :, si] @ a.T + b  # (B, n, |w|)
        return windows, out.view(x.shape[0], len(windows), x.shape[1], *win).to(x.device, output_dtype(x))

    def _accumulate(self, shape: torch.Size, windows: list[Window], win: Pair, evidence: torch.Tensor) -> torch.Tensor:
        """Average each window's evidence (B, n) over the pixels it covers -> (B, 1, H, W)."""
        we = evidence.new_zeros(shape[0], 1, *shape[-2:])
        counts = evidence.new_zeros(1, 1, *shape[-2:])
        for j, w in enumerate(windows):
            we[:, :, w.r:w.r + win[0], w.c:w.c + win[1]] += evidence[:, j].view(-1, 1, 1, 1)
            counts[:, :, w.r:w.r + win[0], w.c:w.c + win[1]] += 1
        return we / counts.clamp(min=1)


@register_method("pda")
class PredictionDifference(_PDABase):
    """Efficient prediction difference analysis (Algorithm 2): one forward pass per window.

    Args:
        model: the network (mode, weights, buffers, RNG untouched).
        window: window size k (square; clipped to the input).
        patch: surrounding patch size l >= k (l = k: marginal instead of conditional mean).
        stride: window stride (default: = window, non-overlapping: the sane default for 125×640).
        batch_size: perturbed copies per forward pass.
        sign: default sign convention (``"output"``).
        max_patches: patches used to estimate the Gaussian.
    """

    def __init__(self, model: nn.Module, window: int = 10, patch: int = 18, stride: int | None = None,
                 batch_size: int = 64, sign: str = "output", max_patches: int = 20000):
        super().__init__(model, window, patch, stride, sign, max_patches)
        self.batch_size = int(batch_size)

    def attribute(self, x: torch.Tensor, target: Target = None, sign: str | None = None) -> torch.Tensor:
        """Evidence map (B, 1, H, W): mean change of the explained output over covering windows."""
        check_input(x)
        sign = check_sign(sign or self.sign)
        x = x.detach().to(output_dtype(x))
        windows, cond = self.conditional_means(x)  # (B, n, C, kh, kw)
        win = tuple(cond.shape[-2:])
        with torch.no_grad(), preserved_state(self.model):
            out = self.model(x)
            idx = resolve_target(out, target)
            y0 = explained_output(out, idx)  # (B,)
            evidence = torch.stack([self._sample_evidence(x[b], cond[b], windows, win, idx, b) for b in range(len(x))])
        return apply_sign(self._accumulate(x.shape, windows, win, y0[:, None] - evidence), y0, sign).to(x.dtype)

    def _sample_evidence(self, xb: torch.Tensor, cond: torch.Tensor, windows: list[Window], win: Pair,
                         idx: torch.Tensor | None, b: int) -> torch.Tensor:
        """Outputs for one sample with each window replaced, ``batch_size`` windows per forward: (n,)."""
        ys = []
        for s in range(0, len(windows), self.batch_size):
            chunk = windows[s:s + self.batch_size]
            xp = xb.unsqueeze(0).repeat(len(chunk), 1, 1, 1)  # (n, C, H, W)
            for j, w in enumerate(chunk):
                xp[j, :, w.r:w.r + win[0], w.c:w.c + win[1]] = cond[s + j]
            ys.append(explained_output(self.model(xp), None if idx is None else int(idx[b])))
        return torch.cat(ys)


@register_method("pda_grad")
class PredictionDifferenceGrad(_PDABase):
    """Algorithm 3: per window ``grad(x)ᵀ(x − x')``; one forward + one backward pass.

    Same arguments as :class:`PredictionDifference` (no ``batch_size``: nothing to batch).
    """

    def attribute(self, x: torch.Tensor, target: Target = None, sign: str | None = None) -> torch.Tensor:
        """First-order evidence map (B, 1, H, W)."""
        check_input(x)
        sign = check_sign(sign or self.sign)
        windows, cond = self.conditional_means(x)  # (B, n, C, kh, kw)
        win = tuple(cond.shape[-2:])
        with autograd_session(self.model) as session:
            xg = session.input(x)  # (B, C, H, W)
            y = explained_output(self.model(xg), target)  # (B,)
            grad = input_gradient(y, xg)  # (B, C, H, W)
        xd = xg.detach()
        evidence = torch.stack([_window_dot(xd, grad, cond[:, j], w, win) for j, w in enumerate(windows)], 1)  # (B, n)
        return apply_sign(self._accumulate(x.shape, windows, win, evidence), y, sign).to(output_dtype(x))


def _window_dot(x: torch.Tensor, grad: torch.Tensor, cond: torch.Tensor, w: Window, win: Pair) -> torch.Tensor:
    """``grad ᵀ (x − x')`` restricted to one window (x' differs from x only there): (B,)."""
    rows, cols = slice(w.r, w.r + win[0]), slice(w.c, w.c + win[1])
    return ((x[:, :, rows, cols] - cond) * grad[:, :, rows, cols]).flatten(1).sum(1)
