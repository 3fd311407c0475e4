"""Finishing a run: counts, ``dropped.csv``, the manifest, and the labels-only output.

Both outputs are built in ``<out>.partial`` and renamed into place after ``manifest.yaml`` is
written, so a directory that looks complete always is.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data_prep.config import PrepConfig
from data_prep.plan import Plan, time_split
from data_prep.result import PrepResult
from vbp_live.io.atomic import write_text_atomic
from vbp_live.io.dataset import INDEX_FIELDS, DatasetError, DatasetWriter
from vbp_live.recordings.base import Recording, Scan

LABELS_FORMAT = "vbp_live/labels-v1"
MAX_LISTED = 20  # rejected images listed one by one in the manifest


def run_counts(plan: Plan, rejected: list[list[Any]]) -> dict[str, Any]:
    """``read`` / ``kept`` / ``dropped`` per reason (plan drops + images that failed)."""
    dropped = Counter(plan.dropped())
    dropped.update(r[1] for r in rejected)
    read = len(plan.t)
    return {"read": read, "kept": read - sum(dropped.values()), "dropped": dict(sorted(dropped.items()))}


def _manifest_common(plan: Plan, scan: Scan, cfg: PrepConfig, recording: Recording,
                     counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "input_kind": recording.kind,
        "sources": [{"name": Path(p).name, "bytes": Path(p).stat().st_size} for p in recording.paths],
        "preprocessing": cfg.to_dict(),
        "counts": counts,
        "warnings": list(scan.warnings),
        "skipped": _plain(scan.skipped.to_dict()),
        "info": _plain({**scan.info, **plan.info}),
    }


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x.item() if isinstance(x, np.generic) else x


def write_dropped(path: Path, plan: Plan, rejected: list[list[Any]]) -> None:
    """``dropped.csv``: every frame that was read but not kept, in time order, with its reason."""
    reason = plan.reason.copy()
    pos = plan.by_ordinal()
    for ordinal, why, _ in rejected:
        reason[pos[ordinal]] = why
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp_ns", "source", "reason"])
        for i in np.flatnonzero(reason != ""):
            w.writerow([int(plan.t[i]), plan.names[plan.source[i]], reason[i]])


def write_columns(path: Path, plan: Plan, scan: Scan, rejected: list[list[Any]]) -> None:
    """``columns.csv``: the recording's extra per-frame values (a tub's throttle) of the kept frames,
    one row per ``index.csv`` row, same order; not written when the recording has none."""
    if not scan.columns:
        return
    bad = {int(r[0]) for r in rejected}
    ords = [int(o) for o in plan.ordinal[plan.kept] if int(o) not in bad]
    names = sorted(scan.columns)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["i", *names])
        w.writerows([i, *(repr(float(scan.columns[n][o])) for n in names)] for i, o in enumerate(ords))


def finish_dataset(writer: DatasetWriter, plan: Plan, scan: Scan, cfg: PrepConfig, recording: Recording,
                   rejected: list[list[Any]]) -> PrepResult:
    """Sort written frames by time, split, write dropped.csv + manifest, move into place."""
    counts = run_counts(plan, rejected)
    if counts["kept"] == 0:
        writer.abort()
        raise DatasetError(f"no frame could be decoded: read {counts['read']}, dropped {counts['dropped']}")
    order = np.argsort(np.array([r[0] for r in writer.rows], np.int64), kind="stable")
    splits = time_split(len(order), cfg.split)
    write_dropped(writer.partial / "dropped.csv", plan, rejected)
    write_columns(writer.partial / "columns.csv", plan, scan, rejected)
    extra = _manifest_common(plan, scan, cfg, recording, counts)
    extra["rejected_images"] = [{"timestamp_ns": int(plan.t[plan.by_ordinal()[o]]), "reason": r, "error": m}
                                for o, r, m in rejected[:MAX_LISTED]]
    warnings = extra["warnings"] + _rejected_warnings(rejected)
    extra["warnings"] = warnings
    out = writer.finalize(list(splits), extra, order=order)
    return PrepResult(out, counts, _split_counts(splits), warnings=warnings, info=extra["info"])


def _rejected_warnings(rejected: list[list[Any]]) -> list[str]:
    if not rejected:
        return []
    by = Counter(r[1] for r in rejected)
    first = rejected[0][2]
    return [f"skipped {len(rejected)} image(s) that could not be used ({dict(by)}); first: {first}"]


def _split_counts(splits: np.ndarray) -> dict[str, int]:
    return {k: int(np.sum(np.asarray(splits) == k)) for k in ("train", "test")}


def labels_rows(plan: Plan, splits: np.ndarray) -> list[list[Any]]:
    """Index rows (INDEX_FIELDS) of the kept frames, time order."""
    kept = np.flatnonzero(plan.kept)
    return [[j, int(plan.t[i]), repr(float(plan.steering[i])), repr(float(plan.speed[i])),
             plan.names[plan.source[i]], s]
            for j, (i, s) in enumerate(zip(kept, splits, strict=True))]


def write_labels(out: Path, plan: Plan, scan: Scan, cfg: PrepConfig, recording: Recording,
                 overwrite: bool) -> PrepResult:
    """Labels-only output: ``index.csv`` + ``dropped.csv`` + ``manifest.yaml``, no frames."""
    partial = out.parent / (out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    counts = run_counts(plan, [])
    splits = time_split(counts["kept"], cfg.split)
    with open(partial / "index.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(INDEX_FIELDS)
        w.writerows(labels_rows(plan, splits))
    write_dropped(partial / "dropped.csv", plan, [])
    write_columns(partial / "columns.csv", plan, scan, [])
    manifest = {"format": LABELS_FORMAT, "num_frames": counts["kept"], "splits": _split_counts(splits),
                **_manifest_common(plan, scan, cfg, recording, counts)}
    write_text_atomic(partial / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))
    if out.exists() and overwrite:
        shutil.rmtree(out)
    os.replace(partial, out)
    return PrepResult(out, counts, _split_counts(splits), warnings=list(scan.warnings), info=manifest["info"],
                      labels_only=True)
