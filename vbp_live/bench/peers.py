"""Peer attribution libraries, called exactly as their docs say, for side-by-side timing.

Every peer is optional (the ``peers`` extra installs Captum; zennit and pytorch-grad-cam need
torchvision). A builder returns a zero-argument callable that attributes the fixed batch once,
or raises :class:`PeerUnavailable` with the reason it cannot run here. Peers run on a deep copy
of the model, since some attach attributes (Captum's LRP rules) or call ``model.eval()``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

PeerCall = Callable[[], object]


class PeerUnavailable(RuntimeError):
    """The peer library does not import here, or cannot handle this model."""


def _need(module: str, hint: str):
    try:
        return __import__(module, fromlist=["_"])
    except Exception as e:  # ImportError, or torchvision's own errors at import time
        raise PeerUnavailable(f"{module} does not import ({type(e).__name__}: {str(e)[:120]}); {hint}") from e


CAPTUM_HINT = "install it with `pip install captum` (or the 'peers' extra)"
TV_HINT = "it needs torchvision, which has no build for this torch here"


def _grad_input(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)  # (B, C, H, W)


def captum_lrp(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """Captum ``LRP`` with ``EpsilonRule(100)`` on Conv2d / Linear / BatchNorm2d (peers.md)."""
    attr = _need("captum.attr", CAPTUM_HINT)
    rules = _need("captum.attr._utils.lrp_rules", CAPTUM_HINT)
    net, xg = copy.deepcopy(model), _grad_input(x)
    lrp = attr.LRP(net)

    def call() -> object:
        for m in net.modules():  # Captum removes the rules after every call
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                m.rule = rules.EpsilonRule(epsilon=100.0)
            elif isinstance(m, nn.Flatten):
                m.rule = rules.EpsilonRule(epsilon=1e-9)
        return lrp.attribute(xg, target=0)

    return call


def captum_saliency(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """Captum ``Saliency(model).attribute(x, target=0, abs=True)``."""
    attr = _need("captum.attr", CAPTUM_HINT)
    net, xg = copy.deepcopy(model), _grad_input(x)
    return lambda: attr.Saliency(net).attribute(xg, target=0, abs=True)


def captum_guided_backprop(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """Captum ``GuidedBackprop(model).attribute(x, target=0)``."""
    attr = _need("captum.attr", CAPTUM_HINT)
    net, xg = copy.deepcopy(model), _grad_input(x)

    def call() -> object:
        with warnings.catch_warnings():  # "Setting backward hooks on ReLU activations", every call
            warnings.simplefilter("ignore", UserWarning)
            return attr.GuidedBackprop(net).attribute(xg, target=0)

    return call


def captum_layer_gradcam(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """Captum ``LayerGradCam`` on the last conv activation, upsampled bilinearly to the input."""
    attr = _need("captum.attr", CAPTUM_HINT)
    net, xg = copy.deepcopy(model), _grad_input(x)
    target_layer = dict(net.named_modules())[layer]

    def call() -> object:
        cam = attr.LayerGradCam(net, target_layer).attribute(xg, target=0, relu_attributions=True)
        return attr.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")  # (B, 1, H, W)

    return call


def zennit_lrp(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """zennit ε-LRP: ``Epsilon(100)`` on linear layers, BN merged into the adjacent conv."""
    composites = _need("zennit.composites", TV_HINT)
    rules, types = _need("zennit.rules", TV_HINT), _need("zennit.types", TV_HINT)
    canon, attribution = _need("zennit.canonizers", TV_HINT), _need("zennit.attribution", TV_HINT)
    net = copy.deepcopy(model)
    comp = composites.LayerMapComposite(
        [(types.Activation, rules.Pass()), (types.BatchNorm, rules.Pass()),
         (types.Linear, rules.Epsilon(epsilon=100.0))],
        canonizers=[canon.SequentialMergeBatchNorm()],
    )

    def call() -> object:
        with attribution.Gradient(model=net, composite=comp) as attr:
            return attr(x)

    return call


def gradcam_gradcam(model: nn.Module, x: torch.Tensor, layer: str) -> PeerCall:
    """pytorch-grad-cam ``GradCAM`` on the last conv activation, one raw-score target per frame."""
    gc = _need("pytorch_grad_cam", TV_HINT)
    targets = _need("pytorch_grad_cam.utils.model_targets", TV_HINT)
    net = copy.deepcopy(model)  # its constructor calls model.eval()
    target_layer = dict(net.named_modules())[layer]

    def call() -> object:
        with gc.GradCAM(model=net, target_layers=[target_layer]) as cam:
            return cam(input_tensor=x, targets=[targets.RawScoresOutputTarget()] * len(x))

    return call


# table name -> (builder, is an ε-LRP)
PEERS: dict[str, tuple[Callable[[nn.Module, torch.Tensor, str], PeerCall], bool]] = {
    "captum LRP (ε=100)": (captum_lrp, True),
    "captum Saliency": (captum_saliency, False),
    "captum GuidedBackprop": (captum_guided_backprop, False),
    "captum LayerGradCam": (captum_layer_gradcam, False),
    "zennit ε-LRP (ε=100)": (zennit_lrp, True),
    "grad-cam GradCAM": (gradcam_gradcam, False),
}
