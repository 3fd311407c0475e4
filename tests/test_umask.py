"""Output files honour the user's umask (0644 under 022, 0600 under 077), whatever writes them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from stream_util import tiny_checkpoint, write_video

from vbp_live.cli.main import main
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.dataset import DatasetWriter


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    """Run the test under this umask (restored after)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_overlay_video_checkpoint_csv_and_frames_follow_the_umask(tmp_path, umask):
    want = 0o666 & ~umask  # 0o644 or 0o600
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    src = write_video(tmp_path / "in.mp4", 3)
    out, log_csv, stats = tmp_path / "out" / "o.mp4", tmp_path / "p.csv", tmp_path / "s.json"
    rc = main(["run", str(src), "-c", str(ckpt), "--out", str(out), "--csv", str(log_csv), "--stats-json",
               str(stats), "--frames-dir", str(tmp_path / "frames"), "--device", "cpu", "-q"])
    assert rc == 0
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 3
    for path in [ckpt, out, log_csv, stats, *pngs]:
        assert mode(path) == want, f"{path.name}: {oct(mode(path))}, umask {oct(umask)}"
    assert [p.name for p in out.parent.iterdir()] == ["o.mp4"]  # the temporary name is gone


def test_dataset_files_follow_the_umask(tmp_path, umask):
    w = DatasetWriter(tmp_path / "ds", (8, 16), CropSpec(top=0.5, bottom=1.0, out_height=8, out_width=16))
    for i in range(4):
        w.append(np.full((8, 16), i, np.uint8), 1_000_000 * i, 0.1 * i, 10.0, "test")
    ds = w.finalize(["train", "train", "test", "test"])
    files = [p for p in Path(ds).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"frames.u8", "index.csv", "manifest.yaml"}
    for path in files:
        assert mode(path) == 0o666 & ~umask, f"{path.name}: {oct(mode(path))}, umask {oct(umask)}"
    assert mode(Path(ds)) == 0o777 & ~umask
