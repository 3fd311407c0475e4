"""Model cards: a network trained elsewhere (state dict, TorchScript, pickle) with its preprocessing and output unit.

Real files written with torch and read back through the card loader; the CLI commands take the card
as ``--checkpoint``. Bad input gives one line and runs nothing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from card_helpers import SIM_INPUT, SIM_SCALE, sim_frames, write_card
from torch import nn

from vbp_live.attribution import create_method
from vbp_live.core.errors import CheckpointError, ConfigError, ModelError
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.io.checkpoint import save_checkpoint
from vbp_live.io.model_card import foreign_format, load_card, open_model
from vbp_live.models import create_model, frames_to_input


@pytest.fixture(scope="module")
def pilot() -> nn.Module:
    torch.manual_seed(0)
    return create_model("pilotnet", activation="elu").eval()


@pytest.fixture
def sd_card(tmp_path, pilot) -> Path:
    torch.save(pilot.state_dict(), tmp_path / "model.pth")
    return write_card(tmp_path, """\
        format: state_dict
        weights: model.pth
        description: PilotNet (ELU) for the simulator
        model:
          architecture: pilotnet
          args: {activation: elu}
        """)


def reference(model: nn.Module, frames: list[np.ndarray]) -> np.ndarray:
    """The card's arithmetic written out: crop rows 60:-25, resize, BGR->YUV, x/127.5-1, output * scale."""
    x = []
    for f in frames:
        band = cv2.resize(f[60:-25], (200, 66), interpolation=cv2.INTER_LINEAR)
        x.append(cv2.cvtColor(band, cv2.COLOR_BGR2YUV).astype(np.float64) / 127.5 - 1.0)
    t = torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float()  # (B, 3, 66, 200)
    with torch.no_grad():
        return model(t)[:, 0].double().numpy() * SIM_SCALE


def test_state_dict_card_gives_preprocessing_and_output_in_project_units(sd_card, pilot):
    ck = open_model(sd_card)
    assert ck.model_name == "pilotnet" and ck.model_args == {"activation": "elu"}
    assert ck.crop.color == "yuv" and ck.crop.box(160, 320) == (60, 135, 0, 320)
    assert ck.output.scale == pytest.approx(SIM_SCALE) and ck.meta["description"].startswith("PilotNet")
    frames = sim_frames()
    x = frames_to_input(np.stack([preprocess_frame(f, ck.crop) for f in frames]), spec=ck.crop)  # (3, 3, 66, 200)
    with torch.no_grad():
        got = ck.build_model()(x)[:, 0].double().numpy()
    np.testing.assert_allclose(got, reference(pilot, frames), rtol=1e-5, atol=1e-6)


def test_card_schema_errors_name_file_and_line(tmp_path, sd_card):
    text = sd_card.read_text()
    bad = write_card(tmp_path, text.replace("  color: yuv", "  colour: yuv"), body="", name="bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: unknown key 'input\.colour'"):
        load_card(bad)
    bad = write_card(tmp_path, text.replace("  full_scale_deg: 25\n", ""), body="", name="bad2.yaml")
    with pytest.raises(ConfigError, match=r"bad2\.yaml:\d+: output: a normalized output needs full_scale_deg"):
        load_card(bad)
    bad = write_card(tmp_path, text.replace("color: yuv", "color: yuv\n  channel_order: rgb"), body="", name="b3.yaml")
    with pytest.raises(ConfigError, match=r"b3\.yaml:\d+: input: channel_order must be a reordering of 'yuv'"):
        load_card(bad)
    bad = write_card(tmp_path, text.replace("scaling: x/127.5-1", "scaling: __import__('os')"), body="",
                     name="b4.yaml")
    with pytest.raises(ConfigError, match=r"b4\.yaml:\d+: input: scaling .* is not an affine expression"):
        load_card(bad)
    bad = write_card(tmp_path, text.replace("architecture: pilotnet", "architecture: resnet50"), body="",
                     name="b5.yaml")
    with pytest.raises(ConfigError, match=r"b5\.yaml:\d+: model\.architecture: unknown 'resnet50'; registered: "):
        load_card(bad)
    bad = write_card(tmp_path, "format: onnx\nweights: m.onnx\n", body="", name="b6.yaml")
    with pytest.raises(ConfigError, match=r"b6\.yaml:1: format onnx needs an 'input' section"):
        load_card(bad)


def test_missing_weights_file_is_one_line(tmp_path):
    card = write_card(tmp_path, "format: state_dict\nweights: nowhere.pth\nmodel: {architecture: pilotnet}\n")
    with pytest.raises(CheckpointError, match=r"card\.yaml:2: weights: no such file .*nowhere\.pth$"):
        open_model(card)


def test_weights_that_do_not_fit_list_keys_and_shapes(tmp_path, pilot):
    sd = dict(pilot.state_dict())
    sd["conv_extra.weight"] = sd.pop("head.7.weight")  # a renamed key
    torch.save(sd, tmp_path / "model.pth")
    card = write_card(tmp_path, """\
        format: state_dict
        weights: model.pth
        model: {architecture: pilotnet, args: {channels: 1}}
        """)
    with pytest.raises(CheckpointError) as info:
        open_model(card)
    msg = str(info.value)
    assert "\n" not in msg and "model.pth do not fit pilotnet({'channels': 1})" in msg
    assert "missing head.7.weight" in msg and "unexpected conv_extra.weight" in msg
    assert "shape features.0.weight (24, 3, 5, 5) in the file vs (24, 1, 5, 5) in the model" in msg


USER_NET = """\
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 5, stride=2)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2)
        self.fc = nn.Linear(width * 15 * 48, 1)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))
"""


def test_user_class_is_imported_from_the_cards_folder(tmp_path):
    (tmp_path / "my_steering_nets.py").write_text(USER_NET)
    (tmp_path / "broken_nets.py").write_text("raise RuntimeError('boom')\n")
    card = write_card(tmp_path, """\
        format: state_dict
        weights: small.pth
        model: {class_path: "my_steering_nets:SmallNet", args: {width: 8}}
        """)
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        torch.manual_seed(1)
        net = importlib.import_module("my_steering_nets").SmallNet(width=8)
    finally:
        sys.path.remove(str(tmp_path))
    torch.save(net.state_dict(), tmp_path / "small.pth")
    ck = open_model(card)
    assert ck.model_name == "my_steering_nets:SmallNet" and str(tmp_path) not in sys.path
    x = torch.rand(2, 3, 66, 200)
    with torch.no_grad():
        torch.testing.assert_close(ck.build_model()(x), net(x) * SIM_SCALE)
    for path, pattern in [("nowhere_nets:SmallNet", r"card\.yaml:3: .*cannot import nowhere_nets \(ModuleNotFound"),
                          ("broken_nets:SmallNet", r"cannot import broken_nets \(RuntimeError: boom\)"),
                          ("my_steering_nets:BigNet", r"my_steering_nets has no torch\.nn\.Module class BigNet")]:
        card.write_text(card.read_text().replace("my_steering_nets:SmallNet", path).replace("nowhere_nets:SmallNet",
                                                                                         path))
        with pytest.raises(ModelError, match=pattern):
            open_model(card)
        card.write_text(card.read_text().replace(path, "my_steering_nets:SmallNet"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_runs_visualbackprop_through_its_layers(tmp_path, pilot, how):
    x = torch.rand(2, 3, 66, 200)
    scripted = torch.jit.script(pilot) if how == "script" else torch.jit.trace(pilot, x)
    torch.jit.save(scripted, tmp_path / "model.ts")
    card = write_card(tmp_path, "format: torchscript\nweights: model.ts\n")
    ck = open_model(card)
    model = ck.build_model()
    with torch.no_grad():
        torch.testing.assert_close(model(x), pilot(x) * SIM_SCALE)
    got = create_method("vbp", model).attribute(x)
    want = create_method("vbp", pilot).attribute(x)
    torch.testing.assert_close(got, want)
    named = write_card(tmp_path, "format: torchscript\nweights: model.ts\nmodel: {architecture: pilotnet, "
                       "args: {activation: elu}}\n", name="named.yaml")
    assert open_model(named).model_name == "pilotnet"


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 66 * 200, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc((y + self.act(y)).flatten(1))


def test_torchscript_that_is_not_a_chain_names_what_is_missing(tmp_path):
    torch.jit.save(torch.jit.script(Residual()), tmp_path / "res.ts")
    card = write_card(tmp_path, "format: torchscript\nweights: res.ts\n")
    with pytest.raises(ModelError, match=r"res\.ts: TorchScript model: forward computes aten::add between its "
                                         r"layers .*model\.architecture"):
        open_model(card)
    (tmp_path / "junk.ts").write_bytes(b"not a zip")
    junk = write_card(tmp_path, "format: torchscript\nweights: junk.ts\n", name="junk.yaml")
    with pytest.raises(CheckpointError, match=r"junk\.ts: not a TorchScript model"):
        open_model(junk)


@pytest.mark.parametrize("zipfile", [True, False])
def test_whole_pickles_need_trust_pickle(tmp_path, pilot, zipfile, caplog):
    torch.save(pilot, tmp_path / "whole.pt", _use_new_zipfile_serialization=zipfile)  # False: the pre-1.6 format
    card = write_card(tmp_path, "format: pickle\nweights: whole.pt\n")
    with pytest.raises(CheckpointError, match=r"whole\.pt: a whole pickled model; refused because loading it runs "
                                              r"code from the file \(pass --trust-pickle if you trust it\)$"):
        open_model(card)
    with caplog.at_level(logging.WARNING):
        ck = open_model(card, trust_pickle=True)
    assert "runs code from the file" in caplog.text
    assert ck.model_name == "pilotnet"  # built by the registry: rebuilt from its name, args and weights
    x = torch.rand(1, 3, 66, 200)
    with torch.no_grad():
        torch.testing.assert_close(ck.build_model()(x), pilot(x) * SIM_SCALE)


def test_a_pickle_given_as_state_dict_says_what_to_do(tmp_path, pilot):
    torch.save(pilot, tmp_path / "whole.pt")
    card = write_card(tmp_path, "format: state_dict\nweights: whole.pt\nmodel: {architecture: pilotnet}\n")
    with pytest.raises(CheckpointError, match=r"refused because loading it could run code \(a whole pickled model\? "
                                              r"then format: pickle and --trust-pickle\)"):
        open_model(card)


def test_checkpoint_card_and_plain_checkpoints_still_load(tmp_path):
    from vbp_live.core.preprocess import CROP_PRESETS
    from vbp_live.io.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "sign.pt", create_model("signnet"), CROP_PRESETS["signnet"])
    assert open_model(ckpt).output.identity
    card = write_card(tmp_path, "format: checkpoint\nweights: sign.pt\ndescription: ours\n", body="")
    assert open_model(card).model_name == "signnet"
    bad = write_card(tmp_path, "format: checkpoint\nweights: sign.pt\n", name="bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: input: a vbp_live checkpoint carries its own"):
        open_model(bad)


def test_donkeycar_card_takes_the_angle_output(tmp_path):
    torch.manual_seed(2)
    net = create_model("donkeycar_linear").eval()
    torch.save(net.state_dict(), tmp_path / "pilot.pth")
    card = write_card(tmp_path, """\
        format: state_dict
        weights: pilot.pth
        model: {architecture: donkeycar_linear}
        input: {height: 120, width: 160, color: rgb, scaling: x/255}
        output: {unit: normalized, full_scale_deg: 30, positive: right, index: 0}
        """, body="")
    model = open_model(card).build_model()
    x = torch.rand(2, 3, 120, 160)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x)[:, :1] * -math.radians(30))


@pytest.mark.slow
def test_run_and_explain_take_a_card(tmp_path, sd_card, pilot, capsys):
    from vbp_live.cli.main import main
    from vbp_live.stream.engine import OverlayEngine

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(sim_frames(3)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), f)
    assert main(["run", str(frames), "--checkpoint", str(sd_card), "--device", "cpu", "--out",
                 str(tmp_path / "o.mp4"), "--csv", str(tmp_path / "o.csv")]) == 0
    assert (tmp_path / "o.mp4").stat().st_size > 0
    engine = OverlayEngine.from_checkpoint(sd_card, device="cpu")
    preds = engine.infer(sim_frames(3))
    np.testing.assert_allclose([p.steering_rad for p in preds], reference(pilot, sim_frames(3)), rtol=1e-4,
                               atol=1e-5)
    assert main(["explain", str(frames), "--checkpoint", str(sd_card), "--device", "cpu", "--methods", "vbp",
                 "--out", str(tmp_path / "ex"), "--frames", "2"]) == 0
    assert len(list((tmp_path / "ex").glob("*.png"))) == 2
    capsys.readouterr()
    assert main(["explain", str(frames), "--checkpoint", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: config file not found" in capsys.readouterr().err


EXAMPLE_CARD = Path(__file__).resolve().parents[1] / "configs" / "cards" / "car-behavioral-cloning.yaml"


@pytest.fixture
def keras_card(tmp_path, shared_data) -> Path:
    """The example card of configs/cards/, pointing at the real Keras 1.2.1 file in shared data."""
    h5 = shared_data / "keras-h5" / "car-behavioral-cloning" / "model.h5"
    card = tmp_path / "car-behavioral-cloning.yaml"
    card.write_text(EXAMPLE_CARD.read_text().replace("weights: model.h5", f"weights: {h5}"))
    return card


def test_example_keras_card_loads_the_real_file(keras_card):
    ck = open_model(keras_card)
    assert ck.model_name == "layer_stack" and ck.crop.box(160, 320) == (60, 135, 0, 320)
    assert ck.output.scale == pytest.approx(SIM_SCALE)
    frames = sim_frames(2)
    x = frames_to_input(np.stack([preprocess_frame(f, ck.crop) for f in frames]), spec=ck.crop)  # (2, 3, 66, 200)
    net = create_model(ck.model_name, **ck.model_args).eval()
    net.load_state_dict(ck.state_dict)
    with torch.no_grad():
        want = net(x)[:, 0].double().numpy() * SIM_SCALE  # the converted net, its output in rad SWA
        got = ck.build_model()(x)[:, 0].double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(np.abs(got) < math.radians(25) * 14.8)


@pytest.mark.slow
def test_run_explain_evaluate_and_import_the_keras_card_on_a_dashcam_clip(tmp_path, keras_card, shared_data, capsys):
    from vbp_live.cli.main import main

    clip = shared_data / "video" / "openCV_LaneDetection_road.mp4"
    assert main(["run", str(clip), "--checkpoint", str(keras_card), "--device", "cpu", "--max-frames", "4",
                 "--out", str(tmp_path / "overlay.mp4"), "--csv", str(tmp_path / "pred.csv")]) == 0
    assert (tmp_path / "overlay.mp4").stat().st_size > 0
    assert main(["explain", str(clip), "--checkpoint", str(keras_card), "--device", "cpu", "--methods", "vbp,saliency",
                 "--frames", "2", "--out", str(tmp_path / "ex")]) == 0
    assert len(list((tmp_path / "ex").glob("*.png"))) == 2
    assert main(["evaluate", "--data", str(clip), "--checkpoint", str(keras_card), "--device", "cpu",
                 "--methods", "vbp", "--frames", "2", "--steps", "2", "--sanity-frames", "0",
                 "--out", str(tmp_path / "ev")]) == 0
    assert main(["import-model", str(keras_card), "-o", str(tmp_path / "bc.pt")]) == 0
    capsys.readouterr()
    from vbp_live.stream.engine import OverlayEngine

    frames = sim_frames(2)
    a = OverlayEngine.from_checkpoint(keras_card, device="cpu").infer(frames)
    b = OverlayEngine.from_checkpoint(tmp_path / "bc.pt", device="cpu").infer(frames)
    for x, y in zip(a, b, strict=True):
        assert x.steering_rad == y.steering_rad
        np.testing.assert_array_equal(x.mask, y.mask)
    # an ELU net: by default the positive parts of its maps (structure); --signed-maps: a nearly uniform band
    signed = OverlayEngine.from_checkpoint(keras_card, device="cpu", positive_maps=False).infer(frames)
    assert all(np.median(x.mask) < 0.2 < 0.8 < np.median(y.mask) for x, y in zip(a, signed, strict=True))
    assert main(["run", str(clip), "--checkpoint", str(keras_card), "--device", "cpu", "--max-frames", "2",
                 "--signed-maps", "--no-output"]) == 0


@pytest.mark.slow
def test_demo_and_bench_take_a_card(tmp_path, sd_card, capsys):
    from vbp_live.cli.main import main

    assert main(["demo", "--frames", "3", "--checkpoint", str(sd_card), "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "demo.mp4")]) == 0
    assert f"model: {sd_card}" in capsys.readouterr().out
    assert main(["bench", "--checkpoint", str(sd_card), "--batches", "1", "--repeats", "1", "--no-reference",
                 "--no-peers", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| card.yaml | 1 | forward |" in out and "vbp" in out
    assert main(["bench", "--checkpoint", str(sd_card), "--size", "66x200", "--device", "cpu"]) == 1
    assert "--size: the input size of --checkpoint is its own" in capsys.readouterr().err


def test_an_input_size_or_output_index_the_model_lacks_is_one_line(tmp_path, pilot):
    torch.save(pilot.state_dict(), tmp_path / "model.pth")
    head = "format: state_dict\nweights: model.pth\nmodel: {architecture: pilotnet, args: {activation: elu}}\n"
    card = write_card(tmp_path, head, SIM_INPUT.replace("height: 66", "height: 30"))
    with pytest.raises(ConfigError, match=r"card\.yaml:4: input: the model does not take a 3x30x200 input \("):
        open_model(card)
    card = write_card(tmp_path, head, SIM_INPUT + "  index: 1\n")
    with pytest.raises(ConfigError, match=r"card\.yaml:\d+: output\.index 1 but the model has 1 output\(s\) per frame"):
        open_model(card)


def test_a_foreign_model_file_without_a_card_says_to_write_one(tmp_path, shared_data):
    """--checkpoint model.h5 / .onnx / TorchScript: one line naming the format and the card to write."""
    h5 = shared_data / "keras-h5" / "car-behavioral-cloning" / "model.h5"
    script = tmp_path / "net.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())).save(str(script))
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(b"\x08\x07")
    for path, fmt in ((h5, "keras_h5"), (script, "torchscript"), (onnx, "onnx")):
        with pytest.raises(CheckpointError, match=rf"{path.name}: a .* file, not a vbp_live checkpoint.*format: {fmt}"):
            open_model(path)
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, create_model("netsvf"), CropSpec(0.0, 1.0, 125, 640))
    assert foreign_format(ours) is None
