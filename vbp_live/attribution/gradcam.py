"""Grad-CAM (Selvaraju et al.) on the last conv layer's activation map.

The layer is the deepest stage of the shared conv -> activation tracer
(:func:`~vbp_live.attribution.capture.trace_conv_chain`), captured with its
:class:`~vbp_live.attribution.capture.StageCapture` during a forward pass with gradients on:
``cam = Σ_k α_k A_k`` with ``α_k`` the spatial mean of ``∂y/∂A_k``, upsampled bilinearly to
the input size (as Captum's ``LayerAttribution.interpolate``).

Sign conventions: the original Grad-CAM keeps ``max(cam, 0)`` (``sign="positive"``), i.e.
what pushes the output *up*. For a steering angle that is "evidence for a left turn" whatever
the net predicts, which is why regression maps land on the wrong regions
(pytorch-grad-cam#293). The default ``sign="output"`` uses ``max(sign(y)·cam, 0)``: evidence
for the predicted direction. ``"raw"`` and ``"abs"`` keep or fold the sign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vbp_live.attribution.base import check_input, output_dtype, register_method
from vbp_live.attribution.capture import StageCapture, UnsupportedModelError
from vbp_live.attribution.grad_common import Target, apply_sign, autograd_session, check_sign, explained_output
from vbp_live.attribution.vbp import ChainAttribution


@register_method("gradcam")
class GradCAM(ChainAttribution):
    """Grad-CAM on the deepest conv activation (or on ``layer``).

    Args:
        model: the network (mode, weights, flags, buffers, RNG untouched; no hooks left).
        layer: optional activation module (or its name) to use instead of the deepest one.
        sign: default sign convention (``"output"``, ``"positive"``, ``"abs"`` or ``"raw"``).
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, sign: str = "output"):
        super().__init__(model, layers=[layer] if layer is not None else None)
        self.sign = check_sign(sign)

    def attribute(self, x: torch.Tensor, target: Target = None, sign: str | None = None) -> torch.Tensor:
        """Grad-CAM map (B, 1, H, W), bilinearly upsampled to the input size.

        Args:
            x: (B, C, H, W) input.
            target: class index for nets with several outputs (None = predicted class).
            sign: override the sign convention for this call.
        """
        check_input(x)
        sign = check_sign(sign or self.sign)
        cam, y = self.layer_cam(x, target)  # (B, 1, h, w), (B,)
        if sign in ("positive", "output"):
            cam = apply_sign(cam, y, "output" if sign == "output" else "raw").clamp(min=0)
        else:
            cam = apply_sign(cam, y, sign)
        up = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return up.to(output_dtype(x))  # (B, 1, H, W)

    def layer_cam(self, x: torch.Tensor, target: Target = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed ``Σ_k α_k A_k`` at the layer's resolution (B, 1, h, w) and the explained outputs (B,)."""
        chain = self.chain(x)
        last = len(chain.stages) - 1
        if chain.stages[last].relu:
            raise UnsupportedModelError(
                f"Grad-CAM needs the activation module after {chain.stages[last].name}, not the conv itself"
            )
        acts: list[torch.Tensor] = []
        capture = StageCapture(chain, lambda i, t: acts.append(t) if i == last else None)
        with autograd_session(self.model) as session:
            xg = session.input(x)
            with capture.hooked():
                y = explained_output(self.model(xg), target)  # (B,)
            if not acts:
                raise RuntimeError("the traced last conv activation was not produced; create a new GradCAM")
            (grad,) = torch.autograd.grad(y.sum(), acts[0], allow_unused=True)  # (B, K, h, w)
        if grad is None:
            grad = torch.zeros_like(acts[0])
        alpha = grad.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
        cam = (alpha * acts[0].detach()).sum(dim=1, keepdim=True)  # (B, 1, h, w)
        return cam, y.detach()

