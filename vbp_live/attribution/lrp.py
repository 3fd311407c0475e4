"""ε-LRP (Bach et al. 2015) as the paper uses it for comparison (ε = 100).

For a linear layer ``z = W a + b`` the ε-rule redistributes the relevance of its outputs as
``R_in = a ⊙ Wᵀ (R_out / (z + ε·sign(z)))``. Written with ``c = R / a`` ("relevance per unit
activation") this is the ordinary backward pass with the gradient arriving at ``z`` scaled by
``z / (z + ε·sign(z))``; the input relevance is ``x ⊙ c``. So the whole method is one forward
and one backward pass with a tensor hook on each linear layer's output:

* ``nn.Conv2d`` / ``nn.Linear``: ε-rule (the hook above);
* BatchNorm (``bn="fold"``, default, as zennit does): folded into the adjacent conv/linear
  layer: a BN feeding a conv/linear layer (our nets: BN comes *before* each conv) just passes
  the gradient, which is exactly the ε-rule of the folded affine layer ``conv ∘ BN``; a BN fed
  by a conv/linear layer takes over that layer's ε hook (``BN ∘ conv``). A BN next to neither
  falls back to its own ε-rule (logged). ``bn="epsilon"`` gives every BN its own ε-rule (as
  Captum's LRP with ``EpsilonRule`` on ``BatchNorm2d`` does);
* ReLU and other activations, pooling, flatten/reshape: pass the gradient (ReLU: relevance
  passes unchanged; max-pooling: winner takes all; average pooling: exactly the z-rule);
* a final ``Softmax`` / ``LogSoftmax`` (whose output is the model output) is skipped: LRP
  explains the logit.

Relevance is signed (positive = pushes the explained output up); conservation:
``Σ R_input = y`` for bias-free nets as ε → 0 (the biases and ε absorb the rest otherwise).
Default sign convention ``"output"``: evidence for the predicted direction is positive.

Scale: with ε = 100 every layer divides the relevance by roughly ε / |z|, so on a 13-layer
steering net the relevance reaching the input is far below what float32 can hold (it
underflows to exactly zero). On plain chains (every layer consumes the previous layer's
output, as in the paper's nets) the backward signal is therefore rescaled per sample at each
ε layer and the scales are kept in float64. ``attribute()`` returns the map divided by its
largest absolute value per sample (``raw=False``, default: the exact shape, in [-1, 1]) or
the conserved relevance itself (``raw=True``; it may still underflow in float32 with a large
ε: use a float64 model and input for exact values).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from vbp_live.attribution.base import Attribution, check_input, output_dtype, register_method
from vbp_live.attribution.capture import module_hooks, trace_leaf_calls
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
LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
SOFTMAX = (nn.Softmax, nn.LogSoftmax)


@dataclass
class LRPPlan:
    """Which modules get an ε hook on their output, and the final softmax to skip (if any)."""

    epsilon_modules: list[nn.Module]
    final_softmax: nn.Module | None
    chain: bool = False  # every call consumes the previous call's output: safe to rescale


def plan_lrp(model: nn.Module, x: torch.Tensor, bn: str = "fold") -> LRPPlan:
    """Decide where the ε-rule applies (see the module docstring) from one traced forward."""
    if bn not in ("fold", "epsilon"):
        raise ValueError(f"bn must be 'fold' or 'epsilon', got {bn!r}")
    traced, out = trace_leaf_calls(model, x)  # the records keep the tensors alive: ids stay unique
    calls = [(c.module, id(c.inputs[0]), id(c.output)) for c in traced
             if c.inputs and isinstance(c.inputs[0], torch.Tensor) and isinstance(c.output, torch.Tensor)]
    out_id = id(out)
    producer = {o: m for m, _, o in calls}
    consumers: dict[int, list[nn.Module]] = {}
    for m, i, _ in calls:
        consumers.setdefault(i, []).append(m)
    eps = {id(m): m for m, _, _ in calls if isinstance(m, LINEAR)}
    for m, i, o in calls:
        if not isinstance(m, NORMS):
            continue
        if bn == "epsilon":
            eps[id(m)] = m
        elif any(isinstance(c, LINEAR) for c in consumers.get(o, [])):
            continue  # BN -> conv: folded into the following layer, the gradient passes
        elif isinstance(producer.get(i), LINEAR):
            eps.pop(id(producer[i]), None)  # conv -> BN: the folded layer's output is the BN's
            eps[id(m)] = m
        else:
            log.warning("LRP: BatchNorm %s is next to no conv/linear layer; it gets its own ε-rule", type(m).__name__)
            eps[id(m)] = m
    last = producer.get(out_id)
    chain = bool(calls) and calls[-1][2] == out_id and calls[0][1] == id(x) and all(
        calls[k][1] == calls[k - 1][2] for k in range(1, len(calls)))
    return LRPPlan(list(eps.values()), last if isinstance(last, SOFTMAX) else None, chain)


def _rescaled(g: torch.Tensor, log_scales: list[torch.Tensor]) -> torch.Tensor:
    """Divide each sample's backward signal by its largest magnitude; remember log(scale) in float64."""
    peak = g.detach().abs().flatten(1).amax(1).double()  # (B,)
    scale = torch.where(peak > 0, 1.0 / peak.clamp_min(1e-30), torch.ones_like(peak))  # stays finite in float32
    log_scales.append(scale.log())
    return g * scale.to(g.dtype).view(-1, *([1] * (g.ndim - 1)))


@contextlib.contextmanager
def lrp_hooks(plan: LRPPlan, epsilon: float, log_scales: list[torch.Tensor] | None = None) -> Iterator[None]:
    """While active, the gradient reaching each planned layer's output is scaled by z/(z+ε·sign z).

    With ``log_scales`` (a list; plain chains only), each such signal is also rescaled per sample
    (see the module docstring) and the natural logs of the scales are appended to the list.
    """

    def eps_rule(m: nn.Module, z: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        stab = z.detach() + epsilon * torch.where(z.detach() < 0, -1.0, 1.0).to(z.dtype)
        factor = torch.where(stab != 0, z.detach() / stab, 0.0)  # computed now: later in-place ops can't change it
        if log_scales is None:
            return lambda g: g * factor
        return lambda g: _rescaled(g * factor, log_scales)

    def skip_softmax(m: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        return inputs[0]

    skip = [(plan.final_softmax, skip_softmax)] if plan.final_softmax is not None else []
    with module_hooks(forward=skip, output_grad=[(m, eps_rule) for m in plan.epsilon_modules]):
        yield


@register_method("lrp")
class EpsilonLRP(Attribution):
    """ε-LRP with BatchNorm folding; one forward + one backward pass per batch.

    Args:
        model: the network (mode, weights, flags, buffers, RNG untouched; no hooks left).
        epsilon: the stabilizer ε (the paper compares with ε = 100).
        bn: ``"fold"`` (BN folded into the adjacent conv, default) or ``"epsilon"``.
        sign: default sign convention (``"output"``: evidence for the predicted direction > 0).
    """

    def __init__(self, model: nn.Module, epsilon: float = 100.0, bn: str = "fold", sign: str = "output"):
        super().__init__(model)
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if bn not in ("fold", "epsilon"):
            raise ValueError(f"bn must be 'fold' or 'epsilon', got {bn!r}")
        self.epsilon, self.bn, self.sign = float(epsilon), bn, check_sign(sign)
        self._plan: LRPPlan | None = None

    def plan(self, x: torch.Tensor) -> LRPPlan:
        """The layer plan (traced on first use with ``x[:1]``)."""
        if self._plan is None:
            with torch.inference_mode(False):
                self._plan = plan_lrp(self.model, x[:1].clone(), self.bn)
        return self._plan

    def attribute(self, x: torch.Tensor, target: Target = None, sign: str | None = None,
                  raw: bool = False) -> torch.Tensor:
        """Relevance map (B, 1, H, W): channels summed, then the sign convention.

        Args:
            x: (B, C, H, W) input.
            target: class index for nets with several outputs (None = predicted class).
            sign: override the sign convention (``"raw"`` keeps the signed relevance).
            raw: return the conserved relevance itself instead of the map divided by its
                per-sample maximum magnitude (see the module docstring on float32 underflow).
        """
        check_input(x)
        sign = check_sign(sign or self.sign)
        plan = self.plan(x)
        log_scales: list[torch.Tensor] | None = [] if plan.chain else None
        with autograd_session(self.model) as session:
            xg = session.input(x)  # (B, C, H, W)
            with lrp_hooks(plan, self.epsilon, log_scales):
                y = explained_output(self.model(xg), target)  # (B,)
                grad = input_gradient(y, xg)  # (B, C, H, W): relevance per unit input, rescaled
        relevance = channel_sum(xg.detach() * grad)  # (B, 1, H, W)
        if raw and log_scales:
            undo = torch.exp(-torch.stack(log_scales).sum(0))  # (B,) float64
            relevance = (relevance.double() * undo.view(-1, 1, 1, 1)).to(relevance.dtype)
        elif not raw:
            peak = relevance.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
            relevance = torch.where(peak > 0, relevance / peak.clamp_min(torch.finfo(relevance.dtype).tiny), relevance)
        return apply_sign(relevance, y, sign).to(output_dtype(x))
