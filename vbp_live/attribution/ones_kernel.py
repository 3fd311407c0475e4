"""Fast ones-kernel transposed convolution (a strided box sum) and per-image min-max.

A transposed conv with all-ones weights, kernel ``k``, stride ``s``, padding ``p`` and dilation
``d`` is separable: along each axis, output ``y`` sums the inputs ``i`` with
``y + p = i*s + j*d`` for some tap ``0 <= j < k``. That is ``k`` strided adds per axis instead
of a general convolution (which PyTorch runs through slow one-channel conv kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vbp_live.core.geometry import Geometry2d, transposed_full_size

SMALL_MAP = 4096  # below this many pixels per map, one conv_transpose2d call beats 2k strided adds


def _axis_index(dim: int, sl: slice) -> tuple[slice, ...]:
    return (slice(None),) * dim + (sl,)


def ones_transpose_axis(x: torch.Tensor, dim: int, target: int, k: int, s: int, p: int, d: int) -> torch.Tensor:
    """Ones-kernel transposed conv along one axis of ``x``, landing exactly on ``target``."""
    n = x.shape[dim]
    full = max(target + 2 * p, transposed_full_size(n, k, s, d))
    shape = list(x.shape)
    shape[dim] = full
    buf = x.new_zeros(shape)
    stop = (n - 1) * s + 1
    for j in range(k):
        buf[_axis_index(dim, slice(j * d, j * d + stop, s))] += x
    return buf.narrow(dim, p, target)


def ones_transpose2d(x: torch.Tensor, g: Geometry2d, target: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) -> (B, 1, *target): the all-ones transposed conv of geometry ``g`` (a new tensor).

    Large maps use separable strided adds (the general one-channel transposed-conv kernels are
    slow there); small maps, where per-op overhead dominates, use one ``conv_transpose2d``.
    """
    adj = g.output_padding(target, (x.shape[2], x.shape[3]))
    adj_ok = all(0 <= a < max(s, d) for a, s, d in zip(adj, g.stride, g.dilation, strict=True))
    if x.shape[2] * x.shape[3] < SMALL_MAP and adj_ok:
        ones = torch.ones(1, 1, *g.kernel, dtype=x.dtype, device=x.device)  # (1, 1, kh, kw)
        return F.conv_transpose2d(x, ones, stride=g.stride, padding=g.padding, output_padding=adj, dilation=g.dilation)
    x = ones_transpose_axis(x, 2, target[0], g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])
    return ones_transpose_axis(x, 3, target[1], g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])


def minmax_normalize(mask: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """One min-max per image: (B, 1, H, W) -> [0, 1]. A constant image (e.g. all zero) gives zeros."""
    flat = mask.flatten(1)  # (B, H*W)
    lo, hi = flat.amin(1), flat.amax(1)  # (B,), (B,); faster on CPU than aminmax over dim 1
    span = hi - lo  # (B,)
    scale = torch.where(span > eps, 1.0 / span.clamp_min(torch.finfo(mask.dtype).tiny), 0.0)  # (B,)
    return (mask - lo.view(-1, 1, 1, 1)).mul_(scale.view(-1, 1, 1, 1))  # (B, 1, H, W)
