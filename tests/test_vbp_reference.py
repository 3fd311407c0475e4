"""The fast VisualBackProp agrees with the paper-style reference on every net and random geometries."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vbp_live.attribution import VisualBackProp, VisualBackPropReference, ones_kernel
from vbp_live.core.geometry import conv_out_size
from vbp_live.models import create_model, list_models

DEFAULT_SMALL_MAP = ones_kernel.SMALL_MAP


def assert_agree(model: nn.Module, x: torch.Tensor) -> None:
    fast = VisualBackProp(model).attribute(x.double(), raw=True)
    ref = VisualBackPropReference(model).attribute(x.double(), raw=True)
    assert fast.shape == ref.shape == (x.shape[0], 1, *x.shape[-2:])
    scale = ref.abs().amax().clamp_min(1e-300)
    assert torch.allclose(fast / scale, ref / scale, atol=1e-10, rtol=1e-9)
    a, b = VisualBackProp(model).attribute(x.double()), VisualBackPropReference(model).attribute(x.double())
    assert a.dtype == torch.float64 and a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("name", list_models())
def test_registered_nets_agree_with_reference(name):
    torch.manual_seed(0)
    model = create_model(name).double().eval()
    _randomize_bn(model)
    assert_agree(model, torch.rand(2, *model.in_shape))


def _randomize_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.3)


def random_net(rng: random.Random) -> tuple[nn.Module, tuple[int, int, int]]:
    """A random conv chain: non-square kernels/strides, padding, dilation, pools, BN, mixed activations."""
    h, w = rng.randint(18, 40), rng.randint(18, 40)
    c, layers, cur = rng.randint(1, 3), [], [h, w]
    for _ in range(rng.randint(1, 4)):
        k = (rng.randint(1, 4), rng.randint(1, 4))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        d = (rng.randint(1, 2), rng.randint(1, 2))
        p = (rng.randint(0, (k[0] * d[0]) // 2), rng.randint(0, (k[1] * d[1]) // 2))
        fits = [cur[i] + 2 * p[i] >= d[i] * (k[i] - 1) + 1 for i in range(2)]
        nxt = [conv_out_size(cur[i], k[i], s[i], p[i], d[i]) if fits[i] else 0 for i in range(2)]
        if min(nxt) < 2:
            break
        c_out = rng.randint(1, 4)
        if rng.random() < 0.5:
            layers.append(nn.BatchNorm2d(c))
        layers += [nn.Conv2d(c, c_out, k, s, p, d, bias=rng.random() < 0.7), _activation(rng)]
        c, cur = c_out, nxt
        if rng.random() < 0.4 and min(cur) >= 4:
            layers.append(_pool(rng))
            probe = nn.Sequential(layers[-1])(torch.zeros(1, 1, *cur))
            cur = list(probe.shape[-2:])
    if not any(isinstance(m, nn.Conv2d) for m in layers):
        layers += [nn.Conv2d(c, 2, 3), nn.ReLU()]
    c_in = layers[0].num_features if isinstance(layers[0], nn.BatchNorm2d) else layers[0].in_channels
    return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(1)), (c_in, h, w)


def _activation(rng: random.Random) -> nn.Module:
    return rng.choice([nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(0.1), nn.ReLU6()])


def _pool(rng: random.Random) -> nn.Module:
    k = (rng.randint(2, 3), rng.randint(2, 3))
    if rng.random() < 0.5:
        return nn.MaxPool2d(k, stride=rng.randint(1, 2), padding=rng.randint(0, 1), ceil_mode=rng.random() < 0.5)
    return nn.AvgPool2d(k, stride=rng.randint(1, 3), ceil_mode=rng.random() < 0.5)


@pytest.mark.parametrize("small_map", [0, 10**9], ids=["strided-adds", "conv-transpose"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), batch=st.integers(1, 3))
def test_random_geometries_agree_with_reference(small_map, seed, batch):
    ones_kernel.SMALL_MAP = small_map  # force one branch of the fast ones-kernel op
    try:
        _check_random_net(seed, batch)
    finally:
        ones_kernel.SMALL_MAP = DEFAULT_SMALL_MAP


def _check_random_net(seed: int, batch: int) -> None:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model, shape = random_net(rng)
    model = model.double()
    model(torch.zeros(1, *shape, dtype=torch.float64))  # materialize the lazy head
    model.eval()
    assert_agree(model, torch.rand(batch, *shape))
