"""VisualBackProp (Bojarski et al., arXiv 1611.05418), fast path.

Per forward pass, each stage's post-activation map is reduced over channels *as it is
produced* (one (B, 1, h, w) map kept per layer, nothing large stays alive, in-place layers
cannot corrupt it). Then, from the deepest map, the mask is scaled up with the ones-kernel
transposed geometry of each conv/pool and multiplied by the next shallower averaged map, down
to the input; one min-max per image at the end. On the CPU that pass runs in one call of the
compiled kernel (:mod:`.native`, which takes channel sums and applies the 1/C itself);
otherwise as torch ops (strided box sums, :mod:`.ones_kernel`, on channel means).
``VisualBackPropReference`` (:mod:`.vbp_reference`) is the slow version that reads like the
paper; tests prove every path agrees with it.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from vbp_live.attribution.base import Attribution, check_input, output_dtype, preserved_state, register_method
from vbp_live.attribution import native
from vbp_live.attribution.capture import ConvChain, StageCapture, trace_conv_chain
from vbp_live.attribution.ones_kernel import minmax_normalize, ones_transpose2d


@dataclass
class VBPResult:
    """Everything one VisualBackProp pass produces.

    Attributes:
        mask: (B, 1, H, W), in [0, 1] unless computed raw.
        output: the model's output for the same forward pass.
        maps: averaged post-activation maps per stage, shallow to deep, each (B, 1, h_k, w_k)
            (empty unless asked for).
        masks: intermediate masks per stage (the map times everything deeper, scaled up),
            shallow to deep, each (B, 1, h_k, w_k) (the paper's Figure 2b; empty unless asked for).
    """

    mask: torch.Tensor
    output: torch.Tensor | None = None
    maps: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)


class ChainAttribution(Attribution):
    """Shared plumbing for methods that run on a traced :class:`ConvChain`."""

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module | str] | None = None):
        super().__init__(model)
        self.layers = layers
        self._chain: ConvChain | None = None
        self._trace_lock = threading.Lock()

    def chain(self, x: torch.Tensor) -> ConvChain:
        """The traced chain (traced on first use with ``x[:1]``)."""
        if self._chain is None:
            with self._trace_lock:
                if self._chain is None:
                    with preserved_state(self.model):
                        self._chain = trace_conv_chain(self.model, x[:1], self.layers)
        return self._chain

    def forward_capture(self, x: torch.Tensor, reduce_one, relu_reduce=None) -> tuple[torch.Tensor, list]:
        """Run the model once with stage taps; returns (output, reduced stage outputs).

        ``reduce_one(t)`` reduces a stage output; ``relu_reduce(x, inplace)``, if given, may
        replace a plain ``nn.ReLU`` stage by returning ``(relu output, reduced)`` (or None).
        """
        chain = self.chain(x)
        slots: list = [None] * len(chain.stages)

        def reduce(i: int, t: torch.Tensor) -> None:
            slots[i] = reduce_one(t)

        def relu(i: int, t: torch.Tensor, inplace: bool) -> torch.Tensor | None:
            res = relu_reduce(t, inplace)
            if res is None:
                return None
            slots[i] = res[1]
            return res[0]

        capture = StageCapture(chain, reduce, relu if relu_reduce is not None else None)
        grad_off = contextlib.nullcontext() if torch.is_inference_mode_enabled() else torch.no_grad()
        with preserved_state(self.model), grad_off, capture.hooked():
            out = self.model(x)
        if capture.seen != len(chain.stages):
            raise RuntimeError(
                f"the forward pass produced {capture.seen} of the {len(chain.stages)} traced maps; "
                "the model's control flow changed since it was traced: create a new attribution object"
            )
        return out, slots


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 maps as float32 (they would underflow in the products); others as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Average over channels in at least float32.

    For contiguous NCHW maps this is a (1, C) x (C, h*w) product per image: one streaming read
    of the activation through BLAS, measurably faster on CPU than ``mean(dim=1)``.
    """
    t = _at_least_float32(t)
    b, c, h, w = t.shape
    if not t.is_contiguous() or c == 1:
        return t.mean(dim=1, keepdim=True)  # (B, 1, h, w); e.g. channels_last maps
    weights = torch.full((1, c), 1.0 / c, dtype=t.dtype, device=t.device)  # (1, C)
    return torch.matmul(weights, t.view(b, c, h * w)).view(b, 1, h, w)


def _relu_channel_sum(t: torch.Tensor, inplace: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, int]] | None:
    """A plain ReLU stage in one compiled pass: ``(relu output, (channel sum, C))``, or None."""
    res = native.relu_channel_sum(t, inplace)
    return None if res is None else (res[0], (res[1], t.shape[1]))


def _channel_sum(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Channel sum in at least float32 and the channel count: ``(sum (B, 1, h, w), C)``.

    The compiled CPU pass takes sums and applies 1/C as it reads each map, which saves the
    division pass (``sum`` is also the fastest reduction for one image on CPU).
    """
    t = _at_least_float32(t)
    return t.sum(dim=1, keepdim=True), t.shape[1]  # (B, 1, h, w), C


@register_method("vbp")
class VisualBackProp(ChainAttribution):
    """VisualBackProp on any conv -> ReLU-family chain, found automatically.

    Args:
        model: the network. Its mode, weights, buffers and RNG state are never changed.
        layers: optional explicit stage modules or names (see :func:`trace_conv_chain`).
        compiled: on CPU, run the pass after the forward in the compiled kernel (:mod:`.native`):
            None (default) when it can be built, False never (pure torch), True always (an error
            if it cannot be built). It is used for float32 maps without ``return_maps``.

    Example:
        >>> vbp = VisualBackProp(create_model("netsvf").eval())
        >>> mask = vbp.attribute(x)   # (B, 1, 125, 640) in [0, 1]
    """

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module | str] | None = None, compiled: bool | None = None):
        super().__init__(model, layers)
        self.compiled = compiled
        self._plans: dict[tuple, native.NativePlan] = {}  # by input and map sizes
        self._checked: dict[tuple, native.NativePlan] = {}  # by input size and full map shapes

    def attribute(self, x: torch.Tensor, raw: bool = False, return_maps: bool = False) -> torch.Tensor | VBPResult:
        """VisualBackProp mask for a batch.

        Args:
            x: (B, C, H, W) input.
            raw: skip the final per-image min-max (the unnormalized product of the paper).
            return_maps: return a :class:`VBPResult` with the averaged maps and intermediate masks.

        Returns:
            (B, 1, H, W) tensor on x's device in x's floating dtype, or a :class:`VBPResult`.
        """
        res = self.run(x, raw=raw, keep_maps=return_maps)
        return res if return_maps else res.mask

    def run(self, x: torch.Tensor, raw: bool = False, keep_maps: bool = False) -> VBPResult:
        """One forward pass + VisualBackProp: the model output and the mask together.

        On the CPU (float32 maps) each map is reduced to its channel *sum* as it is produced (a
        plain ``nn.ReLU`` stage computes its output and that sum in one compiled pass) and the
        whole deep-to-shallow pass runs in the compiled kernel (:mod:`.native`), which applies the
        1/C of the means as it reads each map; elsewhere, or with ``keep_maps``, the torch path.
        """
        check_input(x)
        compiled = not keep_maps and self._compiled_on(x.device)
        if compiled:
            out, reduced = self.forward_capture(x, _channel_sum, _relu_channel_sum)
        else:
            out, reduced = self.forward_capture(x, _channel_mean)
        mask, maps, masks = self.mask_from_reduced(reduced, tuple(x.shape[-2:]), raw, keep_maps)
        return VBPResult(mask.to(output_dtype(x)), out, maps, masks)

    def mask_from_reduced(
        self, reduced: list, in_hw: tuple[int, int], raw: bool = False, keep_maps: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The pass after the forward: reduced maps -> (mask, maps if kept, intermediate masks if kept).

        ``reduced`` holds, per stage, either averaged maps (B, 1, h, w) or ``(channel sum, C)``
        pairs from :func:`_channel_sum`; the latter go through the compiled kernel when it can
        take them (float32, contiguous).
        """
        if reduced and isinstance(reduced[0], tuple):
            sums = [s for s, _ in reduced]
            plan = self._checked_plan(in_hw, sums)
            if plan is not None:
                scales = [1.0 / c for _, c in reduced]
                return native.backprop(plan, sums, scales, normalize=not raw, checked=True), [], []
            reduced = [s / c for s, c in reduced]  # e.g. a float64 model: the torch path takes means
        mask, masks = backprop_masks(self._chain, reduced, in_hw, keep_maps)
        mask = mask if raw else minmax_normalize(mask)
        return mask, (reduced if keep_maps else []), masks

    def reduce_activations(self, acts: Sequence[torch.Tensor]) -> list:
        """Reduce captured post-activation maps exactly as :meth:`run`'s hooks do on this device."""
        compiled = bool(acts) and self._compiled_on(acts[0].device)
        return [(_channel_sum if compiled else _channel_mean)(a) for a in acts]

    def _compiled_on(self, device: torch.device) -> bool:
        if self.compiled is False or device.type != "cpu":
            return False
        if native.library() is None:
            if self.compiled:
                raise RuntimeError(f"compiled=True, but the compiled CPU kernel is unavailable: {native.unavailable_reason()}")
            return False
        return True

    def _checked_plan(self, in_hw: tuple[int, int], sums: list[torch.Tensor]) -> native.NativePlan | None:
        """The plan for these exact map shapes if the compiled kernel can take the maps, else None.

        Runs once per frame, so it is lean: the maps' layout is checked every call (contiguous
        float32 CPU tensors), their shapes once per distinct set of full shapes, which then
        becomes the cache key (several batch sizes share one plan).
        """
        if not native.readable_all(sums):
            return None
        key = (in_hw, *[m.shape for m in sums])  # full (B, 1, h, w) shapes
        plan = self._checked.get(key)
        if plan is None:
            if native.library() is None:
                return None
            plan = self.native_plan(in_hw, sums)
            native.check_maps(plan, sums)  # raises if the shapes do not fit the plan
            self._checked[key] = plan
        return plan

    def native_plan(self, in_hw: tuple[int, int], maps: Sequence[torch.Tensor]) -> native.NativePlan:
        """The compiled kernel's step list for this input and these map sizes (built once, then reused)."""
        key = (in_hw, *(tuple(m.shape[-2:]) for m in maps))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = native.build_plan(self._chain, in_hw, list(key[1:]))
        return plan

    def output_paddings(self, x: torch.Tensor) -> list[list[tuple[int, int]]]:
        """Per stage, per spatial op (forward order): the output_padding its inverse needs for ``x``."""
        chain = self.chain(x)
        _, maps = self.forward_capture(x[:1], lambda t: tuple(t.shape[-2:]))
        result = []
        for k, st in enumerate(chain.stages):
            base = tuple(x.shape[-2:]) if k == 0 else maps[k - 1]
            ins = chain.op_inputs(k, base, maps[k])
            outs = ins[1:] + [maps[k]]
            result.append([op.geometry.output_padding(i, o) for op, i, o in zip(st.ops, ins, outs)])
        return result


def backprop_masks(
    chain: ConvChain, maps: list[torch.Tensor], in_hw: tuple[int, int], keep: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """From the deepest averaged map down to the input: scale up (ones kernel), multiply.

    Returns the input-sized raw mask (B, 1, H, W) and, if ``keep``, the intermediate masks
    shallow to deep.
    """
    mask = maps[-1]  # (B, 1, h_L, w_L)
    masks = [mask] if keep else []
    for k, op, _, target, last in chain.walk_back(in_hw, [tuple(m.shape[-2:]) for m in maps]):
        mask = ones_transpose2d(mask, op.geometry, target)  # (B, 1, *target)
        if last and k > 0:
            mask = mask * maps[k - 1]  # (B, 1, h_{k-1}, w_{k-1})
            if keep:
                masks.append(mask)
    return mask, masks[::-1]
