"""The one checkpoint format: rebuilds model + preprocessing alone, weights-only, atomic, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vbp_live.models import create_model


def test_roundtrip_rebuilds_model_and_crop(tmp_path):
    torch.manual_seed(0)
    model = create_model("nethvf", height=135).eval()
    crop = CROP_PRESETS["nethvf"].with_height(135)
    path = save_checkpoint(tmp_path / "m.pt", model, crop, config={"lr": 0.1}, meta={"rmse": 0.05})
    ck = load_checkpoint(path)
    assert (ck.model_name, ck.model_args, ck.crop, ck.config["lr"]) == ("nethvf", {"height": 135}, crop, 0.1)
    rebuilt = ck.build_model()
    x = torch.rand(2, 1, 135, 351)
    assert not rebuilt.training and torch.equal(rebuilt(x), model(x))


def test_half_storage_is_compact_and_loads_as_float(tmp_path):
    model = create_model("signnet").eval()
    full = save_checkpoint(tmp_path / "f.pt", model, CROP_PRESETS["signnet"])
    half = save_checkpoint(tmp_path / "h.pt", model, CROP_PRESETS["signnet"], half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    rebuilt = load_checkpoint(half).build_model()
    assert all(p.dtype == torch.float32 for p in rebuilt.parameters())


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


class Thing:
    """An arbitrary Python object."""

    def __init__(self):
        self.value = 3


OBJECTS = "contains Python objects"
REFUSED = "refused because loading it could run code"
NOT_A_CHECKPOINT = "not a checkpoint (corrupt or not written by torch.save)"


def test_code_in_a_checkpoint_never_runs(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "vbp_live/checkpoint-v1", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match=rf"evil\.pt: {OBJECTS} \(builtins\.print\); {REFUSED}$"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def _truncated(path):
    save_checkpoint(path, create_model("signnet"), CROP_PRESETS["signnet"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _whole_module(path):
    torch.save(create_model("signnet"), path)  # the module pickled, not its state_dict


def _plain_pickle(path):
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "thing": Thing()}, f)


def _torch_saved_object(path):
    torch.save({"format": "vbp_live/checkpoint-v1", "thing": Thing()}, path)


@pytest.mark.parametrize(("make", "message"), [
    (_random_bytes, NOT_A_CHECKPOINT),
    (_truncated, NOT_A_CHECKPOINT),
    (lambda p: p.write_bytes(b""), NOT_A_CHECKPOINT),
    (lambda p: p.write_text("not a checkpoint"), NOT_A_CHECKPOINT),
    (_whole_module, f"{OBJECTS} (vbp_live.models.pilotnet.ConvNet"),
    (_plain_pickle, f"{OBJECTS} (test_io_checkpoint.Thing); {REFUSED}"),
    (_torch_saved_object, f"{OBJECTS} (test_io_checkpoint.Thing); {REFUSED}"),
], ids=["random", "truncated", "empty", "text", "whole-module", "pickle", "torch-saved-object"])
def test_unloadable_files_say_what_they_are_in_one_line(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text and "weights_only" not in text


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a vbp_live checkpoint"):
        load_checkpoint(other)


def test_wrong_net_or_size_names_both(tmp_path):
    path = save_checkpoint(tmp_path / "s.pt", create_model("netsvf"), CROP_PRESETS["netsvf"])
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"netsvf.*nethvf"):
        ck.check_model("nethvf", {})
    with pytest.raises(CheckpointError, match="height"):
        ck.check_model("netsvf", {"height": 135})
    ck.model_args = {"width": 320}  # the FC head of a 640-wide net does not fit 320 columns
    with pytest.raises(CheckpointError, match="do not fit"):
        ck.build_model()


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", create_model("signnet"), CROP_PRESETS["signnet"], meta={"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, create_model("signnet"), CROP_PRESETS["signnet"], meta={"v": 2})
    assert load_checkpoint(path).meta == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


def test_model_without_registry_args_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="create_model"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2), CROP_PRESETS["netsvf"])


def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    import stat

    path = save_checkpoint(tmp_path / "p.pt", create_model("signnet"), CROP_PRESETS["signnet"])
    mode = stat.S_IMODE(path.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
