"""Theorem 1 (Section 4): VBP(X) = c * sum over all paths P from pixel X to the last conv layer
of the product of the activations on P, with one c > 0 for every pixel. Checked by brute-force
path enumeration on small CNNs without pooling, with and without biases."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from vbp_live.attribution import VisualBackProp


def covered(out_len: int, x: int, k: int, s: int, p: int, d: int) -> list[int]:
    """Positions y of a conv output whose receptive field contains input position x."""
    return [y for y in range(out_len) if any(y * s - p + j * d == x for j in range(k))]


def brute_force(acts: list[torch.Tensor], convs: list[nn.Conv2d], in_hw: tuple[int, int]) -> torch.Tensor:
    """Sum over every path (position and channel at each layer) of the product of activations."""
    result = torch.zeros(in_hw, dtype=torch.float64)
    for X in itertools.product(range(in_hw[0]), range(in_hw[1])):
        result[X] = _paths_from(X, 0, acts, convs)
    return result


def _paths_from(pos: tuple[int, int], layer: int, acts: list[torch.Tensor], convs: list[nn.Conv2d]) -> float:
    if layer == len(convs):
        return 1.0
    conv, a = convs[layer], acts[layer]  # a: (C, h, w)
    total = 0.0
    ys = covered(a.shape[1], pos[0], conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0])
    xs = covered(a.shape[2], pos[1], conv.kernel_size[1], conv.stride[1], conv.padding[1], conv.dilation[1])
    for y, x in itertools.product(ys, xs):
        for c in range(a.shape[0]):  # each channel is a separate path
            if a[c, y, x] != 0:
                total += float(a[c, y, x]) * _paths_from((y, x), layer + 1, acts, convs)
    return total


def small_cnn(rng: random.Random, bias: bool) -> tuple[nn.Sequential, list[nn.Conv2d]]:
    layers, convs, c = [], [], 2
    for _ in range(3):
        conv = nn.Conv2d(c, rng.randint(2, 3), (rng.randint(1, 3), rng.randint(1, 3)),
                         stride=(rng.randint(1, 2), rng.randint(1, 2)), padding=rng.randint(0, 1),
                         dilation=rng.randint(1, 2), bias=bias)
        layers += [conv, nn.ReLU()]
        convs.append(conv)
        c = conv.out_channels
    return nn.Sequential(*layers).double().eval(), convs


def post_relu_maps(convs: list[nn.Conv2d], x: torch.Tensor) -> list[torch.Tensor]:
    """Each conv's post-ReLU output for the single image of ``x``, (C_l, h_l, w_l) each."""
    acts, h = [], x
    with torch.no_grad():
        for conv in convs:
            h = torch.relu(conv(h))
            acts.append(h[0])
    return acts


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vbp_is_proportional_to_path_sum(seed, bias):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model, convs = small_cnn(rng, bias)
    x = torch.randn(1, 2, 11, 9, dtype=torch.float64)
    res = VisualBackProp(model).explain(x, raw=True)
    acts = post_relu_maps(convs, x)
    brute = brute_force(acts, convs, (11, 9))
    c = 1.0
    for a in acts:
        c /= a.shape[0]  # averaging over channels = summing over paths, up to 1/f_l
    assert brute.abs().max() > 0
    torch.testing.assert_close(res.mask[0, 0], c * brute, rtol=1e-10, atol=1e-12)
    assert len(res.maps) == len(res.masks) == 3


def test_the_constant_is_the_same_for_every_pixel():
    rng = random.Random(7)
    torch.manual_seed(7)
    model, convs = small_cnn(rng, bias=True)
    x = torch.rand(1, 2, 10, 10, dtype=torch.float64)
    mask = VisualBackProp(model).attribute(x, raw=True)[0, 0]
    acts = post_relu_maps(convs, x)
    brute = brute_force(acts, convs, (10, 10))
    nz = brute > 1e-12
    ratios = mask[nz] / brute[nz]
    assert nz.sum() > 10 and torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-9)
    assert torch.all(mask[~nz].abs() < 1e-12)
