"""Conv geometry: sizes agree with PyTorch, output_padding from shapes, the PilotNet fixture."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vbp_live.attribution import VisualBackProp
from vbp_live.core.geometry import conv_out_size, output_padding


@settings(max_examples=60, deadline=None)
@given(n=st.integers(5, 40), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 2), d=st.integers(1, 3))
def test_sizes_match_torch_and_inverse_lands_exactly(n, k, s, p, d):
    if n + 2 * p - d * (k - 1) - 1 < 0:
        return
    out = conv_out_size(n, k, s, p, d)
    ref = nn.Conv2d(1, 1, (k, 1), (s, 1), (p, 0), (d, 1))(torch.zeros(1, 1, n, 1)).shape[2]
    assert out == ref
    adj = output_padding(n, out, k, s, p, d)
    assert adj == (n + 2 * p - d * (k - 1) - 1) % s  # the formula in paper-notes.md
    back = nn.ConvTranspose2d(1, 1, (k, 1), (s, 1), (p, 0), (adj, 0), dilation=(d, 1))(torch.zeros(1, 1, out, 1))
    assert back.shape[2] == n


def pilotnet() -> nn.Sequential:
    layers = []
    for c_in, c_out, k, s in [(3, 24, 5, 2), (24, 36, 5, 2), (36, 48, 5, 2), (48, 64, 3, 1), (64, 64, 3, 1)]:
        layers += [nn.Conv2d(c_in, c_out, k, s), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(1))


def test_pilotnet_fixture_output_paddings():
    model = pilotnet().eval()
    x = torch.rand(2, 3, 66, 200)
    vbp = VisualBackProp(model)
    maps = [tuple(m.shape[-2:]) for m in vbp.explain(x).maps]
    steps = vbp.chain(x).walk_back(tuple(x.shape[-2:]), maps)  # one step (a conv) per stage, deep to shallow
    pads = [op.geometry.output_padding(target, size) for _, op, size, target, _ in steps][::-1]
    assert pads == [(1, 1), (0, 1), (1, 0), (0, 0), (0, 0)]
    assert vbp.attribute(x).shape == (2, 1, 66, 200)
