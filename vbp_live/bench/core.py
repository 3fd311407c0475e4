"""Forward alone vs forward + VisualBackProp, measured in one run on the same model and threads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from vbp_live.attribution import VisualBackProp, VisualBackPropReference
from vbp_live.models import create_model


@dataclass
class BenchRow:
    """One measured configuration."""

    model: str
    batch: int
    method: str
    ms_per_frame: float
    ratio_to_forward: float


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def core_bench(
    models: tuple[str, ...] = ("netsvf", "nethvf"),
    batches: tuple[int, ...] = (1, 16),
    repeats: int = 7,
    reference: bool = True,
    device: str = "cpu",
    seed: int = 0,
) -> list[BenchRow]:
    """ms/frame for forward alone, forward + VBP (fast) and, optionally, the reference VBP."""
    rows: list[BenchRow] = []
    gen = torch.Generator().manual_seed(seed)
    for name in models:
        model = create_model(name).to(device).eval()
        vbp, ref = VisualBackProp(model), VisualBackPropReference(model)
        for b in batches:
            x = torch.rand(b, *model.in_shape, generator=gen).to(device)
            fns = {"forward": lambda: model(x), "forward+vbp": lambda: vbp.attribute(x)}
            if reference:
                fns["forward+vbp_reference"] = lambda: ref.attribute(x)
            with torch.inference_mode():
                vbp.attribute(x)  # trace once outside the timing
                secs = interleaved(fns, repeats)
            fwd = secs["forward"]
            rows += [BenchRow(name, b, k, 1000 * s / b, s / fwd) for k, s in secs.items()]
    return rows


def rows_to_markdown(rows: list[BenchRow]) -> str:
    """A markdown table of bench rows."""
    out = ["| model | batch | method | ms/frame | × forward |", "|---|---:|---|---:|---:|"]
    out += [f"| {r.model} | {r.batch} | {r.method} | {r.ms_per_frame:.2f} | {r.ratio_to_forward:.3f} |" for r in rows]
    return "\n".join(out)
