"""The community nets a model card can name: NVIDIA PilotNet 2016 and donkeycar's KerasLinear.

Exact layer shapes as in the paper / donkeycar's ``keras.py`` (like test_models.py for the paper's
nets), activation and dropout variants with one set of weights, and a tiny ``vbp-live train`` run
with VisualBackProp snapshots.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.models import create_model, list_models

# (C, H, W) after each conv
EXPECTED = {
    "pilotnet": [(24, 31, 98), (36, 14, 47), (48, 5, 22), (64, 3, 20), (64, 1, 18)],  # Bojarski et al. 2016, Fig. 4
    "donkeycar_linear": [(24, 58, 78), (32, 27, 37), (64, 12, 17), (64, 10, 15), (64, 8, 13)],
}
KERNELS = {"pilotnet": [(5, 2), (5, 2), (5, 2), (3, 1), (3, 1)],
           "donkeycar_linear": [(5, 2), (5, 2), (5, 2), (3, 1), (3, 1)]}
FC = {"pilotnet": [(1152, 100), (100, 50), (50, 10), (10, 1)],
      "donkeycar_linear": [(6656, 100), (100, 50), (50, 2)]}
IN_SHAPE = {"pilotnet": (3, 66, 200), "donkeycar_linear": (3, 120, 160)}
PARAMS = {"pilotnet": 252_219}  # the paper: "27 million connections and 250 thousand parameters"


def conv_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered_with_exact_layer_shapes(name):
    assert name in list_models()
    model = create_model(name).eval()
    assert model.in_shape == IN_SHAPE[name]
    assert conv_outputs(model, torch.zeros(2, *model.in_shape)) == EXPECTED[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0]) for m in convs] == KERNELS[name]
    assert all(m.padding == (0, 0) for m in convs)  # Keras "valid"
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == FC[name]
    if name in PARAMS:
        assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_activation_after_every_conv_and_hidden_dense(name):
    model = create_model(name)
    mods = [m for m in model.modules() if not list(m.children())]
    weighted = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv2d | nn.Linear)]
    for i in weighted[:-1]:
        assert isinstance(mods[i + 1], nn.ReLU), (i, mods[i])
    assert weighted[-1] == len(mods) - 1  # the output is linear


def test_pilotnet_variants_share_one_set_of_weights():
    relu = create_model("pilotnet")
    elu = create_model("pilotnet", activation="elu", dropout=0.5)
    assert sum(isinstance(m, nn.ELU) for m in elu.modules()) == 8 and not any(
        isinstance(m, nn.ReLU) for m in elu.modules())
    assert isinstance(elu.dropout, nn.Dropout) and elu.dropout.p == 0.5
    elu.load_state_dict(relu.state_dict())  # same keys and shapes
    x = torch.rand(2, 3, 66, 200)
    with torch.no_grad():
        assert not torch.equal(relu.eval()(x), elu.eval()(x))
    with pytest.raises(ValueError, match="activation"):
        create_model("pilotnet", activation="tanh")


def test_donkeycar_variants():
    net = create_model("donkeycar_linear", dropout=0.0, num_outputs=1)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    assert net(torch.zeros(1, 3, 120, 160)).shape == (1, 1)
    drops = [m.p for m in create_model("donkeycar_linear").modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.2] * 7  # after each of 5 convs and 2 hidden dense layers, as donkeycar 4.x
    cat = create_model("donkeycar_linear", l4_stride=2)  # KerasCategorical's core
    assert conv_outputs(cat, torch.zeros(1, 3, 120, 160))[3] == (64, 5, 8)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vbp_follows_them(name):
    from vbp_live.attribution import create_method

    torch.manual_seed(0)
    model = create_model(name, activation="elu") if name == "pilotnet" else create_model(name)
    mask = create_method("vbp", model.eval()).attribute(torch.rand(2, *model.in_shape))  # (2, 1, H, W)
    assert mask.shape == (2, 1, *model.in_shape[1:]) and float(mask.max()) > 0


@pytest.mark.slow
def test_vbp_train_trains_pilotnet_with_snapshots(tmp_path):
    """``vbp-live train`` with ``model.name: pilotnet``: a few steps on a tiny 66x200 gray dataset."""
    from train_helpers import make_steering_dataset

    from vbp_live.cli.main import main

    ds = make_steering_dataset(tmp_path / "ds", n=16, height=66, width=200)
    cfg = tmp_path / "pilotnet.yaml"
    cfg.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        "model": {"name": "pilotnet", "args": {"channels": 1, "activation": "elu"}},
        "data": {"kind": "prepared", "path": str(ds)},
        "train": {"epochs": 2, "batch_size": 4, "progress": False, "threads": 1},
        "optim": {"lr": 0.01},
        "snapshot": {"epochs": [0, 2], "frames": 2},
    }))
    assert main(["train", "--config", str(cfg)]) == 0
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck.model_name == "pilotnet" and ck.model_args == {"channels": 1, "activation": "elu", "height": 66,
                                                              "width": 200}
    with np.load(tmp_path / "run" / "snapshots" / "masks.npz") as z:
        masks = [z[k] for k in z.files if k.startswith("epoch_")]
    assert len(masks) == 2 and masks[0].shape == (2, 66, 200)
    assert ck.build_model()(torch.zeros(1, 1, 66, 200)).shape == (1, 1)
