"""Grad-CAM: the last conv activation from the shared tracer, a known answer, sign conventions, Captum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from method_nets import tiny_steering
from torch import nn

from vbp_live.attribution import GradCAM, UnsupportedModelError
from vbp_live.models import create_model


def test_layer_is_the_deepest_traced_activation():
    net = tiny_steering()
    chain = GradCAM(net).chain(torch.rand(1, 1, 12, 16))
    assert chain.modules[chain.stages[-1].name] is net[5]


def test_known_answer_linear_head():
    """y = w·flatten(A) + b, so ∂y/∂A_k = w_k and cam = Σ_k mean(w_k) A_k at the layer's resolution."""
    net = tiny_steering()
    lin = nn.Linear(8 * 4 * 6, 1)
    head_net = nn.Sequential(*list(net)[:6], nn.Flatten(), lin).eval()
    x = torch.rand(2, 1, 12, 16)
    acts = nn.Sequential(*list(net)[:6])(x).detach()  # (2, 8, 4, 6)
    alpha = lin.weight.detach().view(8, 4, 6).mean(dim=(1, 2))  # (8,)
    expected = (alpha.view(1, 8, 1, 1) * acts).sum(1, keepdim=True)
    cam, y = GradCAM(head_net).layer_cam(x)
    torch.testing.assert_close(cam, expected)
    up = GradCAM(head_net).attribute(x, sign="raw")
    torch.testing.assert_close(up, F.interpolate(expected, size=(12, 16), mode="bilinear", align_corners=False))


def test_output_sign_keeps_evidence_for_the_predicted_direction():
    net = tiny_steering()
    x = torch.rand(4, 1, 12, 16)
    raw = GradCAM(net).attribute(x, sign="raw")
    y = net(x).detach()[:, 0]
    s = torch.where(y < 0, -1.0, 1.0).view(-1, 1, 1, 1)
    torch.testing.assert_close(GradCAM(net).attribute(x), (raw * s).clamp(min=0))  # default "output"
    torch.testing.assert_close(GradCAM(net).attribute(x, sign="positive"), raw.clamp(min=0))
    torch.testing.assert_close(GradCAM(net).attribute(x, sign="abs"), raw.abs())


def test_explicit_layer_and_conv_refused():
    net = tiny_steering()
    x = torch.rand(1, 1, 12, 16)
    first = GradCAM(net, layer=net[2]).attribute(x)
    assert first.shape == (1, 1, 12, 16)
    with pytest.raises(UnsupportedModelError, match="activation module"):
        GradCAM(net, layer=net[4]).attribute(x)


def test_signnet_classes():
    net = create_model("signnet", height=64, width=64).eval()
    x = torch.rand(2, 1, 64, 64)
    cams = GradCAM(net, sign="positive").attribute(x, target=[3, 7])
    assert cams.shape == (2, 1, 64, 64) and (cams >= 0).all()


@pytest.mark.parametrize("target", [0, 2])
def test_agrees_with_captum_layer_gradcam(target):
    attr = pytest.importorskip("captum.attr", reason="captum not installed (optional peer: pip install captum)")
    net = tiny_steering(outputs=3)
    x = torch.rand(3, 1, 12, 16)
    peer = attr.LayerGradCam(net, net[5]).attribute(x, target=target, relu_attributions=True)
    peer = attr.LayerAttribution.interpolate(peer, tuple(x.shape[-2:]), "bilinear")
    torch.testing.assert_close(GradCAM(net, sign="positive").attribute(x, target=target), peer.detach())
