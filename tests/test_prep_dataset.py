"""vbp_live.io.dataset: the writer's checkpoint / resume / reorder and the reader's checks."""

from __future__ import annotations

import numpy as np
import pytest

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.dataset import DatasetError, DatasetWriter, PreparedDataset

CROP = CROP_PRESETS["netsvf"]


def _frame(v: int) -> np.ndarray:
    return np.full((4, 6), v, np.uint8)


def test_roundtrip_without_resume_key(tmp_path):
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP)
    for k in range(3):
        w.append(_frame(k), 100 + k, 0.1 * k, 7.0, "a.bag")
    with pytest.raises(DatasetError, match="resume_key"):
        w.checkpoint()
    ds = PreparedDataset(w.finalize(["train", "train", "test"]))
    assert ds.frames[:, 0, 0].tolist() == [0, 1, 2] and ds.steering[2] == pytest.approx(0.2)
    assert ds.indices("test").tolist() == [2] and ds.manifest["splits"] == {"test": 1, "train": 2}
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["frames.u8", "index.csv", "manifest.yaml"]


def test_resume_cuts_everything_after_the_last_checkpoint(tmp_path):
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP, resume_key="k1")
    for k in range(5):
        w.append(_frame(k), 100 + k, 0.1 * k, 7.0, "a.bag")
    w.checkpoint({"note": "five"})
    for k in range(5, 8):  # appended after the checkpoint: lost when the process dies now
        w.append(_frame(k), 100 + k, 0.1 * k, 7.0, "a.bag")
    w._frames.flush()
    w._rows_file.flush()
    del w
    again = DatasetWriter(tmp_path / "d", (4, 6), CROP, resume_key="k1")
    assert len(again) == 5 and again.resumed_state == {"note": "five"}
    assert (again.partial / "frames.u8").stat().st_size == 5 * 24
    again.append(_frame(9), 200, 0.5, 8.0, "b.bag")
    ds = PreparedDataset(again.finalize(["train"] * 6))
    assert ds.frames[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 9] and ds.sources[-1] == "b.bag"


def test_other_key_or_shape_starts_clean(tmp_path):
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP, resume_key="k1")
    w.append(_frame(1), 1, 0.0, 7.0, "a")
    w.checkpoint()
    del w
    assert DatasetWriter(tmp_path / "d", (4, 6), CROP, resume_key="k2").resumed_state is None
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP, resume_key="k2")  # nothing committed under k2 yet
    assert len(w) == 0 and w.resumed_state is None
    w.checkpoint()
    del w
    assert DatasetWriter(tmp_path / "d", (5, 6), CROP, resume_key="k2").resumed_state is None


def test_finalize_reorders_frames_and_rows(tmp_path):
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP)
    for k, t in enumerate([30, 10, 20]):
        w.append(_frame(k), t, float(k), 7.0, "a")
    ds = PreparedDataset(w.finalize(["train"] * 3, order=np.argsort([30, 10, 20])))
    assert ds.timestamps_ns.tolist() == [10, 20, 30] and ds.frames[:, 0, 0].tolist() == [1, 2, 0]
    w = DatasetWriter(tmp_path / "e", (4, 6), CROP)
    w.append(_frame(0), 1, 0.0, 7.0, "a")
    with pytest.raises(DatasetError, match="not a permutation"):
        w.finalize(["train"], order=np.array([1]))


def test_reader_and_writer_errors(tmp_path):
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP)
    with pytest.raises(DatasetError, match="does not match"):
        w.append(np.zeros((4, 5), np.uint8), 1, 0.0, 0.0, "a")
    with pytest.raises(DatasetError, match="split labels"):
        w.finalize(["train"])
    with pytest.raises(DatasetError, match=r"manifest.yaml is missing \(an unfinished run"):
        PreparedDataset(tmp_path / "d")
    w = DatasetWriter(tmp_path / "d", (4, 6), CROP, overwrite=True)
    w.append(_frame(0), 1, 0.0, 0.0, "a")
    path = w.finalize(["train"])
    with pytest.raises(DatasetError, match="already exists"):
        DatasetWriter(path, (4, 6), CROP)
    with open(path / "frames.u8", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(DatasetError, match="expected 24 bytes"):
        PreparedDataset(path)
