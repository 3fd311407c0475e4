"""What a preparation run did: :class:`PrepResult` (made by the pipeline and the output step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
