"""VisualBackProp on the nets people bring: a crop of the input (Keras ``Cropping2D`` before the
first conv) and signed activations (ELU, LeakyReLU: the positive part of their maps).

Udacity behavioral-cloning nets commonly start with ``Lambda -> Cropping2D((70, 25), (0, 0)) -> convs``.
The network never sees the rows it crops away, so their relevance is 0; inside the crop the mask is
the one of the same net without the crop, run on the cropped image (checked against that, in float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_keras_h5 import build, write_keras
from torch import nn

from vbp_live.attribution import VisualBackProp, VisualBackPropReference
from vbp_live.attribution.capture import trace_conv_chain
from vbp_live.core.errors import ModelError
from vbp_live.io.keras_h5 import load_keras_h5
from vbp_live.models.blocks import Affine, Crop2d

CROP = (5, 3, 2, 1)  # top, bottom, left, right


def _convs() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten())


def test_mask_is_the_uncropped_nets_mask_on_the_crop_and_zero_outside():
    convs = _convs()
    model = nn.Sequential(Affine(2.0, -1.0), Crop2d(CROP), *convs).double().eval()  # functional scaling first
    x = torch.rand(2, 3, 26, 21, dtype=torch.float64)
    t, b, left, r = CROP
    inner = x[..., t:26 - b, left:21 - r] * 2.0 - 1.0  # what the convs see
    want = VisualBackPropReference(convs.double().eval()).explain(inner, raw=True).mask  # (2, 1, 18, 18)
    want = F.pad(want, (left, r, t, b))  # (2, 1, 26, 21)
    for method in (VisualBackProp(model), VisualBackPropReference(model)):
        got = method.explain(x, raw=True).mask
        assert got.shape == (2, 1, 26, 21)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)
    assert trace_conv_chain(model, x[:1]).input_crop == CROP


def test_a_crop_after_the_first_conv_is_refused_by_name():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Crop2d((1, 1, 1, 1)), nn.Conv2d(4, 4, 3), nn.ReLU())
    with pytest.raises(ModelError, match=r"2: a crop after the first conv"):
        VisualBackProp(model.eval()).explain(torch.rand(1, 3, 16, 16))


def test_keras_cropping2d_net_gets_a_mask_on_the_full_frame(tmp_path):
    """A Keras 2 file as behavioral-cloning projects write it: Lambda, Cropping2D, convs, Dense."""
    rng = np.random.default_rng(5)
    k1, k2 = rng.normal(0, 0.3, (3, 3, 3, 4)), rng.normal(0, 0.3, (3, 3, 4, 5))
    layers = [
        ("Lambda", {"name": "lambda_1", "function": ["marshalled"], "function_type": "lambda",
                    "batch_input_shape": [None, 32, 24, 3]}, []),
        ("Cropping2D", {"name": "cropping2d_1", "cropping": [[10, 4], [0, 0]]}, []),
        ("Conv2D", {"name": "c1", "filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid",
                    "activation": "relu"}, [k1, np.zeros(4)]),
        ("Conv2D", {"name": "c2", "filters": 5, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"},
         [k2, np.zeros(5)]),
        ("Flatten", {"name": "f"}, []),
        ("Dense", {"name": "d", "units": 1}, [rng.normal(0, 0.3, (5 * 6 * 9, 1)), np.zeros(1)]),
    ]
    model = build(*load_keras_h5(write_keras(tmp_path / "bc.h5", layers), {"lambda_1": (1 / 127.5, -1.0)}))
    x = torch.rand(3, 3, 32, 24) * 255
    fast, ref = VisualBackProp(model).explain(x), VisualBackPropReference(model.double()).explain(x.double())
    assert fast.mask.shape == (3, 1, 32, 24)
    torch.testing.assert_close(fast.mask.double(), ref.mask, rtol=1e-4, atol=1e-5)
    assert (fast.mask[..., :10, :] == 0).all() and (fast.mask[..., 28:, :] == 0).all()
    torch.testing.assert_close(fast.mask[..., 10:28, :].amax(dim=(1, 2, 3)), torch.ones(3))  # normalized


# ---------------------------------------------------------------- signed activations (ELU, LeakyReLU)

def _signed_net(act: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 6, 3, 2), nn.BatchNorm2d(6), act(), nn.Conv2d(6, 8, 3), act(),
                         nn.Flatten()).double().eval()


@pytest.mark.parametrize("act", [nn.ELU, nn.LeakyReLU, nn.ReLU])
def test_positive_maps_average_the_positive_part(act):
    """positive=True: each stage's map is max(activation, 0); for ReLU nets nothing changes."""
    model = _signed_net(act)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 21, 25, dtype=torch.float64)
    chain = trace_conv_chain(model, x[:1], positive=True)
    assert [st.relu for st in chain.stages] == [act is not nn.ReLU] * 2
    got = VisualBackProp(model, positive=True).explain(x)
    # independent: the positive parts computed by hand, then the paper's steps on them
    a1 = torch.relu(model[2](model[1](model[0](x))))  # (2, 6, 10, 12)
    a2 = torch.relu(model[4](model[3](model[2](model[1](model[0](x))))))  # (2, 8, 8, 10)
    m1, m2 = a1.mean(1, keepdim=True), a2.mean(1, keepdim=True)
    up = torch.nn.functional.conv_transpose2d(m2, torch.ones(1, 1, 3, 3, dtype=torch.float64))  # (2, 1, 10, 12)
    want = torch.nn.functional.conv_transpose2d(up * m1, torch.ones(1, 1, 3, 3, dtype=torch.float64), stride=2)
    assert want.shape == (2, 1, 21, 25)
    torch.testing.assert_close(VisualBackProp(model, positive=True).explain(x, raw=True).mask, want)
    torch.testing.assert_close(VisualBackPropReference(model, positive=True).explain(x).mask, got.mask)
    same = VisualBackProp(model).explain(x).mask
    assert torch.equal(same, got.mask) == (act is nn.ReLU)
