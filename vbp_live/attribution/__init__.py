"""Layer 2: attribution methods behind one contract (:mod:`.base`).

``Method(model).attribute(x) -> (B, 1, H, W)`` and ``Method(model).run(x) -> AttributionResult``.
"""

from vbp_live.attribution.base import Attribution, AttributionResult, create_method, list_methods, register_method
from vbp_live.attribution.capture import ConvChain, Stage, UnsupportedModelError, trace_conv_chain
from vbp_live.attribution.gradcam import GradCAM
from vbp_live.attribution.gradients import DeconvNet, GuidedBackprop, Saliency
from vbp_live.attribution.lrp import EpsilonLRP
from vbp_live.attribution.pda import PredictionDifference, PredictionDifferenceGrad
from vbp_live.attribution.vbp import VBPMaps, VisualBackProp
from vbp_live.attribution.vbp_reference import VisualBackPropReference
from vbp_live.attribution.vbp_triton import FusedVisualBackProp  # registers 'vbp_fused'; Triton loads lazily

__all__ = [
    "Attribution", "AttributionResult", "ConvChain", "FusedVisualBackProp", "Stage", "UnsupportedModelError", "VBPMaps",
    "VisualBackProp", "VisualBackPropReference", "create_method", "list_methods", "register_method", "trace_conv_chain",
]
__all__ += [
    "DeconvNet", "EpsilonLRP", "GradCAM", "GuidedBackprop", "PredictionDifference", "PredictionDifferenceGrad",
    "Saliency",
]
