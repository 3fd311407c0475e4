"""Many inputs in one command: ``vbp-live run a.mp4 b.mp4 dir/ --out-dir overlays/``.

Folders are expanded to the videos and recordings in them, except a folder that is itself one
input (an image folder, a prepared dataset, the ``.bag`` parts of one drive, any recording folder
:mod:`vbp_live.recordings` reads),
which stays one input as for a single SOURCE. The model is loaded once; each input then runs
through the usual pipeline into ``<out-dir>/<name>_overlay.mp4`` and ``<name>_overlay.csv``. An
input that fails is reported in the summary and the others continue.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` in the environment) process ``r`` of ``w`` takes
inputs ``r, r + w, r + 2w, ...`` of the expanded list (every process expands the same list, so the
shares never overlap and the output names agree). With a process group (torchrun sets
``MASTER_ADDR``) the summaries are gathered on rank 0, which prints the whole table; with the
environment variables alone every process reports its own share.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vbp_live.core.errors import VbpLiveError
from vbp_live.io.frames import VideoInfo
from vbp_live.io.sinks import FrameSink
from vbp_live.io.video import IMAGE_SUFFIXES
from vbp_live.recordings.formats import detect_kind
from vbp_live.stream.engine import OverlayEngine
from vbp_live.stream.records import PredictionLog
from vbp_live.stream.session import RunOptions, run_source

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv",
                  ".3gp", ".hevc", ".h264", ".h265"}
GATHER_TIMEOUT = datetime.timedelta(days=7)  # rank 0 waits for the slowest share, however long its videos


@dataclass(frozen=True)
class Place:
    """This process's share: ``rank`` of ``world`` (``local_rank`` picks its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Place:
        """From torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (one process when unset)."""
        env = os.environ
        return cls(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))

    def share(self, items: Sequence[Any]) -> list[Any]:
        """Every ``world``-th item from ``rank`` on."""
        return list(items[self.rank::self.world])


@dataclass
class InputResult:
    """One input's line in the summary.

    Attributes:
        source: the input as expanded.
        ok: it ran to its end (or ``--max-frames``) without an error.
        frames, fps: frames written and the end-to-end rate.
        frames_with_truth, rmse_deg, mae_deg, max_abs_error_deg: steering error (actual - predicted)
            where the input knows the actual angle.
        error: why it failed (one line).
        outputs: the files written.
        position: where it is in the expanded input list.
        rank: the process that ran it.
    """

    source: str
    ok: bool = False
    frames: int = 0
    fps: float = 0.0
    frames_with_truth: int = 0
    rmse_deg: float | None = None
    mae_deg: float | None = None
    max_abs_error_deg: float | None = None
    end_reason: str = ""
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    position: int = 0
    rank: int = 0


def _natural_key(p: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def is_one_input(folder: Path) -> bool:
    """A folder that is one input on its own: a dataset, a recording, the bags of one drive, or images."""
    if (folder / "manifest.yaml").is_file() or detect_kind(folder) is not None:
        return True  # a dataset, or a recording (tub, folder of tubs, labelled frame folder, ...)
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix.lower() == ".bag" for p in files):
        return True
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
    return has_images and not any(p.suffix.lower() in VIDEO_SUFFIXES for p in files)


def folder_inputs(folder: Path) -> list[str]:
    """The videos, ``.bag`` files and input folders directly inside ``folder`` (natural order)."""
    found = []
    for p in sorted(folder.iterdir(), key=_natural_key):
        if p.name.startswith("."):
            continue
        if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and is_one_input(p)):
            found.append(str(p))
    return found


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """Each SOURCE as given, except folders of videos or recordings, which become what is in them.

    A folder with nothing to run stays as given, so its error is reported like any other input's.
    Duplicates are kept once (the first time).
    """
    out: list[str] = []
    for spec in specs:
        p = Path(spec)
        items = [spec]
        if p.is_dir() and not is_one_input(p):
            items = folder_inputs(p) or [spec]
        out.extend(i for i in items if i not in out)
    return out


def output_names(inputs: Sequence[str]) -> list[str]:
    """A distinct file-name stem per input (``drive``, ``drive_2``, ... when names repeat)."""
    names: list[str] = []
    for spec in inputs:
        s = spec.strip()
        stem = f"camera{s}" if s.isdigit() else ("stream" if "://" in s else Path(s.rstrip("/")).stem or "input")
        name, k = stem, 1
        while name in names:
            k += 1
            name = f"{stem}_{k}"
        names.append(name)
    return names


def run_input(
    spec: str, name: str, engine: OverlayEngine, opts: RunOptions, out_dir: Path | None,
    make_sinks: Callable[[VideoInfo, Path], Sequence[FrameSink]], progress: bool = True,
) -> InputResult:
    """Run one input; a failure is returned in the result, never raised (except Ctrl-C).

    Args:
        out_dir: where ``<name>_overlay.mp4`` / ``.csv`` go; None writes nothing.
        make_sinks: the sinks for a source's info and its output video path.
    """
    res = InputResult(spec)
    csv = out_dir / f"{name}_overlay.csv" if out_dir is not None else None
    try:
        with opts.open_source(spec) as src:
            sinks = make_sinks(src.info, out_dir / f"{name}_overlay.mp4") if out_dir is not None else []
            predictions = PredictionLog(csv)
            run = run_source(src, engine, replace(opts, csv=csv), sinks, progress=progress, predictions=predictions)
    except (VbpLiveError, OSError) as e:
        res.error = str(e)
        return res
    except Exception as e:  # noqa: BLE001  (a bug on one input: shown with its traceback, the others continue)
        log.exception("%s: unexpected error (a bug in vbp-live)", spec)
        res.error = f"unexpected {type(e).__name__}: {e}"
        return res
    st = run.stats
    res.ok, res.frames, res.end_reason, res.error = st.error is None, st.frames_out, st.end_reason, st.error
    res.fps = st.fps
    res.outputs = [str(p) for p in run.outputs]
    _error_stats(res, predictions)
    return res


def _error_stats(res: InputResult, predictions: PredictionLog) -> None:
    errs = [e for *_, e in predictions.rows if e is not None]
    if errs:
        res.frames_with_truth = len(errs)
        res.rmse_deg = math.sqrt(sum(e * e for e in errs) / len(errs))
        res.mae_deg = sum(abs(e) for e in errs) / len(errs)
        res.max_abs_error_deg = max(abs(e) for e in errs)


def join_group(place: Place) -> bool:
    """Join torchrun's process group (gloo, for the summary only) if there is one; True if joined here."""
    if place.world == 1 or dist.is_initialized() or "MASTER_ADDR" not in os.environ or not dist.is_available():
        return False
    dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
    return True


def is_grouped() -> bool:
    """A process group is joined (results can be gathered)."""
    return dist.is_available() and dist.is_initialized()


def leave_group() -> None:
    """Leave the process group :func:`join_group` joined."""
    if is_grouped():
        dist.destroy_process_group()


def gather_results(results: list[InputResult], place: Place) -> list[InputResult] | None:
    """Every process's results on rank 0 (in input order), None on the others; without a group, this share."""
    if place.world == 1 or not is_grouped():
        return results
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, [asdict(r) for r in results])
    if place.rank != 0:
        return None
    return sorted((InputResult(**r) for part in parts for r in part), key=lambda r: r.position)


def summary_table(results: Sequence[InputResult]) -> str:
    """One line per input: frames, fps, error statistics, status."""
    def num(v: float | None, d: int = 2) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    width = max([len("input"), *(len(r.source) for r in results)])
    lines = [f"{'input':<{width}}  {'frames':>6}  {'fps':>6}  {'truth':>5}  {'rmse°':>6}  {'mae°':>6}  "
             f"{'max|e|°':>7}  status"]
    for r in results:
        status = "ok" if r.ok else f"FAILED: {r.error}"
        lines.append(f"{r.source:<{width}}  {r.frames:>6}  {num(r.fps, 1):>6}  {r.frames_with_truth:>5}  "
                     f"{num(r.rmse_deg):>6}  {num(r.mae_deg):>6}  {num(r.max_abs_error_deg):>7}  {status}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} inputs, {len(results) - failed} ok, {failed} failed")
    return "\n".join(lines)


def rank_device(device: str, place: Place) -> str:
    """This process's device: ``auto`` / ``cuda`` mean its own GPU (``cuda:<local_rank>``) under torchrun."""
    if place.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{place.local_rank % torch.cuda.device_count()}"
    return device
