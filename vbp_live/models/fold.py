"""Inference copies of a network: BatchNorm folded into the adjacent convolution, in-place ReLUs.

In eval mode a BatchNorm is a per-channel affine map ``y = s * x + t``, so it can be merged
into the convolution next to it, exactly (up to float rounding):

* BN -> Conv (the paper's nets: BatchNorm *before* each conv): scale the conv's input channels,
  ``W'[o, i] = W[o, i] * s[i]``, ``b'[o] = b[o] + sum_i,k W[o, i, k] * t[i]``. Exact only for
  convs without padding (a zero-padded border would see ``t`` instead of 0), so padded convs are
  left alone.
* Conv -> BN: scale the conv's output channels, ``W'[o] = W[o] * s[o]``, ``b'[o] = s[o] * b[o] + t[o]``.

The folded BatchNorm becomes ``nn.Identity``; activations after the convs are unchanged, so
VisualBackProp gives the same masks on the copy. :func:`inference_copy` also makes the ReLUs
that directly follow a convolution inside an ``nn.Sequential`` work in place (the conv's output
has no other reader there), which saves an allocation and a pass over memory per layer.
The original model is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm."""
    s = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
    if bn.weight is not None:
        s = s * bn.weight
    t = -bn.running_mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t


def _conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
    return conv.bias


def _foldable(bn: nn.Module, conv: nn.Module) -> bool:
    return (isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d) and bn.track_running_stats
            and bn.running_var is not None and conv.groups == 1)


@torch.no_grad()
def _fold_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> bool:
    """BN -> Conv into the conv; False when the conv pads (not exact)."""
    pad = conv.padding
    if (pad != "valid") if isinstance(pad, str) else any(p != 0 for p in pad):
        return False
    s, t = _affine(bn)
    bias = _conv_bias(conv)
    bias += (conv.weight * t.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    conv.weight *= s.view(1, -1, 1, 1)
    return True


@torch.no_grad()
def _fold_after(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """Conv -> BN into the conv."""
    s, t = _affine(bn)
    bias = _conv_bias(conv)
    bias.mul_(s).add_(t)
    conv.weight *= s.view(-1, 1, 1, 1)
    return True


def _fold_sequential(seq: nn.Sequential) -> int:
    """Fold adjacent (BN, Conv) / (Conv, BN) pairs among a Sequential's direct children."""
    names, folded = list(seq._modules), 0
    for a, b in zip(names, names[1:], strict=False):
        ma, mb = seq._modules[a], seq._modules[b]
        if _foldable(ma, mb) and _fold_before(ma, mb):
            seq._modules[a] = nn.Identity()
        elif _foldable(mb, ma) and _fold_after(ma, mb):
            seq._modules[b] = nn.Identity()
        else:
            continue
        folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with BatchNorms folded into adjacent convs.

    Pairs are found among the direct children of every ``nn.Sequential`` (the registered nets
    are built that way); anything else is left as it is.

    Returns:
        (the copy, the number of BatchNorm layers folded).
    """
    folded_model = copy.deepcopy(model).eval()
    n = sum(_fold_sequential(m) for m in folded_model.modules() if isinstance(m, nn.Sequential))
    for attr in ("model_name", "model_args"):
        if hasattr(model, attr):
            setattr(folded_model, attr, getattr(model, attr))
    return folded_model, n


def _inplace_after_conv(seq: nn.Sequential) -> int:
    """Make ReLUs that directly follow a Conv2d in place."""
    kids, n = list(seq.children()), 0
    for prev, act in zip(kids, kids[1:], strict=False):
        if isinstance(act, (nn.ReLU, nn.ReLU6, nn.LeakyReLU)) and isinstance(prev, nn.Conv2d) and not act.inplace:
            act.inplace = True
            n += 1
    return n


def inference_copy(
    model: nn.Module, fold_bn: bool = True, inplace_relu: bool = True
) -> tuple[nn.Module, dict[str, int]]:
    """An eval-mode copy for fast inference: same outputs (and VisualBackProp masks) up to float rounding.

    Args:
        model: the network (left untouched).
        fold_bn: fold BatchNorms into adjacent convs (:func:`fold_batchnorm`).
        inplace_relu: make ReLUs right after a conv (inside an ``nn.Sequential``) in place.

    Returns:
        (the copy, counts ``{"bn_folded": .., "relu_inplace": ..}``).
    """
    if fold_bn:
        copy_, folded = fold_batchnorm(model)
    else:
        copy_, folded = copy.deepcopy(model).eval(), 0
    seqs = [m for m in copy_.modules() if isinstance(m, nn.Sequential)]
    inplace = sum(_inplace_after_conv(m) for m in seqs) if inplace_relu else 0
    return copy_, {"bn_folded": folded, "relu_inplace": inplace}
