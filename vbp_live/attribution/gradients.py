"""Saliency (plain gradient), DeconvNet and guided backpropagation (seed 002, Nie et al.).

The three differ only in how the backward pass goes through each ReLU with input ``y`` and
upstream gradient ``R``:

* ``saliency``: pass R where y > 0 (the true gradient; Simonyan et al.);
* ``deconvnet``: pass R where R > 0, ignoring y (Zeiler & Fergus);
* ``gbp``: pass R where y > 0 and R > 0 (Springenberg et al.).

The map is the input gradient summed over channels, then a sign convention
(:mod:`.grad_common`; default ``"abs"``). Only ``nn.ReLU`` *modules* get the DeconvNet / GBP
rule (a functional ``F.relu`` cannot be seen; other activations keep their gradient), as in
Captum. In-place and reused ReLU modules are handled: each call is rewired separately and the
module's own in-place op runs on a detached copy, so the graph is never corrupted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vbp_live.attribution.base import Attribution, check_input, output_dtype, register_method
from vbp_live.attribution.capture import module_hooks
from vbp_live.attribution.grad_common import (
    Target,
    apply_sign,
    autograd_session,
    channel_sum,
    check_sign,
    explained_output,
    input_gradient,
)

log = logging.getLogger(__name__)
RELU_RULES = ("gradient", "deconvnet", "guided")


class _RuleReLU(torch.autograd.Function):
    """ReLU forward; backward by the DeconvNet or guided rule instead of the gradient."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, rule: str) -> torch.Tensor:  # type: ignore[override]
        out = pre.clamp(min=0)
        ctx.rule = rule
        if rule == "guided":
            ctx.save_for_backward(out > 0)  # a new tensor: later in-place ops cannot touch it
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        passed = grad.clamp(min=0)  # backward ReLU: R > 0
        if ctx.rule == "guided":
            (forward_mask,) = ctx.saved_tensors
            passed = passed * forward_mask  # and forward ReLU: y > 0
        return passed, None


@contextlib.contextmanager
def relu_rules(model: nn.Module, rule: str) -> Iterator[int]:
    """While active, every ``nn.ReLU`` module of ``model`` back-propagates by ``rule``.

    Yields the number of ReLU modules rewired. The hooks (:func:`~.capture.module_hooks`) act on
    this thread's calls only and are removed on exit.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU rule {rule!r}; use one of {', '.join(RELU_RULES)}")
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if rule == "gradient" or not relus:
        yield len(relus)
        return
    pending: dict[int, list[torch.Tensor]] = {}

    def pre_hook(m: nn.Module, inputs: tuple) -> tuple:
        pending.setdefault(id(m), []).append(inputs[0])
        detached = inputs[0].detach()
        return (detached.clone() if m.inplace else detached,) + tuple(inputs[1:])

    def post_hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        return _RuleReLU.apply(pending[id(m)].pop(), rule)

    with module_hooks(pre=[(m, pre_hook) for m in relus], forward=[(m, post_hook) for m in relus]):
        yield len(relus)


class GradientAttribution(Attribution):
    """Input gradient with a ReLU rule; one map per sample.

    Args:
        model: any differentiable network; mode, weights, ``requires_grad`` flags, buffers and
            RNG state are left as they were, and no hooks remain.
        sign: default sign convention (``"raw"``, ``"abs"``, ``"positive"``, ``"output"``).
    """

    relu_rule = "gradient"
    default_sign = "abs"

    def __init__(self, model: nn.Module, sign: str | None = None):
        super().__init__(model)
        self.sign = check_sign(sign or self.default_sign)

    def attribute(self, x: torch.Tensor, target: Target = None, sign: str | None = None) -> torch.Tensor:
        """Map (B, 1, H, W) for input ``x`` (B, C, H, W).

        Args:
            x: the input batch (any grad mode; inference mode works too).
            target: class index (int or one per sample) for nets with several outputs;
                ``None`` = the predicted class. Regression nets explain their own output.
            sign: override the sign convention for this call.
        """
        check_input(x)
        sign = check_sign(sign or self.sign)
        with autograd_session(self.model) as session:
            xg = session.input(x)  # (B, C, H, W), requires grad
            with relu_rules(self.model, self.relu_rule) as n_relu:
                y = explained_output(self.model(xg), target)  # (B,)
            grad = input_gradient(y, xg)  # (B, C, H, W)
        if n_relu == 0 and self.relu_rule != "gradient":
            log.warning("%s: the model has no nn.ReLU modules, so the result is the plain gradient", self.name)
        return apply_sign(channel_sum(grad), y, sign).to(output_dtype(x))  # (B, 1, H, W)


@register_method("saliency")
class Saliency(GradientAttribution):
    """Saliency map: the plain input gradient (ReLU passes R where y > 0); default ``|grad|``."""

    relu_rule = "gradient"


@register_method("deconvnet")
class DeconvNet(GradientAttribution):
    """DeconvNet: through each ReLU module pass R where R > 0 (ignores the forward input)."""

    relu_rule = "deconvnet"


@register_method("gbp")
class GuidedBackprop(GradientAttribution):
    """Guided backpropagation: through each ReLU module pass R where y > 0 and R > 0."""

    relu_rule = "guided"
