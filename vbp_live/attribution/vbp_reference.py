"""Slow reference VisualBackProp that reads like the paper (Section 3, Figure 2).

It keeps every post-activation map (cloned), averages each over channels, then walks from the
deepest layer to the input with a real ``nn.ConvTranspose2d`` whose weights are all ones and
whose kernel, stride, padding and dilation equal the layer's (``output_padding`` from the
shapes seen), multiplying by the next shallower averaged map. Computed in float64. It exists to
check the fast paths, not to be used per frame.
"""

from __future__ import annotations

import torch
from torch import nn

from vbp_live.attribution.base import check_input, output_dtype, register_method
from vbp_live.attribution.capture import SpatialOp
from vbp_live.attribution.vbp import VBPMaps, VisualBackProp


def ones_deconv(op: SpatialOp, n: tuple[int, int], target: tuple[int, int]) -> nn.ConvTranspose2d:
    """A 1->1 channel ConvTranspose2d with all-ones weights that takes ``n`` back to ``target``."""
    g = op.geometry
    adj = tuple(max(a, 0) for a in g.output_padding(target, n))  # negative (ceil-mode pools): crop below
    deconv = nn.utils.skip_init(  # no random init: building it must not touch the RNG
        nn.ConvTranspose2d, 1, 1, g.kernel, g.stride, g.padding, output_padding=adj, dilation=g.dilation, bias=False
    )
    nn.init.ones_(deconv.weight)
    return deconv.double()


@register_method("vbp_reference")
class VisualBackPropReference(VisualBackProp):
    """Reference VisualBackProp: same calls and results as :class:`~vbp_live.attribution.vbp.VisualBackProp`."""

    def _compute(self, x: torch.Tensor, raw: bool, keep: bool) -> VBPMaps:
        """The paper's steps in float64 (always keeps the maps; ``keep`` is for the fast paths)."""
        check_input(x)
        out, activations = self.forward_capture(x, lambda t: t.detach().double().clone())
        chain = self.chain(x)
        with torch.no_grad():
            averaged = [a.mean(dim=1, keepdim=True) for a in activations]  # step 2: (B, 1, h, w) each
            mask, masks = averaged[-1], [averaged[-1]]  # step 3 starts at the deepest layer
            for k in reversed(range(len(averaged))):
                base = chain.first_hw(tuple(x.shape[-2:])) if k == 0 else tuple(averaged[k - 1].shape[-2:])
                targets = chain.op_inputs(k, base, tuple(mask.shape[-2:]))
                for op, target in zip(reversed(chain.stages[k].ops), reversed(targets), strict=True):
                    deconv = ones_deconv(op, tuple(mask.shape[-2:]), target).to(mask.device)
                    mask = deconv(mask)[:, :, : target[0], : target[1]]  # scale up
                if k > 0:
                    mask = mask * averaged[k - 1]  # step 4: pointwise product
                    masks.insert(0, mask)
            mask = chain.uncrop(mask)  # a crop before the first conv: the cropped-away pixels get 0
            if not raw:  # step 5: one min-max per image
                lo = mask.amin(dim=(1, 2, 3), keepdim=True)
                hi = mask.amax(dim=(1, 2, 3), keepdim=True)
                mask = torch.where(hi > lo, (mask - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(mask))
        return VBPMaps(out, mask.to(output_dtype(x)), averaged, masks)
