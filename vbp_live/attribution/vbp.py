"""VisualBackProp (Bojarski et al., arXiv 1611.05418), fast path.

One forward pass with forward hooks on the traced stage modules (:class:`.capture.StageCapture`):
each post-activation map is reduced to its channel mean *as it is produced* (one (B, 1, h, w)
map kept per layer, nothing large stays alive, in-place layers cannot corrupt it). Then
:func:`backprop_masks` walks from the deepest map to the input: scale the mask up with the
ones-kernel transposed geometry of each conv/pool (strided box sums, :mod:`.ones_kernel`) and
multiply it by the next shallower averaged map; one min-max per image at the end.
``VisualBackPropReference`` (:mod:`.vbp_reference`) is the slow version that reads like the
paper, ``FusedVisualBackProp`` (:mod:`.vbp_triton`) the same pass in Triton kernels; tests prove
every path agrees with the reference.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from vbp_live.attribution.base import (
    Attribution,
    AttributionResult,
    check_input,
    output_dtype,
    preserved_state,
    register_method,
)
from vbp_live.attribution.capture import ConvChain, StageCapture, trace_conv_chain
from vbp_live.attribution.ones_kernel import minmax_normalize, ones_transpose2d


@dataclass
class VBPMaps(AttributionResult):
    """A VisualBackProp pass with its per-layer maps (the paper's Figure 2b).

    Attributes:
        output: the model's output for the same forward pass.
        mask: (B, 1, H, W), in [0, 1] unless computed raw.
        maps: averaged post-activation maps per stage, shallow to deep, each (B, 1, h_k, w_k).
        masks: intermediate masks per stage (the map times everything deeper, scaled up),
            shallow to deep, each (B, 1, h_k, w_k).
    """

    maps: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)


class ChainAttribution(Attribution):
    """Methods on a traced :class:`ConvChain`: the chain (traced once) and the stage capture."""

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module | str] | None = None, positive: bool = False):
        super().__init__(model)
        self.layers, self.positive = layers, positive
        self._chain: ConvChain | None = None
        self._trace_lock = threading.Lock()

    def chain(self, x: torch.Tensor) -> ConvChain:
        """The traced chain (traced on first use with ``x[:1]``)."""
        if self._chain is None:
            with self._trace_lock:
                if self._chain is None:
                    self._chain = trace_conv_chain(self.model, x[:1], self.layers, self.positive)
        return self._chain

    def forward_capture(self, x: torch.Tensor, reduce: Callable[[torch.Tensor], object]) -> tuple[torch.Tensor, list]:
        """Run the model once without gradients; returns its output and ``reduce(map)`` per stage, shallow to deep."""
        chain = self.chain(x)
        reduced: list = [None] * len(chain.stages)

        def keep(k: int, t: torch.Tensor) -> None:
            reduced[k] = reduce(t)

        capture = StageCapture(chain, keep)
        grad_off = contextlib.nullcontext() if torch.is_inference_mode_enabled() else torch.no_grad()
        with preserved_state(self.model), grad_off, capture.hooked():
            out = self.model(x)
        if capture.seen != len(chain.stages):
            raise RuntimeError(
                f"the forward pass produced {capture.seen} of the {len(chain.stages)} traced maps; "
                "the model's control flow changed since it was traced: create a new attribution object"
            )
        return out, reduced


@register_method("vbp")
class VisualBackProp(ChainAttribution):
    """VisualBackProp on any conv -> ReLU-family chain, found automatically.

    Args:
        model: the network. Its mode, weights, buffers and RNG state are never changed.
        layers: optional explicit stage modules or names (see :func:`trace_conv_chain`).
        positive: average the positive part of signed activations (ELU, LeakyReLU, ...; the paper's
            nets use ReLU, whose maps this leaves as they are). Off: the maps exactly as produced.

    Example:
        >>> vbp = VisualBackProp(create_model("netsvf").eval())
        >>> mask = vbp.attribute(x)   # (B, 1, 125, 640) in [0, 1]
        >>> res = vbp.run(x)          # res.output (B, 1) and res.mask from one forward pass
        >>> figure = vbp.explain(x)   # also the averaged maps and intermediate masks per layer
    """

    def attribute(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """VisualBackProp mask (B, 1, H, W) on x's device in x's floating dtype.

        Args:
            x: (B, C, H, W) input.
            raw: skip the final per-image min-max (the unnormalized product of the paper).
        """
        return self._compute(x, raw, keep=False).mask

    def run(self, x: torch.Tensor, raw: bool = False) -> AttributionResult:
        """The model's output and the mask from one forward pass (arguments as :meth:`attribute`)."""
        res = self._compute(x, raw, keep=False)
        return AttributionResult(res.output, res.mask)

    def explain(self, x: torch.Tensor, raw: bool = False) -> VBPMaps:
        """Output, mask, and per layer the averaged map and the intermediate mask (Figure 2b)."""
        return self._compute(x, raw, keep=True)

    def _compute(self, x: torch.Tensor, raw: bool, keep: bool) -> VBPMaps:
        """Forward with capture, channel means, the pass; ``maps``/``masks`` are filled only if ``keep``."""
        check_input(x)
        out, maps = self.forward_capture(x, channel_mean)  # (B, 1, h_k, w_k) each
        mask, masks = backprop_masks(self.chain(x), maps, tuple(x.shape[-2:]), keep)
        mask = mask if raw else minmax_normalize(mask)
        return VBPMaps(out, mask.to(output_dtype(x)), maps if keep else [], masks)


def channel_mean(t: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 1, h, w): the average over channels, accumulated in at least float32.

    Computed as a channel sum scaled by 1/C on the small result: on CPU ``sum`` reads the map
    faster than ``mean`` does. fp16/bf16 maps are summed in float32 (they would underflow in
    the products that follow).
    """
    dtype = torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype
    return t.sum(dim=1, keepdim=True, dtype=dtype).div_(t.shape[1])  # (B, 1, h, w)


def backprop_masks(
    chain: ConvChain, maps: list[torch.Tensor], in_hw: tuple[int, int], keep: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """From the deepest averaged map down to the input: scale up (ones kernel), multiply.

    Args:
        chain: the traced chain the maps come from.
        maps: averaged maps per stage, shallow to deep, each (B, 1, h_k, w_k).
        in_hw: the input's (H, W).
        keep: also return the intermediate masks.

    Returns:
        The input-sized raw mask (B, 1, H, W) and, if ``keep``, the intermediate masks shallow to
        deep (else an empty list).
    """
    mask = maps[-1]  # (B, 1, h_L, w_L)
    masks = [mask] if keep else []
    for k, op, _, target, last in chain.walk_back(in_hw, [tuple(m.shape[-2:]) for m in maps]):
        mask = ones_transpose2d(mask, op.geometry, target)  # (B, 1, *target), a new tensor
        if last and k > 0:
            mask.mul_(maps[k - 1])  # (B, 1, h_{k-1}, w_{k-1})
            if keep:
                masks.append(mask)
    return chain.uncrop(mask), masks[::-1]  # (B, 1, H, W)
