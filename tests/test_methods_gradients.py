"""Saliency, DeconvNet and guided backprop: hand-computed answers, the seed-002 finding, peers."""

from __future__ import annotations

import warnings

import pytest
import torch
from method_nets import tiny_steering
from torch import nn

from vbp_live.attribution import DeconvNet, GuidedBackprop, Saliency

X = torch.tensor([[[[1.0, 2.0, -1.0]]]])  # (1, 1, 1, 3)


def hand_net(inplace: bool = False) -> nn.Module:
    """y = w2 · relu(W1 x + b1) with pre-activations (-0.5, 1, 2) and upstream R = w2 = (2, -3, 1)."""
    lin1, lin2 = nn.Linear(3, 3), nn.Linear(3, 1)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.5, 1.0, 1.0], [1.0, 1.0, 1.0]]))
        lin1.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
        lin2.weight.copy_(torch.tensor([[2.0, -3.0, 1.0]]))
        lin2.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin1, nn.ReLU(inplace), lin2).eval()


# Through the ReLU (y = (-0.5, 1, 2), R = (2, -3, 1)), then W1ᵀ:
#   saliency  passes R where y > 0:         (0, -3, 1) -> (-0.5, -2, -2)
#   deconvnet passes R where R > 0:         (2,  0, 1) -> ( 3,   -1,  1)
#   gbp       passes R where y > 0, R > 0:  (0,  0, 1) -> ( 1,    1,  1)
HAND = {Saliency: [-0.5, -2.0, -2.0], DeconvNet: [3.0, -1.0, 1.0], GuidedBackprop: [1.0, 1.0, 1.0]}


@pytest.mark.parametrize("cls", list(HAND))
@pytest.mark.parametrize("inplace", [False, True])
def test_relu_rules_hand_computed(cls, inplace):
    got = cls(hand_net(inplace), sign="raw").attribute(X)
    assert got.flatten().tolist() == pytest.approx(HAND[cls])


def test_sign_conventions_on_hand_net():
    """y = -1 here, so "output" flips the raw gradient; "positive" keeps what pushes y up."""
    net = hand_net()
    assert net(X).item() == pytest.approx(-1.0)
    sal = Saliency(net)
    assert sal.attribute(X).flatten().tolist() == pytest.approx([0.5, 2.0, 2.0])  # default |grad|
    assert sal.attribute(X, sign="output").flatten().tolist() == pytest.approx([0.5, 2.0, 2.0])
    assert sal.attribute(X, sign="positive").flatten().tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert DeconvNet(net).attribute(X, sign="positive").flatten().tolist() == pytest.approx([3.0, 0.0, 1.0])


def test_reused_relu_module_is_rewired_per_call():
    """One nn.ReLU used twice (captum#199): each call gets the rule with its own forward mask."""
    torch.manual_seed(0)
    relu = nn.ReLU()
    a, b, c = nn.Linear(4, 5), nn.Linear(5, 5), nn.Linear(5, 1)
    shared = nn.Sequential(nn.Flatten(), a, relu, b, relu, c).eval()
    separate = nn.Sequential(nn.Flatten(), a, nn.ReLU(), b, nn.ReLU(), c).eval()
    x = torch.randn(3, 1, 1, 4)
    for cls in HAND:
        torch.testing.assert_close(cls(shared, sign="raw").attribute(x), cls(separate, sign="raw").attribute(x))


def _mean_class_correlation(cls, model, x, classes: int) -> float:
    maps = [cls(model, sign="raw").attribute(x, target=t).flatten() for t in range(classes)]
    maps = [(m - m.mean()) / (m - m.mean()).norm() for m in maps]
    pairs = [float(maps[i] @ maps[j]) for i in range(classes) for j in range(i + 1, classes)]
    return sum(pairs) / len(pairs)


@pytest.mark.parametrize("seed", [0, 1])
def test_gbp_barely_depends_on_the_explained_class_saliency_does(seed):
    """Seed 002's finding: GBP maps for different classes are nearly identical, saliency maps are not."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    ).eval()
    x = torch.rand(1, 1, 28, 28)
    gbp = _mean_class_correlation(GuidedBackprop, model, x, 10)
    sal = _mean_class_correlation(Saliency, model, x, 10)
    assert gbp > 0.7, gbp
    assert sal < 0.3, sal


def test_default_target_is_the_predicted_class():
    model = tiny_steering(outputs=4)
    x = torch.rand(2, 1, 12, 16)
    pred = model(x).argmax(1).tolist()
    torch.testing.assert_close(Saliency(model).attribute(x), Saliency(model).attribute(x, target=pred))


@pytest.mark.parametrize(
    "ours,theirs", [(Saliency, "Saliency"), (DeconvNet, "Deconvolution"), (GuidedBackprop, "GuidedBackprop")])
def test_agrees_with_captum(ours, theirs):
    captum_attr = pytest.importorskip("captum.attr", reason="captum not installed (optional peer: pip install captum)")
    model = tiny_steering(outputs=3)
    x = torch.rand(3, 1, 12, 16)
    kwargs = {"abs": False} if theirs == "Saliency" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum warns that it sets backward hooks on ReLUs
        peer = getattr(captum_attr, theirs)(model).attribute(x.clone().requires_grad_(), target=2, **kwargs)
    torch.testing.assert_close(ours(model, sign="raw").attribute(x, target=2), peer.detach())

