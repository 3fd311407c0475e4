"""Several drives in one `vbp-live prep`: bags that overlap in time are each synchronized with their own reports."""

from __future__ import annotations

import numpy as np

from data_prep.config import PrepConfig
from data_prep.plan import make_plan
from vbp_live.core.sync import clean_samples, overlapping_sources, sync_frames, sync_frames_per_source
from vbp_live.io.ground_truth import load_ground_truth
from vbp_live.io.synth_writers import write_outputs
from vbp_live.recordings.formats import open_recording
from vbp_live.synth import DriveConfig, simulate_drive


def test_overlap_tells_separate_drives_from_parts_of_one():
    t = np.array([0, 10, 20, 30, 40, 50])
    assert not overlapping_sources(t, np.array([0, 0, 0, 1, 1, 1]))  # split bags of one drive
    assert overlapping_sources(t, np.array([0, 1, 0, 1, 0, 1]))  # two drives on the same clock
    assert overlapping_sources(np.array([0, 10, 10, 20]), np.array([0, 0, 1, 1]))  # sharing one instant


def test_per_source_sync_uses_only_each_sources_samples():
    t = np.array([5, 5, 15, 15], np.int64)
    src = np.array([0, 1, 0, 1])
    own = {k: {"steering": clean_samples(np.array([0, 20]), np.array([v, v]))} for k, v in ((0, 1.0), (1, -1.0))}
    fs = sync_frames_per_source(t, src, own)
    assert list(fs.t) == [5, 5, 15, 15] and list(fs.order) == [0, 1, 2, 3]
    assert list(fs.values["steering"]) == [1.0, -1.0, 1.0, -1.0]
    assert list(fs.reason) == ["", "", "", ""]  # equal times in different drives are not duplicates
    pooled = sync_frames(t, {"steering": clean_samples(np.array([0, 20, 1, 21]), np.array([1.0, 1.0, -1.0, -1.0]))})
    assert pooled.reason[1] == "duplicate_timestamp"  # what pooling would have done


def test_prep_of_two_overlapping_synthetic_drives_keeps_each_drives_labels(tmp_path):
    bags, truths = [], []
    for seed in (1, 2):  # same start time: the two drives share their clock range
        out = tmp_path / f"d{seed}"
        write_outputs(simulate_drive(DriveConfig(seed=seed, frames=60, start_stopped=False)), out, ["bag", "gt"])
        bags.append(next(out.glob("*.bag")))
        truths.append(load_ground_truth(out / "ground_truth.npz"))
    plan = make_plan(open_recording(bags).scan(), PrepConfig())
    assert "synchronized_per_source" in plan.info
    for k, gt in enumerate(truths):
        kept = (plan.source == k) & (plan.reason == "")
        assert kept.sum() > 40
        pos = np.searchsorted(gt.frame_times_ns, plan.t[kept])
        assert np.abs(gt.steering[pos] - plan.steering[kept]).max() < 0.01  # rad: the drive's own steering
