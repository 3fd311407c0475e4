"""``prepare``: recording -> prepared dataset (or synchronized labels only).

Pass 1 (:meth:`~vbp_live.recordings.base.Recording.scan`, the recording read by
:mod:`vbp_live.recordings`) reads timestamps and measurements and :func:`make_plan` decides
every frame's fate. Pass 2 streams only the kept frames' images through a thread pool
(decode + THE crop function :func:`vbp_live.core.preprocess.preprocess_frame`) into a
:class:`~vbp_live.io.dataset.DatasetWriter`, in bounded memory, with resume checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from data_prep.config import PrepConfig
from data_prep.output import finish_dataset, write_labels
from data_prep.plan import Plan, make_plan
from data_prep.result import PrepResult
from data_prep.workers import FrameWriter
from vbp_live.core.errors import InputError
from vbp_live.io.dataset import FORMAT, DatasetError, DatasetWriter
from vbp_live.recordings.base import Recording, Scan
from vbp_live.recordings.formats import open_recording

log = logging.getLogger(__name__)


def synchronize(inputs: list[str | os.PathLike[str]], cfg: PrepConfig | None = None,
                kind: str = "auto") -> tuple[Scan, Plan]:
    """Sync-only API: scan a recording and plan it (no images read, nothing written)."""
    cfg = cfg or PrepConfig()
    recording = open_recording(inputs, cfg.recording_options(), kind)
    scan = recording.scan()
    return scan, make_plan(scan, cfg)


def prepare(
    inputs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    cfg: PrepConfig | None = None,
    *,
    kind: str = "auto",
    labels_only: bool = False,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = True,
) -> PrepResult:
    """Prepare a recording into a dataset directory (see the README, "Preparing data").

    Args:
        inputs: bag files / a folder of bags, a bag-dump folder, a driving_log.csv or its
            folder, or a comma2k19 segment folder.
        out_dir: dataset directory to create (built in ``<out_dir>.partial`` meanwhile).
        cfg: the configuration (default: the built-in defaults = configs/prep.yaml).
        kind: force the input kind (``bag``, ``dump``, ``sim``, ``comma2k19``).
        labels_only: write only the synchronized index (no frames decoded).
        overwrite: replace an existing ``out_dir``.
        resume: continue an interrupted run of the same inputs and config (False: start
            clean, discarding ``<out_dir>.partial``; the run still writes checkpoints).
        progress: show tqdm progress bars.
    """
    cfg = cfg or PrepConfig()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out}: already exists (pass overwrite / --overwrite to replace it)")
    t0, cpu0 = time.perf_counter(), time.process_time()
    recording = open_recording(inputs, cfg.recording_options(), kind)
    scan = _scan(recording, progress)
    plan = make_plan(scan, cfg)
    timings = {"scan": time.perf_counter() - t0}
    unknown = sorted(set(cfg.crop.source_horizons) - set(plan.names))
    if unknown:
        raise InputError(f"crop.source_horizons names {', '.join(unknown)}, not among the recording files "
                         f"({', '.join(plan.names)})")
    n_kept = int(plan.kept.sum())
    if n_kept == 0:
        raise InputError(f"no frames left after synchronizing and filtering: read {len(plan.t)}, "
                         f"dropped {plan.dropped()}")
    if labels_only:
        res = write_labels(out, plan, scan, cfg, recording, overwrite)
    else:
        res = _prepare_frames(recording, scan, plan, cfg, out, overwrite, resume, progress, timings)
    res.timings = {**timings, **res.timings, "total": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    return res


def _scan(recording: Recording, progress: bool) -> Scan:
    with tqdm(total=recording.scan_size(), unit="B", unit_scale=True, desc="scan", disable=not progress,
              leave=False) as bar:
        return recording.scan(bar.update)


def resume_key(recording: Recording, cfg: PrepConfig) -> str:
    """Hash of everything that determines the output bytes (inputs + config + format)."""
    d = cfg.to_dict()
    d.pop("decode", None), d.pop("output", None)  # thread count and checkpoint spacing do not change bytes
    key = {"format": FORMAT, "kind": recording.kind, "inputs": recording.fingerprint(), "cfg": d}
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _prepare_frames(recording: Recording, scan: Scan, plan: Plan, cfg: PrepConfig, out: Path, overwrite: bool,
                    resume: bool, progress: bool, timings: dict[str, float]) -> PrepResult:
    if not recording.has_images:
        raise InputError(f"{recording.kind} input has no images (no video in this layout); "
                         "use labels_only (--labels-only)")
    spec = cfg.crop.spec()
    shape = (spec.out_height, spec.out_width) if spec.grayscale else (spec.out_height, spec.out_width, 3)
    partial = out.parent / (out.name + ".partial")
    if not resume and partial.exists():
        shutil.rmtree(partial)  # --restart: ignore an earlier run's progress (this run still checkpoints)
    writer = DatasetWriter(out, shape, spec, overwrite=overwrite, resume_key=resume_key(recording, cfg))
    if writer.resumed_state is not None:
        log.info("resuming %s: %d frames already done", partial, len(writer))
    fw = FrameWriter(recording, plan, writer, cfg)
    try:
        fw.run(progress)
    except BaseException:
        with contextlib.suppress(Exception):
            fw.checkpoint()  # consistent at any instant; a re-run resumes from here
        raise
    res = finish_dataset(writer, plan, scan, cfg, recording, fw.rejected)
    res.timings, res.decoded, res.resumed_at = fw.timings, fw.decoded, fw.resumed_at
    return res
