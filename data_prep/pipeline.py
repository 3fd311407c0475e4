"""``prepare``: recording -> prepared dataset (or synchronized labels only).

Pass 1 (:meth:`Source.scan`) reads timestamps and measurements and :func:`make_plan` decides
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.config import PrepConfig
from data_prep.inputs import open_source
from data_prep.output import finish_dataset, write_labels
from data_prep.plan import Plan, make_plan
from data_prep.source import InputError, Scan, Source
from data_prep.workers import FrameWriter
from vbp_live.io.dataset import FORMAT, DatasetError, DatasetWriter

log = logging.getLogger(__name__)


@dataclass
class PrepResult:
    """What a run did.

    Attributes:
        out_dir: the dataset (or labels) directory.
        counts: ``read``, ``kept`` and ``dropped`` (reason -> count); read = kept + dropped.
        splits: split name -> frames.
        timings: seconds per stage (``scan``, ``read``, ``decode``, ``preprocess``, ``write``,
            ``total``, ``cpu``: process CPU time of all threads); decode/preprocess are summed
            over worker threads.
        warnings: problems survived (truncated bags, corrupt images, ...).
        decoded: frames decoded in this run (less than kept when it resumed).
        resumed_at: frames already done by an earlier interrupted run (0: fresh start).
    """

    out_dir: Path
    counts: dict[str, Any]
    splits: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    decoded: int = 0
    resumed_at: int = 0
    labels_only: bool = False


def synchronize(inputs: list[str | os.PathLike[str]], cfg: PrepConfig | None = None, kind: str = "auto") -> tuple[Scan, Plan]:
    """Sync-only API: scan a recording and plan it (no images read, nothing written)."""
    cfg = cfg or PrepConfig()
    source = open_source(inputs, cfg, kind)
    scan = source.scan()
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
    source = open_source(inputs, cfg, kind)
    scan = _scan(source, progress)
    plan = make_plan(scan, cfg)
    timings = {"scan": time.perf_counter() - t0}
    n_kept = int(plan.kept.sum())
    if n_kept == 0:
        raise InputError(f"no frames left after synchronizing and filtering: read {len(plan.t)}, dropped {plan.dropped()}")
    if labels_only:
        res = write_labels(out, plan, scan, cfg, source, overwrite)
    else:
        res = _prepare_frames(source, scan, plan, cfg, out, overwrite, resume, progress, timings)
    res.timings = {**timings, **res.timings, "total": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    return res


def _scan(source: Source, progress: bool) -> Scan:
    with tqdm(total=source.scan_size(), unit="B", unit_scale=True, desc="scan", disable=not progress, leave=False) as bar:
        return source.scan(bar.update)


def resume_key(source: Source, cfg: PrepConfig) -> str:
    """Hash of everything that determines the output bytes (inputs + config + format)."""
    d = cfg.to_dict()
    d.pop("decode", None), d.pop("output", None)  # thread count and checkpoint spacing do not change bytes
    blob = json.dumps({"format": FORMAT, "kind": source.kind, "inputs": source.fingerprint(), "cfg": d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _prepare_frames(source: Source, scan: Scan, plan: Plan, cfg: PrepConfig, out: Path, overwrite: bool,
                    resume: bool, progress: bool, timings: dict[str, float]) -> PrepResult:
    if not source.has_images:
        raise InputError(f"{source.kind} input has no images (no video in this layout); use labels_only (--labels-only)")
    spec = cfg.crop.spec()
    shape = (spec.out_height, spec.out_width) if spec.grayscale else (spec.out_height, spec.out_width, 3)
    partial = out.parent / (out.name + ".partial")
    if not resume and partial.exists():
        shutil.rmtree(partial)  # --restart: ignore an earlier run's progress (this run still checkpoints)
    writer = DatasetWriter(out, shape, spec, overwrite=overwrite, resume_key=resume_key(source, cfg))
    if writer.resumed_state is not None:
        log.info("resuming %s: %d frames already done", partial, len(writer))
    fw = FrameWriter(source, plan, writer, cfg)
    try:
        fw.run(progress)
    except BaseException:
        with contextlib.suppress(Exception):
            fw.checkpoint()  # consistent at any instant; a re-run resumes from here
        raise
    res = finish_dataset(writer, plan, scan, cfg, source, fw.rejected)
    res.timings, res.decoded, res.resumed_at = fw.timings, fw.decoded, fw.resumed_at
    return res
