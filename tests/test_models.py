"""Every registered model: exact layer shapes from the paper's tables, layer order, head sizes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from vbp_live.models import create_model, frames_to_input, list_models

# Supplement Table 1 (NetHVF with the corrected 174/172 widths) and Table 2: (C, H, W) per conv.
EXPECTED = {
    "netsvf": [(32, 123, 638), (32, 61, 318), (48, 59, 316), (48, 29, 157), (64, 27, 155),
               (64, 13, 77), (96, 11, 75), (96, 5, 37), (128, 3, 35), (128, 1, 17)],
    "nethvf": [(32, 123, 349), (32, 61, 174), (48, 59, 172), (48, 29, 85), (64, 27, 83),
               (64, 13, 41), (96, 11, 39), (96, 5, 19), (128, 3, 17), (128, 1, 8)],
    "signnet": [(16, 123, 123), (16, 61, 61), (24, 59, 59), (24, 29, 29), (32, 27, 27),
                (32, 13, 13), (48, 11, 11), (48, 5, 5)],
}
FC = {"netsvf": [1024, 512, 1], "nethvf": [1024, 512, 1], "signnet": [64, 43]}
IN_SHAPE = {"netsvf": (1, 125, 640), "nethvf": (1, 125, 351), "signnet": (1, 125, 125)}
PAPER = sorted(EXPECTED)  # the paper's nets; community nets: test_community_nets.py


def conv_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_registry_has_the_papers_nets():
    assert {"netsvf", "nethvf", "signnet"} <= set(list_models())


@pytest.mark.parametrize("name", PAPER)
def test_layer_shapes_match_tables(name):
    model = create_model(name).eval()
    assert model.in_shape == IN_SHAPE[name]
    assert conv_outputs(model, torch.zeros(2, *model.in_shape)) == EXPECTED[name]


@pytest.mark.parametrize("name", PAPER)
def test_bn_before_every_conv_relu_after(name):
    model = create_model(name)
    mods = [m for m in model.modules() if not list(m.children())]
    convs = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
    for i in convs:
        assert isinstance(mods[i - 1], nn.BatchNorm2d) and isinstance(mods[i + 1], nn.ReLU)
        assert mods[i].kernel_size == (3, 3) and mods[i].padding == (0, 0)
    assert [mods[i].stride[0] for i in convs] == [1, 2] * (len(convs) // 2)


@pytest.mark.parametrize("name", PAPER)
def test_relus_are_in_place_and_train_like_out_of_place_ones(name):
    """In-place ReLUs (as torchvision's nets): one buffer less per layer. Autograd is unchanged."""
    model = create_model(name).train()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.rand(2, *model.in_shape)
    for net in (model, twin):
        net(x).float().pow(2).sum().backward()
    torch.testing.assert_close(model(x), twin(x))
    for (name_a, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name_a)


@pytest.mark.parametrize("name", PAPER)
def test_fc_head(name):
    model = create_model(name)
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == FC[name]
    layers = list(model.head)
    for lin in linears[:-1]:
        assert isinstance(layers[layers.index(lin) + 1], nn.ReLU)
    last = layers[layers.index(linears[-1]) + 1:]
    assert [type(m) for m in last] == ([nn.LogSoftmax] if name == "signnet" else [])


@pytest.mark.parametrize("name,width,last", [("netsvf", 640, (128, 1, 17)), ("nethvf", 351, (128, 1, 8))])
def test_135_row_option(name, width, last):
    model = create_model(name, height=135)
    shapes = conv_outputs(model, torch.zeros(1, 1, 135, width))
    assert shapes[0] == (32, 133, width - 2) and shapes[-1] == last
    assert model.model_args == {"height": 135}


def test_unknown_model_lists_registered():
    with pytest.raises(KeyError, match="netsvf"):
        create_model("resnet50")


def test_frames_to_input_scales_and_shapes():
    x = frames_to_input(torch.full((3, 4, 5), 255, dtype=torch.uint8).numpy())
    assert x.shape == (3, 1, 4, 5) and x.dtype == torch.float32 and torch.allclose(x, torch.ones_like(x))


def test_frames_to_input_takes_read_only_rows_without_a_warning():
    import warnings

    frames = np.full((2, 4, 5), 255, np.uint8)
    frames.flags.writeable = False  # as rows of a prepared dataset's read-only memmap
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = frames_to_input(frames)
    assert x.shape == (2, 1, 4, 5) and torch.allclose(x, torch.ones_like(x))
