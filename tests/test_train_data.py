"""Batch plan (a function of seed and epoch), DDP sharding, the memmap loader, synthetic signs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import make_steering_dataset

from vbp_live.core.errors import ConfigError
from vbp_live.models import frames_to_input
from vbp_live.train.config import DataConfig, load_config
from vbp_live.train.data import BatchLoader, epoch_batches, load_data, repeat_curves, shard, successors
from vbp_live.train.metrics import error_stats, step_stats
from vbp_live.train.signs import make_sign_dataset


def test_batch_plan_is_a_function_of_seed_and_epoch():
    idx = np.arange(10, 110)
    a, b = epoch_batches(idx, 16, seed=3, epoch=2), epoch_batches(idx, 16, seed=3, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = epoch_batches(idx, 16, seed=3, epoch=3)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True))
    assert len(a) == 6 and all(len(x) == 16 and np.all(np.diff(x) > 0) for x in a)  # drop_last, sorted
    seen = np.concatenate(a)
    assert len(np.unique(seen)) == 96 and set(seen) <= set(idx)


def test_partial_last_batch():
    idx = np.arange(21)
    assert [len(b) for b in epoch_batches(idx, 8, 0, 0, drop_last=False)] == [8, 8, 5]
    assert [len(b) for b in epoch_batches(np.arange(17), 8, 0, 0, drop_last=False, world=2)] == [8, 8]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_partition_the_global_batch(world):
    batch = np.sort(np.random.default_rng(0).choice(1000, 16, replace=False))
    parts = [shard(batch, r, world) for r in range(world)]
    assert sorted(np.concatenate(parts).tolist()) == batch.tolist()
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("prefetch", [0, 2])
def test_loader_reads_the_memmap(tmp_path, prefetch):
    data = load_data(DataConfig(path=str(make_steering_dataset(tmp_path / "ds", n=40)), prefetch=prefetch))
    assert isinstance(data.frames, np.memmap) and data.input_shape == (1, 24, 48)
    assert len(data.train_idx) == 30 and len(data.val_idx) == 10
    batches = epoch_batches(data.train_idx, 8, 0, 0)
    got = list(BatchLoader(data.frames, data.targets, batches, prefetch=prefetch))
    assert len(got) == 3
    for (x, y), rows in zip(got, batches, strict=True):
        assert torch.equal(x, frames_to_input(np.asarray(data.frames[rows])))  # (8, 1, 24, 48)
        assert torch.equal(y, torch.from_numpy(data.targets[rows]))


def test_loader_thread_errors_reach_the_caller(tmp_path):
    data = load_data(DataConfig(path=str(make_steering_dataset(tmp_path / "ds", n=20))))
    loader = BatchLoader(data.frames, data.targets, [np.array([0, 1]), np.array([5, 999])], prefetch=2)
    with pytest.raises(IndexError):
        list(loader)


def test_stride_and_caps(tmp_path):
    path = str(make_steering_dataset(tmp_path / "ds", n=40))
    data = load_data(DataConfig(path=path, train_stride=3, max_train_frames=5, val_stride=2))
    assert data.train_idx.tolist() == [0, 3, 6, 9, 12] and data.val_idx.tolist() == [30, 32, 34, 36, 38]
    with pytest.raises(ValueError, match="validation split is empty"):
        load_data(DataConfig(path=path, val_split="nope"))


def test_curve_repeat_plans_sharp_frames_more_often(tmp_path):
    steer = np.radians(np.array([0.0, 25.0, -5.0, -30.0, 19.9, 20.0]))  # (6,) rad
    rows = np.arange(6)
    assert repeat_curves(rows, steer, 3, 20.0).tolist() == [0, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 5]
    assert repeat_curves(rows[::2], steer, 2, 20.0).tolist() == [0, 2, 4]  # no sharp row among them
    assert repeat_curves(rows, steer, 1, 20.0).tolist() == rows.tolist()  # 1 = off
    path = str(make_steering_dataset(tmp_path / "ds", n=40))  # angles uniform in +-0.5 rad (+-28.6 deg)
    plain = load_data(DataConfig(path=path))
    more = load_data(DataConfig(path=path, curve_repeat=4, curve_min_deg=15.0))
    sharp = np.abs(np.degrees(plain.targets[plain.train_idx])) >= 15.0  # (30,)
    assert 0 < sharp.sum() < len(sharp)
    assert len(more.train_idx) == len(plain.train_idx) + 3 * sharp.sum()
    assert sorted(set(more.train_idx.tolist())) == plain.train_idx.tolist()  # the same frames, some repeated
    assert np.array_equal(more.val_idx, plain.val_idx)  # validation is never repeated
    batches = epoch_batches(more.train_idx, 8, 0, 0)
    assert sum(map(len, batches)) == len(more.train_idx) // 8 * 8


def test_curve_repeat_is_validated():
    with pytest.raises(ConfigError, match="data.curve_repeat must be >= 1"):
        load_config(None, ["data.path=x", "data.curve_repeat=0"])
    with pytest.raises(ConfigError, match="data.curve_min_deg must be > 0"):
        load_config(None, ["data.path=x", "data.curve_min_deg=0"])
    with pytest.raises(ConfigError, match="needs steering targets"):
        load_config(None, ["data.kind=synthetic_signs", "train.loss=nll", "model.name=signnet",
                           "data.curve_repeat=2"])


def test_synthetic_signs_are_deterministic_and_distinct():
    f1, l1 = make_sign_dataset(24, num_classes=6, size=64, seed=1)
    f2, l2 = make_sign_dataset(24, num_classes=6, size=64, seed=1)
    f3, _ = make_sign_dataset(24, num_classes=6, size=64, seed=2)
    assert f1.shape == (24, 64, 64) and f1.dtype == np.uint8
    assert np.array_equal(f1, f2) and np.array_equal(l1, l2) and not np.array_equal(f1, f3)
    assert set(l1.tolist()) <= set(range(6)) and len(set(l1.tolist())) > 1
    assert float(f1.std()) > 20  # a real picture, not a flat image


def test_successors_follow_a_recording_within_its_split_and_rate():
    ms = 1_000_000
    ts = np.array([0, 50, 100, 250, 300, 0, 50, 100, 150], np.int64) * ms  # a gap of 150 ms after row 2
    src = ["a"] * 5 + ["b"] * 4
    split = np.array(["train"] * 7 + ["test"] * 2)
    assert successors(ts, src, split).tolist() == [1, 2, -1, 4, -1, 6, -1, 8, -1]
    assert successors(ts[:1], src[:1], split[:1]).tolist() == [-1]
    order = np.lexsort((src, ts))  # as prep writes several recordings: their rows interleaved by time
    rank = np.argsort(order)
    nxt = successors(ts[order], [src[i] for i in order], split[order])
    want = [-1 if j < 0 else int(rank[j]) for j in successors(ts, src, split)]
    assert nxt.tolist() == [want[i] for i in order]


def test_step_stats_measure_the_change_from_each_frame_to_its_next():
    nxt = np.array([1, 2, -1, 4, -1])
    truth = np.radians([0.0, 1.0, 2.0, 0.0, 0.0])
    pred = np.radians([0.0, 3.0, 2.0, 5.0, 5.0])
    s = step_stats(pred, truth, nxt)
    assert s["step_pairs"] == 3
    assert s["step_p50_deg"] == pytest.approx(1.0) and s["truth_step_p95_deg"] == pytest.approx(1.0)
    assert s["step_p95_deg"] == pytest.approx(np.percentile([3, 1, 0], 95))
    assert s["error_step_p95_deg"] == pytest.approx(np.percentile([2, 2, 0], 95))
    assert np.isnan(step_stats(pred, truth, np.full(5, -1))["step_p95_deg"])


def test_error_stats_split_an_rmse_into_bias_and_gain():
    truth = np.radians(np.linspace(-40.0, 40.0, 81))  # (81,)
    pred = 0.5 * truth + np.radians(3.0)  # steers half as far, 3 deg to the left
    s = error_stats(pred, truth)
    assert s["error_mean_deg"] == pytest.approx(3.0) and s["gain"] == pytest.approx(0.5)
    assert s["corr"] == pytest.approx(1.0)
    rmse = np.sqrt(np.mean(np.degrees(pred - truth) ** 2))
    assert np.hypot(s["error_mean_deg"], s["error_std_deg"]) == pytest.approx(rmse)
    big = np.abs(np.degrees(truth)) >= 20.0
    assert s["large_frames"] == big.sum()
    assert s["large_rmse_deg"] == pytest.approx(np.sqrt(np.mean(np.degrees(pred - truth)[big] ** 2)))
    flat = error_stats(np.zeros(4), np.zeros(4))
    assert np.isnan(flat["gain"]) and np.isnan(flat["corr"]) and np.isnan(flat["large_rmse_deg"])
