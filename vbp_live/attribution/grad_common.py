"""Shared plumbing of the gradient-based methods: which output is explained, sign conventions,
and an autograd session that leaves the model exactly as it was.

Explained output:
    a regression net (output (B,) or (B, 1)) explains each sample's own output ``y``; a net
    with K > 1 outputs explains ``out[b, target[b]]`` (``target`` an int, a sequence or a (B,)
    tensor; ``None`` = each sample's predicted class, the argmax).

Sign conventions (``sign=``) for signed maps ``R`` (channels are summed first):
    ``"raw"``: R as computed (positive = pushes the explained output up, e.g. to the left for
    a steering angle); ``"abs"``: |R|; ``"positive"``: max(R, 0); ``"output"``: R * sign(y),
    so evidence *for the predicted direction* is positive whichever way the net steers (the
    steering-appropriate convention; sign(0) counts as +1).

Inference mode:
    gradient methods work when the caller is inside ``torch.inference_mode()``: the session
    leaves inference mode locally and differentiates a clone of the input. Only a model whose
    *parameters* were created in inference mode cannot be differentiated; that raises a clear
    :class:`RuntimeError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from vbp_live.attribution.base import output_dtype, preserved_state

SIGNS = ("raw", "abs", "positive", "output")
Target = int | Sequence[int] | torch.Tensor | None


def check_sign(sign: str) -> str:
    """Return ``sign`` if it is a known convention, else raise a clear ValueError."""
    if sign not in SIGNS:
        raise ValueError(f"unknown sign convention {sign!r}; use one of {', '.join(SIGNS)}")
    return sign


def explained_output(out: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The scalar each sample's map explains: (B,) from a (B,) or (B, K) output."""
    flat = out.reshape(out.shape[0], -1)  # (B, K)
    if flat.shape[1] == 1:
        if target is not None and not _all_zero(target):
            raise ValueError(f"the model has a single output; target must be None or 0, got {target!r}")
        return flat[:, 0]
    if target is None:
        idx = flat.detach().argmax(1)  # (B,)
    else:
        idx = torch.as_tensor(target, device=flat.device, dtype=torch.long).reshape(-1)
        idx = idx.expand(flat.shape[0]) if idx.numel() == 1 else idx
        if idx.numel() != flat.shape[0] or bool(((idx < 0) | (idx >= flat.shape[1])).any()):
            raise ValueError(
                f"target must be one class index in [0, {flat.shape[1]}) or one per sample, got {target!r}")
    return flat.gather(1, idx[:, None])[:, 0]


def resolve_target(out: torch.Tensor, target: Target = None) -> torch.Tensor | None:
    """Fix the explained class per sample from the unperturbed output: None (single output) or (B,) long."""
    flat = out.reshape(out.shape[0], -1)  # (B, K)
    explained_output(out, target)  # validates target
    if flat.shape[1] == 1:
        return None
    if target is None:
        return flat.detach().argmax(1)
    idx = torch.as_tensor(target, device=flat.device, dtype=torch.long).reshape(-1)
    return idx.expand(flat.shape[0]).clone() if idx.numel() == 1 else idx


def _all_zero(target: Target) -> bool:
    return bool((torch.as_tensor(target) == 0).all())


def apply_sign(r: torch.Tensor, y: torch.Tensor, sign: str) -> torch.Tensor:
    """Apply a sign convention to maps ``r`` (B, 1, H, W) explaining outputs ``y`` (B,)."""
    check_sign(sign)
    if sign == "abs":
        return r.abs()
    if sign == "positive":
        return r.clamp(min=0)
    if sign == "output":
        s = torch.where(y.detach() < 0, -1.0, 1.0).to(r.dtype)  # (B,)
        return r * s.view(-1, 1, 1, 1)
    return r


def channel_sum(g: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W): a pixel's relevance is the sum over its channels."""
    return g.sum(dim=1, keepdim=True)


class AutogradSession:
    """What :func:`autograd_session` yields: turns the caller's input into a differentiable leaf."""

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A float clone of ``x`` that requires grad (never the caller's tensor)."""
        return x.detach().to(output_dtype(x)).clone().requires_grad_(True)


@contextlib.contextmanager
def autograd_session(model: nn.Module) -> Iterator[AutogradSession]:
    """Gradients on, inference mode off, parameters frozen, model state restored on exit.

    Parameters get ``requires_grad=False`` for the duration (no parameter gradients are
    computed or accumulated) and their flags are restored in ``finally``; train/eval mode is
    never touched; RNG and buffers are restored by :func:`preserved_state`.
    """
    params = list(model.parameters())
    if any(p.is_inference() for p in params):
        raise RuntimeError(
            "gradient methods can't run on a model whose parameters were created inside "
            "torch.inference_mode(): build or load the model outside inference mode"
        )
    flags = [p.requires_grad for p in params]
    with torch.inference_mode(False), torch.enable_grad(), preserved_state(model):
        try:
            for p in params:
                p.requires_grad_(False)
            yield AutogradSession()
        finally:
            for p, f in zip(params, flags, strict=True):
                p.requires_grad_(f)


def input_gradient(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d(sum of y)/dx: one map per sample (samples are independent in eval mode)."""
    (g,) = torch.autograd.grad(y.sum(), x)
    return g  # (B, C, H, W)
