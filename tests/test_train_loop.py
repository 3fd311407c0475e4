"""The training loop: learning, metrics CSV, snapshots that change nothing, exact resume, failures."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from train_helpers import make_steering_dataset, tiny_registered

from vbp_live.core.errors import ConfigError, UsageError
from vbp_live.io.checkpoint import CheckpointError, load_checkpoint
from vbp_live.models import create_model
from vbp_live.train import NonFiniteLossError, Trainer, load_config, load_data
from vbp_live.train.callbacks import tensorboard_installed
from vbp_live.train.config import config_to_dict
from vbp_live.train.data import shard
from vbp_live.train.dist import DistInfo
from vbp_live.train.metrics import evaluate_model
from vbp_live.train.run import default_callbacks, train
from vbp_live.train.snapshots import VBPSnapshots, render_strip, snapshot_steps


@pytest.fixture(scope="module", autouse=True)
def _tiny_steer():
    """``tiny_steer`` is registered while this module's tests run, and gone after."""
    with tiny_registered():
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_steering_dataset(tmp_path_factory.mktemp("data") / "ds", n=96)  # 72 train / 24 test


def tiny(run_dir: Path, ds: Path, *extra: str):
    base = [f"run_dir={run_dir}", "model.name=tiny_steer", f"data.path={ds}", "train.epochs=2",
            "train.batch_size=8", "train.progress=false", "train.threads=1", "optim.lr=0.05", "snapshot.epochs=[]"]
    return load_config(None, base + list(extra))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_learns_and_writes_metrics(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "train.epochs=3")
    data = load_data(cfg.data)
    torch.manual_seed(cfg.train.seed)
    before = evaluate_model(create_model("tiny_steer"), data.frames, data.targets, data.val_idx)
    res = train(cfg)
    assert res.status == "done" and res.global_step == 27
    assert res.metrics["val_rmse_rad"] < 0.6 * before["val_rmse_rad"]
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for key in ("val_rmse_rad", "val_rmse_deg", "val_within_1deg", "val_within_5deg", "train_frames_per_s", "lr"):
        assert key in rows[0]
    r = rows[-1]
    assert float(r["val_rmse_deg"]) == pytest.approx(np.degrees(float(r["val_rmse_rad"])), rel=1e-4)
    assert 0 <= float(r["val_within_1deg"]) <= float(r["val_within_5deg"]) <= 1
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == config_to_dict(cfg)


def test_checkpoint_rebuilds_model_and_crop(tmp_path, dataset):
    res = train(tiny(tmp_path / "run", dataset, "train.epochs=1"))
    ck = load_checkpoint(res.checkpoint)
    data = load_data(tiny(tmp_path / "run", dataset).data)
    assert ck.crop == data.crop and ck.model_name == "tiny_steer"
    assert ck.model_args == {"height": 24, "width": 48} and ck.config["optim"]["lr"] == 0.05
    assert ck.train_state["epoch"] == 1 and ck.meta["metrics"]["epoch"] == 1
    m = ck.build_model()
    assert evaluate_model(m, data.frames, data.targets, data.val_idx)["val_rmse_rad"] == pytest.approx(
        ck.meta["metrics"]["val_rmse_rad"], rel=1e-5)
    with pytest.raises(CheckpointError, match=r"tiny_steer.*netsvf"):
        ck.check_model("netsvf", {"height": 125, "width": 640})
    with pytest.raises(CheckpointError, match=r"'width': 48.*'width': 64"):
        ck.check_model("tiny_steer", {"height": 24, "width": 64})


def test_init_from_starts_from_a_checkpoints_weights_with_a_fresh_schedule(tmp_path, dataset):
    first = train(tiny(tmp_path / "a", dataset, "train.epochs=1"))
    # a tiny lr: the weights stay those loaded (BatchNorm's running statistics still move: parameters only)
    init = f"train.init_from={first.checkpoint}"
    second = train(tiny(tmp_path / "b", dataset, "train.epochs=1", "optim.lr=1e-9", init))
    assert second.status == "done" and second.global_step == 9  # a fresh run: its own steps and schedule
    src, dst = load_checkpoint(first.checkpoint), load_checkpoint(second.checkpoint)
    params = [n for n, _ in src.build_model().named_parameters()]
    assert params and all(torch.allclose(src.state_dict[n], dst.state_dict[n], atol=1e-6) for n in params)
    fresh = train(tiny(tmp_path / "e", dataset, "train.epochs=1", "optim.lr=1e-9"))
    assert not all(torch.allclose(src.state_dict[n], weights(fresh.checkpoint)[n], atol=1e-6) for n in params)
    assert dst.train_state["global_step"] == 9 and dst.config["train"]["init_from"] == str(first.checkpoint)
    other = make_steering_dataset(tmp_path / "other", n=32, height=24, width=40)
    with pytest.raises(CheckpointError, match="width"):
        train(tiny(tmp_path / "c", other, f"train.init_from={first.checkpoint}"))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        train(tiny(tmp_path / "d", dataset, f"train.init_from={tmp_path / 'junk.pt'}"))


def test_snapshots_do_not_change_training(tmp_path, dataset):
    with_snaps = train(tiny(tmp_path / "a", dataset, "snapshot.epochs=[0, 0.1, 0.5, 1, 2]", "snapshot.frames=3"))
    without = train(tiny(tmp_path / "b", dataset))
    assert_same(weights(with_snaps.checkpoint), weights(without.checkpoint))
    strips = sorted((tmp_path / "a" / "snapshots").glob("strip_*.png"))
    assert len(strips) == 3
    img = cv2.imread(str(strips[0]))
    assert img.shape[1] == 6 * 48 and img.shape[0] == 7 * (18 + 6 * 24)  # input, 5 masks, overlay; enlarged 6x
    with np.load(tmp_path / "a" / "snapshots" / "masks.npz") as z:
        masks = [z[k] for k in z.files if k.startswith("epoch_")]
    assert len(masks) == 5 and all(m.shape == (3, 24, 48) for m in masks)
    assert not np.array_equal(masks[0], masks[-1])  # training changed what the net looks at


def test_taking_a_snapshot_leaves_the_model_alone(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset)
    data = load_data(cfg.data)
    cb = VBPSnapshots(tmp_path / "snaps", data.val_idx[:2], [0.5])
    trainer = Trainer(cfg, data, callbacks=[cb])
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    rng = torch.get_rng_state()
    cb.take(trainer, 0.5)
    assert trainer.raw_model.training and all(m.training for m in trainer.raw_model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in trainer.raw_model.modules())
    assert torch.equal(rng, torch.get_rng_state())
    assert_same(before, trainer.raw_model.state_dict())


def test_snapshot_schedule_and_strip_layout():
    assert snapshot_steps([0.1, 0.5, 1, 4, 16, 32], 10, 40) == {1: 0.1, 5: 0.5, 10: 1.0, 40: 4.0}
    assert snapshot_steps([0, 0.01], 10, 40) == {0: 0.0, 1: 0.01}
    frame = np.full((125, 640), 100, np.uint8)
    mask = np.zeros((125, 640), np.float32)
    mask[:, :320] = 1.0
    strip = render_strip(frame, [mask * 0.5, mask], ["epoch 1", "epoch 2"])
    assert strip.shape == (4 * (125 + 18), 640, 3)  # vertical for wide frames
    overlay = strip[-125:]
    assert overlay[60, 100, 2] > 200 and overlay[60, 100, 0] < 60  # red where the mask is 1
    assert tuple(overlay[60, 500]) == (100, 100, 100)  # untouched where it is 0
    assert render_strip(np.zeros((64, 64), np.uint8), [np.zeros((64, 64))], ["e"]).shape[1] > 3 * 256


@pytest.mark.parametrize("stop_at, position", [(13, (1, 4)), (18, (1, 9))], ids=["mid-epoch", "before-validation"])
def test_max_steps_stop_then_resume_is_exact(tmp_path, dataset, stop_at, position):
    # 9 steps an epoch: step 13 is mid epoch 2; step 18 is its last step, stopped before its validation
    snaps = ["snapshot.epochs=[0.5, 1, 1.5, 3]", "snapshot.frames=2", "train.epochs=3"]
    straight = train(tiny(tmp_path / "a", dataset, *snaps))
    stopped = train(tiny(tmp_path / "b", dataset, *snaps, f"train.max_steps={stop_at}"))
    assert stopped.status == "max_steps" and stopped.global_step == stop_at
    st = load_checkpoint(stopped.checkpoint).train_state
    assert (st["epoch"], st["step_in_epoch"]) == position
    resumed = train(tiny(tmp_path / "b", dataset, *snaps), resume=True)
    assert resumed.status == "done" and resumed.global_step == 27
    assert_same(weights(straight.checkpoint), weights(resumed.checkpoint))
    a, b = (list(csv.DictReader((tmp_path / d / "metrics.csv").read_text().splitlines())) for d in "ab")
    assert [r["val_rmse_rad"] for r in a] == [r["val_rmse_rad"] for r in b]
    masks = [tmp_path / d / "snapshots" / "masks.npz" for d in "ab"]
    with np.load(masks[0]) as za, np.load(masks[1]) as zb:
        assert sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path, dataset):
    train(tiny(tmp_path / "run", dataset, "train.max_steps=3"))
    with pytest.raises(CheckpointError, match="optim.lr"):
        train(tiny(tmp_path / "run", dataset, "optim.lr=0.1"), resume=True)
    with pytest.raises(UsageError, match="--resume"):
        train(tiny(tmp_path / "run", dataset))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny(tmp_path / "other", dataset), resume=True)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "train.epochs=4", "optim.schedule=step", "optim.milestones=[1]",
               "optim.gamma=1e9")
    with pytest.raises(NonFiniteLossError, match=r"last good checkpoint .*last\.pt \(epoch 1\)"):
        train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck.train_state["epoch"] == 1 and ck.train_state["step_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ck.state_dict.values() if v.is_floating_point())


def test_wrong_input_size_is_refused(tmp_path, dataset):
    with pytest.raises(ValueError, match=r"model.args.width=64 .* 24x48"):
        train(tiny(tmp_path / "run", dataset, "model.args={width: 64}"))
    with pytest.raises(ValueError, match="nll needs class labels"):
        train(tiny(tmp_path / "run2", dataset, "train.loss=nll"))


def test_signnet_classification_variant(tmp_path):
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "signnet.yaml", [
        f"run_dir={tmp_path / 'run'}", "data.synthetic_frames=80", "data.synthetic_size=64", "data.num_classes=4",
        "train.epochs=2", "train.batch_size=16", "train.progress=false", "train.threads=2",
        "snapshot.epochs=[2]", "snapshot.frames=1"])
    res = train(cfg)
    ck = load_checkpoint(res.checkpoint)
    assert ck.model_name == "signnet" and ck.model_args["num_classes"] == 4 and ck.model_args["height"] == 64
    assert 0 <= res.metrics["val_accuracy"] <= 1 and np.isfinite(res.metrics["val_loss"])
    assert len(list((tmp_path / "run" / "snapshots").glob("strip_*.png"))) == 1
    assert "val_rmse_rad" not in res.metrics


def test_default_callbacks(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "snapshot.epochs=[1]", "snapshot.indices=[80, 90]")
    cbs = default_callbacks(cfg, load_data(cfg.data))
    tb = ["TensorBoard"] if tensorboard_installed() else []  # train.tensorboard=auto
    assert [type(c).__name__ for c in cbs] == ["MetricsCSV", *tb, "VBPSnapshots"]
    assert cbs[-1].rows.tolist() == [80, 90]


def test_non_finite_weights_are_never_saved(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "train.max_steps=2")
    train(cfg)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    trainer = Trainer(cfg, load_data(cfg.data))
    with torch.no_grad():
        next(trainer.raw_model.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        trainer.save()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    trainer = Trainer(cfg, load_data(cfg.data))
    stats = [n for n, b in trainer.raw_model.named_buffers() if b.is_floating_point()]
    assert stats  # BatchNorm's running statistics: a NaN there ruins eval-mode outputs just the same
    trainer.raw_model.get_buffer(stats[0]).fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=stats[0].replace(".", r"\.")):
        trainer.save()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


@pytest.mark.gpu
def test_cuda_mixed_precision(tmp_path, dataset):
    res = train(tiny(tmp_path / "run", dataset, "train.device=cuda", "train.amp=fp16", "snapshot.epochs=[1]"))
    ck = load_checkpoint(res.checkpoint)
    assert ck.train_state["scaler"]["scale"] > 0 and res.metrics["val_rmse_rad"] < 1.0
    assert all(v.device.type == "cpu" for v in ck.state_dict.values())


def test_snapshot_rows_outside_the_dataset_fail_before_training(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "snapshot.indices=[1, 100000]")
    with pytest.raises(ConfigError, match=r"snapshot.indices: rows \[100000\] are outside the \d+ rows of "):
        train(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_channels_last_trains_the_same_up_to_float_rounding(tmp_path, dataset):
    cfg_cl, cfg_plain = (tiny(tmp_path / name, dataset, f"train.channels_last={on}")
                         for name, on in (("cl", "true"), ("plain", "false")))
    trainer = Trainer(cfg_cl, load_data(cfg_cl.data))
    conv = trainer.raw_model.features[1][1].weight  # (C_out, C_in, 3, 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    cl, plain = train(cfg_cl), train(cfg_plain)
    a, b = weights(cl.checkpoint), weights(plain.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4), k
    assert cl.metrics["val_rmse_rad"] == pytest.approx(plain.metrics["val_rmse_rad"], rel=1e-3)


def test_temporal_pairs_plan_loss_and_augmentation(tmp_path, dataset):
    cfg = tiny(tmp_path / "run", dataset, "train.pair_weight=0.5", "augment.enabled=true")
    data = load_data(cfg.data)
    trainer = Trainer(cfg, data)
    batches = trainer.plan(0)
    assert len(batches) == 71 // 4 and all(len(b) == 8 for b in batches)  # 71 of 72 train rows have a next one
    assert all(np.array_equal(b[4:], b[:4] + 1) for b in batches)  # each planned row, then its next frame
    d = trainer.augment.draw(0, 0, 8)  # a frame and its next one change alike
    assert np.array_equal(d.shift_x[:4], d.shift_x[4:]) and np.array_equal(d.contrast[:4], d.contrast[4:])
    two = [shard(b, r, 2) for b in batches[:1] for r in range(2)]  # a rank's slice keeps its pairs
    assert all(np.array_equal(s[2:], s[:2] + 1) for s in two)
    x, y = torch.randn(8, 1, 24, 48), torch.linspace(-0.3, 0.3, 8)
    with torch.no_grad():
        out = trainer.raw_model(x).reshape(-1)
        direct = ((out - y) ** 2).sum() + 2 * 0.5 * (((out[:4] - out[4:]) - (y[:4] - y[4:])) ** 2).sum()
        assert trainer.forward_loss(x, y).item() == pytest.approx(direct.item(), rel=1e-5)
    res = train(cfg)
    assert res.status == "done" and res.global_step == 2 * 17


def test_temporal_pairs_are_refused_where_they_cannot_work(tmp_path, dataset):
    with pytest.raises(ConfigError, match="even train.batch_size"):
        tiny(tmp_path / "a", dataset, "train.pair_weight=1", "train.batch_size=7")
    with pytest.raises(ConfigError, match="train.loss=mse"):
        load_config(None, ["data.kind=synthetic_signs", "train.loss=nll", "model.name=signnet",
                           "train.pair_weight=1"])
    cfg = tiny(tmp_path / "b", dataset, "train.pair_weight=1", "train.batch_size=6")
    with pytest.raises(ConfigError, match="multiple of the 2 processes"):
        Trainer(cfg, load_data(cfg.data), DistInfo(0, 2, 0, torch.device("cpu")))
