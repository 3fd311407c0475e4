"""ε-LRP: conservation, known answers, BatchNorm folding, agreement with Captum (and zennit if present)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from method_nets import randomize_bn, tiny_steering
from torch import nn

from vbp_live.attribution import EpsilonLRP, Saliency
from vbp_live.attribution.lrp import plan_lrp


def bias_free_net() -> nn.Module:
    """Convs and linears without bias, BNs that only scale (zero mean and shift): nothing absorbs relevance."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
        nn.BatchNorm2d(4), nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 3, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False),
    ).double()
    randomize_bn(net)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.zero_()
            m.bias.data.zero_()
    return net.eval()


def test_default_epsilon_is_the_papers():
    assert EpsilonLRP(tiny_steering()).epsilon == 100.0


def test_relevance_is_conserved_without_biases():
    net = bias_free_net()
    x = torch.rand(4, 1, 12, 16, dtype=torch.float64)
    r = EpsilonLRP(net, epsilon=1e-12, sign="raw").attribute(x, raw=True)
    torch.testing.assert_close(r.sum(dim=(1, 2, 3)), net(x)[:, 0], rtol=1e-7, atol=1e-10)


def test_epsilon_absorbs_relevance_single_layer():
    """One linear layer, no bias: R_i = x_i w_i · y / (y + ε), so ΣR = y² / (y + ε)."""
    lin = nn.Linear(5, 1, bias=False).double()
    net = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(3, 1, 1, 5, dtype=torch.float64)
    y = net(x)[:, 0].detach()
    eps = 0.7
    r = EpsilonLRP(net, epsilon=eps, sign="raw").attribute(x, raw=True)
    expected = x[:, 0, 0, :] * lin.weight[0].detach() * (y / (y + eps * torch.sign(y)))[:, None]
    torch.testing.assert_close(r[:, 0, 0, :], expected)
    assert (r.sum(dim=(1, 2, 3)).abs() < y.abs()).all()


@pytest.mark.parametrize("inplace", [False, True])
def test_lrp0_equals_gradient_times_input(inplace):
    """For ReLU nets, ε → 0 gives gradient × input exactly, biases and BatchNorm included."""
    net = tiny_steering(inplace=inplace)
    x = torch.rand(3, 1, 12, 16)
    lrp0 = EpsilonLRP(net, epsilon=0.0, sign="raw").attribute(x, raw=True)
    grad = Saliency(net, sign="raw").attribute(x)
    torch.testing.assert_close(lrp0, grad * x, rtol=1e-5, atol=1e-7)


def fold_bn_into_next_conv(net: nn.Sequential) -> nn.Sequential:
    """BN -> conv (no padding) rewritten as one conv with W' = W·s, b' = b + Σ W·t."""
    layers, mods, i = [], list(net), 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.BatchNorm2d) and isinstance(mods[i + 1], nn.Conv2d):
            conv = copy.deepcopy(mods[i + 1])
            s = m.weight / torch.sqrt(m.running_var + m.eps)
            t = m.bias - m.running_mean * s
            with torch.no_grad():
                conv.bias.add_((conv.weight * t.view(1, -1, 1, 1)).sum(dim=(1, 2, 3)))
                conv.weight.mul_(s.view(1, -1, 1, 1))
            layers.append(conv)
            i += 2
        else:
            layers.append(copy.deepcopy(m))
            i += 1
    return nn.Sequential(*layers).eval()


def captum_epsilon_lrp(net: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    attr = pytest.importorskip("captum.attr", reason="captum not installed (optional peer: pip install captum)")
    from captum.attr._utils.lrp_rules import EpsilonRule

    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            m.rule = EpsilonRule(epsilon=eps)
        elif isinstance(m, nn.Flatten):
            m.rule = EpsilonRule(epsilon=1e-9)  # peers.md: Flatten needs a rule in Captum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return attr.LRP(net).attribute(x.clone().requires_grad_(), target=0).detach()


@pytest.mark.parametrize("eps", [100.0, 1.0])
def test_bn_epsilon_mode_matches_captum(eps):
    net = tiny_steering().double()
    x = torch.rand(2, 1, 12, 16, dtype=torch.float64)
    ours = EpsilonLRP(net, epsilon=eps, bn="epsilon", sign="raw").attribute(x, raw=True)
    peer = captum_epsilon_lrp(net, x, eps)
    torch.testing.assert_close(ours, peer, rtol=1e-6, atol=1e-6 * float(peer.abs().max()))


@pytest.mark.parametrize("eps", [100.0, 1.0])
def test_bn_fold_mode_matches_captum_on_the_folded_net(eps):
    net = tiny_steering().double()
    x = torch.rand(2, 1, 12, 16, dtype=torch.float64)
    folded = fold_bn_into_next_conv(net)
    torch.testing.assert_close(folded(x), net(x))
    ours = EpsilonLRP(net, epsilon=eps, sign="raw").attribute(x, raw=True)
    peer = captum_epsilon_lrp(folded, x, eps)
    torch.testing.assert_close(ours, peer, rtol=1e-6, atol=1e-6 * float(peer.abs().max()))
    unfolded = EpsilonLRP(net, epsilon=eps, bn="epsilon", sign="raw").attribute(x, raw=True)
    assert (ours - unfolded).abs().max() > 0.01 * ours.abs().max()  # folding changes the result


def test_conv_then_bn_folds_into_the_preceding_conv():
    """conv -> BN -> ReLU: the ε hook moves to the BN output; equals LRP of the folded conv."""
    torch.manual_seed(1)
    conv_bn = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 14, 1),
    ).double()
    randomize_bn(conv_bn)
    conv_bn.eval()
    conv, bn = conv_bn[0], conv_bn[1]
    folded = copy.deepcopy(conv)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        folded.weight.mul_(s.view(-1, 1, 1, 1))
        folded.bias.copy_(s * conv.bias + bn.bias - bn.running_mean * s)
    ref = nn.Sequential(folded, nn.ReLU(), nn.Flatten(), copy.deepcopy(conv_bn[4])).eval()
    x = torch.rand(2, 1, 12, 16, dtype=torch.float64)
    plan = plan_lrp(conv_bn, x[:1])
    assert conv not in plan.epsilon_modules and bn in plan.epsilon_modules
    torch.testing.assert_close(
        EpsilonLRP(conv_bn, epsilon=3.0, sign="raw").attribute(x, raw=True),
        EpsilonLRP(ref, epsilon=3.0, sign="raw").attribute(x, raw=True),
    )


def test_final_log_softmax_is_skipped():
    """LRP of a classifier explains the logit: same as the net without its LogSoftmax."""
    logits = tiny_steering(outputs=4)
    with_softmax = nn.Sequential(*logits, nn.LogSoftmax(dim=1)).eval()
    x = torch.rand(2, 1, 12, 16)
    torch.testing.assert_close(
        EpsilonLRP(with_softmax, sign="raw").attribute(x, target=[0, 3], raw=True),
        EpsilonLRP(logits, sign="raw").attribute(x, target=[0, 3], raw=True),
    )


def test_zennit_agrees_where_it_imports():
    zennit = pytest.importorskip("zennit", reason="zennit needs torchvision, which is unavailable with this CPU torch")
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Pass
    from zennit.types import Activation, BatchNorm, Linear

    net = tiny_steering()
    x = torch.rand(2, 1, 12, 16)
    comp = LayerMapComposite([(Activation, Pass()), (BatchNorm, Pass()), (Linear, Epsilon(epsilon=100.0))],
                             canonizers=[SequentialMergeBatchNorm()])
    with Gradient(model=net, composite=comp) as attr:
        _, relevance = attr(x, torch.ones(2, 1))
    assert zennit is not None
    ours = EpsilonLRP(net, sign="raw").attribute(x, raw=True)
    torch.testing.assert_close(ours, relevance.sum(1, keepdim=True), rtol=1e-4, atol=1e-9)


def test_no_float32_underflow_with_epsilon_100_on_a_deep_chain():
    """ε = 100 through NetSVF-like depth: the raw relevance underflows float32, the default map does not.

    The rescaled map must equal the float64 computation (normalized), i.e. the shape is exact.
    """
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    c = 1
    for i in range(8):
        layers += [nn.BatchNorm2d(c), nn.Conv2d(c, 8, 3, stride=1 + i % 2, padding=1), nn.ReLU()]
        c = 8
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 1)).eval()
    x = torch.rand(2, 1, 32, 32)
    scaled = EpsilonLRP(net).attribute(x, sign="raw")
    assert scaled.abs().flatten(1).amax(1).tolist() == pytest.approx([1.0, 1.0])
    exact = EpsilonLRP(copy.deepcopy(net).double()).attribute(x.double(), sign="raw", raw=True)
    assert float(exact.abs().max()) < 1e-30  # far below float32's normal range
    expected = exact / exact.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(scaled.double(), expected, rtol=1e-4, atol=1e-5)
