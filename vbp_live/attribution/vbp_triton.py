"""Fused VisualBackProp: the same traced chain and hooks, Triton kernels for the arithmetic.

Forward hooks fire shallow -> deep, but the mask travels deep -> shallow, so the pass is split
where the data allows it:

1. in each stage hook, one Triton reduction reads the fresh post-activation map once and keeps
   only its float32 channel mean ``(B, 1, h, w)`` (:func:`~.triton_kernels.channel_mean`);
2. after the forward pass, one Triton kernel per spatial op walks deep -> shallow on the small
   maps: gather-form ones-kernel upsampling fused with the product by the next shallower mean
   (:func:`~.triton_kernels.ones_gather`), then one per-image min-max.

So every activation byte is read exactly once, and the rest touches only single-channel maps.
On CUDA the kernels run compiled (and :mod:`.cuda_graph` captures forward + pass as one graph);
on CPU tensors they run through Triton's interpreter when ``TRITON_INTERPRET=1`` was set before
triton was imported (for tests; slow).
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from vbp_live.attribution.base import check_input, output_dtype, register_method
from vbp_live.attribution.capture import ConvChain
from vbp_live.attribution.ones_kernel import minmax_normalize
from vbp_live.attribution.vbp import VBPMaps, VisualBackProp


class FusedUnavailableError(RuntimeError):
    """Triton is missing, or the tensor is on a device the kernels cannot run on."""


def load_kernels() -> ModuleType:
    """Import :mod:`.triton_kernels` (and triton), with a clear error if Triton is missing."""
    try:
        from vbp_live.attribution import triton_kernels
    except ImportError as e:
        raise FusedUnavailableError(
            f"the fused VisualBackProp needs Triton ({e}); install it with `pip install triton` "
            "(it ships with CUDA builds of torch), or use method 'vbp'"
        ) from e
    return triton_kernels


def fused_available(device: torch.device | str) -> tuple[bool, str]:
    """Whether the fused kernels can run on ``device`` here, and if not, why."""
    try:
        kernels = load_kernels()
    except FusedUnavailableError as e:
        return False, str(e)
    if kernels.interpreted() or torch.device(device).type == "cuda":
        return True, ""
    late = os.environ.get("TRITON_INTERPRET") == "1"
    return False, (
        "the fused Triton kernels need a CUDA device; on the CPU they run only through Triton's "
        "interpreter (set TRITON_INTERPRET=1 before triton is imported; for tests, not speed)"
        + (" — TRITON_INTERPRET is set, but triton was imported before it" if late else "")
    )


@register_method("vbp_fused")
class FusedVisualBackProp(VisualBackProp):
    """VisualBackProp with Triton kernels; same calls and results as ``VisualBackProp``.

    Args:
        model: the network. Its mode, weights, buffers and RNG state are never changed.
        layers: optional explicit stage modules or names (see ``trace_conv_chain``).

    Each call raises :class:`FusedUnavailableError` without Triton, or for a CPU tensor without
    Triton's interpreter.

    Example:
        >>> vbp = FusedVisualBackProp(create_model("netsvf").cuda().eval())
        >>> mask = vbp.attribute(x.cuda())   # (B, 1, 125, 640) in [0, 1]
    """

    def _compute(self, x: torch.Tensor, raw: bool, keep: bool) -> VBPMaps:
        """One forward pass with Triton channel means, then the fused deep -> shallow pass."""
        check_input(x)
        ok, why = fused_available(x.device)
        if not ok:
            raise FusedUnavailableError(why)
        kernels = load_kernels()
        out, maps = self.forward_capture(x, kernels.channel_mean)  # maps: (B, 1, h_k, w_k) float32
        mask, masks = fused_backprop(kernels, self.chain(x), maps, tuple(x.shape[-2:]), keep)
        mask = mask if raw else minmax_normalize(mask)
        return VBPMaps(out, mask.to(output_dtype(x)), maps if keep else [], masks)


def fused_backprop(
    kernels: ModuleType, chain: ConvChain, maps: list[torch.Tensor], in_hw: tuple[int, int], keep: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Deep -> shallow: one gather kernel per spatial op, the last one of a stage fused with the product.

    Returns the input-sized raw mask (B, 1, H, W) and, if ``keep``, the intermediate masks shallow
    to deep (as ``vbp.backprop_masks``).
    """
    mask = maps[-1]  # (B, 1, h_L, w_L)
    masks = [mask] if keep else []
    for k, op, _, target, last in chain.walk_back(in_hw, [tuple(m.shape[-2:]) for m in maps]):
        mul = maps[k - 1] if (last and k > 0) else None
        mask = kernels.ones_gather(mask, op.geometry, target, mul)  # (B, 1, *target)
        if mul is not None and keep:
            masks.append(mask)
    return chain.uncrop(mask), masks[::-1]  # (B, 1, H, W)
