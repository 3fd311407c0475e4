"""``vbp-live import-model CARD -o model.pt``: a card's model as one vbp_live checkpoint, identical masks after.

Every case writes real files (torch.save, torch.jit.save) and reads the checkpoint back with the
weights-only loader. On bad input nothing is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from card_helpers import SIM_SCALE, sim_frames, write_card

from vbp_live.cli.main import main
from vbp_live.core.errors import CheckpointError
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.io.model_card import import_checkpoint, open_model
from vbp_live.models import create_model
from vbp_live.stream.engine import OverlayEngine


@pytest.fixture(scope="module")
def pilot() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("pilotnet", activation="elu").eval()


def same_predictions(a: Path, b: Path) -> None:
    """Both files give the same steering and the same masks on simulator-like frames."""
    frames = sim_frames(3)
    pa = OverlayEngine.from_checkpoint(a, device="cpu").infer(frames)
    pb = OverlayEngine.from_checkpoint(b, device="cpu").infer(frames)
    for x, y in zip(pa, pb, strict=True):
        assert x.steering_rad == y.steering_rad
        np.testing.assert_array_equal(x.mask, y.mask)


def test_state_dict_card_round_trips_into_a_checkpoint(tmp_path, pilot):
    torch.save(pilot.state_dict(), tmp_path / "model.pth")
    card = write_card(tmp_path, "format: state_dict\nweights: model.pth\nmodel: {architecture: pilotnet, "
                      "args: {activation: elu}}\n")
    path, _ = import_checkpoint(card, tmp_path / "model.pt")
    ck = load_checkpoint(path)  # weights-only
    assert ck.model_name == "pilotnet" and ck.model_args == {"activation": "elu"}
    assert ck.crop == open_model(card).crop and ck.crop.color == "yuv"
    assert ck.output.scale == pytest.approx(SIM_SCALE) and ck.meta["imported_from"] == str(card)
    for k, v in pilot.state_dict().items():
        assert torch.equal(ck.state_dict[k], v), k
    same_predictions(card, path)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "pickle"])
def test_torchscript_and_pickle_import_through_the_registered_architecture(tmp_path, pilot, fmt):
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(pilot), tmp_path / "model.bin")
    else:
        torch.save(pilot, tmp_path / "model.bin")
    card = write_card(tmp_path, f"format: {fmt}\nweights: model.bin\nmodel: {{architecture: pilotnet, "
                      "args: {activation: elu}}\n")
    out = tmp_path / "model.pt"
    path, _ = import_checkpoint(card, out, trust_pickle=True)
    assert load_checkpoint(path).model_name == "pilotnet"
    same_predictions(path, tmp_path / "model.pt")
    frames = sim_frames(2)
    direct = OverlayEngine.from_checkpoint(card, device="cpu", trust_pickle=True).infer(frames)
    via = OverlayEngine.from_checkpoint(path, device="cpu").infer(frames)
    for x, y in zip(direct, via, strict=True):
        assert x.steering_rad == pytest.approx(y.steering_rad, rel=1e-6, abs=1e-7)
        np.testing.assert_allclose(x.mask, y.mask, atol=1e-6)


@pytest.mark.slow
def test_a_torchscript_chain_imports_as_a_layer_stack(tmp_path, pilot):
    torch.jit.save(torch.jit.trace(pilot, torch.rand(1, 3, 66, 200)), tmp_path / "model.ts")
    card = write_card(tmp_path, "format: torchscript\nweights: model.ts\n")
    path, _ = import_checkpoint(card, tmp_path / "out.pt")
    ck = load_checkpoint(path)
    assert ck.model_name == "layer_stack" and ck.model_args["in_shape"] == [3, 66, 200]
    assert [layer["type"] for layer in ck.model_args["layers"]][:3] == ["conv2d", "elu", "identity"]
    same_predictions(card, path)
    x = torch.rand(2, 3, 66, 200)
    with torch.no_grad():
        torch.testing.assert_close(ck.build_model()(x), pilot(x) * SIM_SCALE)


def test_a_pickle_of_an_unregistered_class_is_refused_and_nothing_is_written(tmp_path):
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.Linear(2 * 64 * 198, 1)), tmp_path / "seq.pt")
    card = write_card(tmp_path, "format: pickle\nweights: seq.pt\n")
    assert open_model(card, trust_pickle=True).build_model() is not None  # usable with --checkpoint card.yaml
    with pytest.raises(CheckpointError, match=r"card\.yaml: cannot import: this pickled model is not a registered "
                                              r"architecture: set model\.architecture .*--checkpoint CARD\.yaml"):
        import_checkpoint(card, tmp_path / "out.pt", trust_pickle=True)
    assert not (tmp_path / "out.pt").exists()


def test_a_user_class_is_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "tinynets.py").write_text(
        "from torch import nn\n\n\nclass Tiny(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 64 * 198, 1))\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import tinynets

        torch.save(tinynets.Tiny().state_dict(), tmp_path / "tiny.pth")
    finally:
        sys.path.remove(str(tmp_path))
    card = write_card(tmp_path, "format: state_dict\nweights: tiny.pth\nmodel: {class_path: 'tinynets:Tiny'}\n")
    with pytest.raises(CheckpointError, match=r"model\.class_path names your own class; a checkpoint never imports "
                                              r"code"):
        import_checkpoint(card, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_cli_writes_the_checkpoint_and_reports_bad_input_in_one_line(tmp_path, pilot, capsys):
    torch.save(pilot.state_dict(), tmp_path / "model.pth")
    card = write_card(tmp_path, "format: state_dict\nweights: model.pth\nmodel: {architecture: pilotnet}\n")
    assert main(["import-model", str(card), "-o", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "m.pt: pilotnet({}), input 3x66x200 yuv, steering = output[0] x " in out
    assert f"{SIM_SCALE:.6g}" in out
    pickled = tmp_path / "whole.pt"
    torch.save(pilot, pickled)
    bad = write_card(tmp_path, "format: pickle\nweights: whole.pt\n", name="pickle.yaml")
    for argv, err in [([str(bad)], "a whole pickled model; refused because loading it runs code"),
                      ([str(tmp_path / "nope.yaml")], "nope.yaml: config file not found"),
                      ([str(pickled)], "CARD: expected a model card (.yaml or .yml)")]:
        assert main(["import-model", *argv, "-o", str(tmp_path / "x.pt")]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and err in lines[0], lines
    assert not (tmp_path / "x.pt").exists()


def test_old_checkpoints_are_in_project_units(tmp_path):
    from vbp_live.core.preprocess import CROP_PRESETS
    from vbp_live.io.checkpoint import save_checkpoint
    from vbp_live.models.output import OutputMap, steering_scale

    path = save_checkpoint(tmp_path / "a.pt", create_model("signnet"), CROP_PRESETS["signnet"])
    assert "output" not in torch.load(path, weights_only=True) and load_checkpoint(path).output == OutputMap()
    assert steering_scale("degrees", "left") == pytest.approx(math.pi / 180)
    assert steering_scale("radians", "right", "road_wheel", steering_ratio=16) == -16
