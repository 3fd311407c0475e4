"""TensorBoard and the snapshot video for training, and ``VBPSnapshot`` in a training loop of one's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stream_util import read_video
from torch import nn
from train_helpers import make_steering_dataset, tiny_registered

from vbp_live.core.errors import InputError
from vbp_live.models import ConvNet
from vbp_live.train import VBPSnapshot, load_config
from vbp_live.train.callbacks import TensorBoard
from vbp_live.train.run import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

H, W = 24, 48


def events(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def net() -> nn.Module:
    """BatchNorm (running statistics) and dropout (the RNG): what a careless snapshot would disturb."""
    model = ConvNet((1, H, W), (4, 8, 8), (16, 1))
    model.head = nn.Sequential(nn.Dropout(0.3), *model.head)
    return model


def fixed_frames(k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (k, H, W), np.uint8)


def own_loop(steps: int, snap_dir: Path | None, every: int = 2) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A plain training loop; with ``snap_dir`` a VBPSnapshot is stepped after every optimizer step."""
    torch.manual_seed(0)
    model = net().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    snap = VBPSnapshot(model, fixed_frames(), every=every, out_dir=snap_dir, tensorboard=True) if snap_dir else None
    for _ in range(steps):
        x, y = torch.rand(8, 1, H, W), torch.randn(8, 1)  # draws from the RNG every step
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if snap is not None:
            rng, grads = torch.get_rng_state(), [p.grad.clone() for p in model.parameters()]
            snap.step()
            assert torch.equal(rng, torch.get_rng_state())
            assert model.training and all(m.training for m in model.modules())
            assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
            assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    if snap is not None:
        snap.close()
    return {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()


@pytest.mark.slow
def test_vbpsnapshot_leaves_training_bit_identical_and_writes_everything(tmp_path):
    plain, rng_plain = own_loop(6, None)
    watched, rng_watched = own_loop(6, tmp_path / "snaps")
    assert plain.keys() == watched.keys()
    for k in plain:
        assert torch.equal(plain[k], watched[k]), k  # weights and BatchNorm buffers, bit for bit
    assert torch.equal(rng_plain, rng_watched)
    out = tmp_path / "snaps"
    assert sorted(p.name for p in out.glob("strip_*.png")) == [f"strip_{k:06d}.png" for k in range(3)]
    with np.load(out / "masks.npz") as z:
        assert sorted(k for k in z.files if k != "rows") == ["step_0.0", "step_2.0", "step_4.0", "step_6.0"]
        assert z["step_6.0"].shape == (3, H, W)
        assert not np.array_equal(z["step_0.0"], z["step_6.0"])  # training changed what the net looks at
    frames, _ = read_video(out / "snapshots.mp4")
    assert len(frames) == 4  # one video frame per snapshot
    acc = events(out / "tensorboard")
    assert sorted(acc.Tags()["images"]) == [f"vbp_snapshot/frame_{k:06d}" for k in range(3)]
    assert [e.step for e in acc.Images("vbp_snapshot/frame_000000")] == [0, 2, 4, 6]


def test_vbpsnapshot_takes_network_input_tensors_and_refuses_other_frames(tmp_path):
    torch.manual_seed(0)
    model = net()
    x = torch.rand(2, 1, H, W)  # the network input itself
    snap = VBPSnapshot(model, x, every=1, out_dir=tmp_path, tensorboard=False, video=False, at_start=False)
    assert snap.step() and snap.step() and not snap.step(2)  # steps 1 and 2; step 2 is taken already
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.npz", "strip_000000.png", "strip_000001.png"]
    with pytest.raises(InputError, match="VBPSnapshot: frames must be uint8"):
        VBPSnapshot(model, np.zeros((2, H, W), np.float32), out_dir=tmp_path)


@pytest.mark.slow
def test_training_writes_tensorboard_scalars_images_and_the_snapshot_video(tmp_path):
    with tiny_registered():
        ds = make_steering_dataset(tmp_path / "ds", n=48)
        base = [f"data.path={ds}", "model.name=tiny_steer", "train.epochs=2", "train.batch_size=8",
                "train.progress=false", "train.threads=1", "snapshot.epochs=[0.5, 1, 2]", "snapshot.frames=2"]
        res = train(load_config(None, [f"run_dir={tmp_path / 'on'}", "train.tensorboard=on", *base]))  # on = true
        train(load_config(None, [f"run_dir={tmp_path / 'off'}", "train.tensorboard=off", "snapshot.video=false",
                                 *base]))
    steps_per_epoch = res.global_step // 2
    acc = events(tmp_path / "on" / "tensorboard")
    scalars = acc.Tags()["scalars"]
    assert {"train_loss", "val_rmse_rad"} <= set(scalars)
    assert [e.step for e in acc.Scalars("val_rmse_rad")] == [steps_per_epoch, 2 * steps_per_epoch]
    images = acc.Tags()["images"]
    assert len(images) == 2
    assert len(acc.Images(images[0])) == 3  # one per snapshot
    frames, _ = read_video(tmp_path / "on" / "snapshots" / "snapshots.mp4")
    assert len(frames) == 3
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert not (tmp_path / "off" / "snapshots" / "snapshots.mp4").exists()
    assert len(list((tmp_path / "off" / "snapshots").glob("strip_*.png"))) == 2


def test_tensorboard_setting(tmp_path):
    assert TensorBoard.from_setting(tmp_path, False) is None
    tb = TensorBoard.from_setting(tmp_path / "tb", "auto")
    assert isinstance(tb, TensorBoard) and not (tmp_path / "tb").exists()  # opened on first use only
    tb.add_scalars({"a": 1.0, "b": float("nan"), "c": "text", "d": True}, 3)
    tb.close()
    assert events(tmp_path / "tb").Tags()["scalars"] == ["a"]
