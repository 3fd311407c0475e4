"""Layer 2: attribution methods behind one contract: ``Method(model).attribute(x) -> (B, 1, H, W)``."""

from vbp_live.attribution.base import Attribution, create_method, list_methods, register_method
from vbp_live.attribution.capture import ConvChain, Stage, UnsupportedModelError, trace_conv_chain
from vbp_live.attribution.vbp import VBPResult, VisualBackProp
from vbp_live.attribution.vbp_reference import VisualBackPropReference
from vbp_live.attribution.vbp_triton import FusedVisualBackProp  # registers 'vbp_fused'; Triton loads lazily
from vbp_live.attribution.gradients import DeconvNet, GuidedBackprop, Saliency
from vbp_live.attribution.lrp import EpsilonLRP
from vbp_live.attribution.gradcam import GradCAM
from vbp_live.attribution.pda import PredictionDifference, PredictionDifferenceGrad

__all__ = [
    "Attribution", "ConvChain", "FusedVisualBackProp", "Stage", "UnsupportedModelError", "VBPResult", "VisualBackProp",
    "VisualBackPropReference", "create_method", "list_methods", "register_method", "trace_conv_chain",
]
__all__ += [
    "DeconvNet", "EpsilonLRP", "GradCAM", "GuidedBackprop", "PredictionDifference", "PredictionDifferenceGrad",
    "Saliency",
]
