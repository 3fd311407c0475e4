"""``vbp-live bench``: every method timed in one run, on the same model, batch, threads and device.

Rows (all include the forward pass unless named "pass alone"): the forward pass; VisualBackProp
fast, reference and fused (Triton, CUDA only), with and without a CUDA graph on CUDA; the VBP
pass alone (channel reduction + upsample/multiply + min-max on captured maps, the cost VBP adds);
our ε-LRP; and the peers that import (:mod:`.peers`). Timings are the fastest of round-robin repeats,
so machine drift hits every method alike. Notes compare against the targets: VBP overhead on
the forward pass, the VBP pass vs its memory bound (bytes of post-activation maps read once ÷
measured copy bandwidth) and the fastest peer ε-LRP vs VBP.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import logging
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from vbp_live.attribution import VisualBackProp, VisualBackPropReference, create_method, list_methods
from vbp_live.bench import vbp_pass
from vbp_live.bench.peers import PEERS, PeerUnavailable
from vbp_live.io.model_card import open_model
from vbp_live.models import create_model

log = logging.getLogger(__name__)
Fn = Callable[[], object]
LRP_OURS = "lrp (ours, ε=100)"


@dataclass
class BenchRow:
    """One measured configuration."""

    model: str
    batch: int
    method: str
    ms_per_frame: float
    ratio_to_forward: float
    paired_ratio: float = float("nan")  # median over rounds of (this ÷ forward) timed in the same round


@dataclass
class BenchConfig:
    """What to measure. ``size`` = (height, width) passed to the model factory, or None for its default."""

    models: tuple[str, ...] = ("netsvf", "nethvf")
    batches: tuple[int, ...] = (1, 16)
    repeats: int = 5
    device: str = "cpu"
    size: tuple[int, int] | None = None
    reference: bool = True
    peers: bool = True
    seed: int = 0
    checkpoint: str = ""  # a checkpoint or model card to time instead of ``models``
    trust_pickle: bool = False


@dataclass
class BenchReport:
    """Rows, notes on the targets, methods skipped (with why) and the machine/versions line."""

    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    environment: str = ""

    def to_markdown(self) -> str:
        """The whole report as markdown (the table the README quotes, then notes and skips)."""
        parts = [f"Measured {self.environment}.", "", rows_to_markdown(self.rows)]
        if self.notes:
            parts += ["", *[f"- {n}" for n in self.notes]]
        if self.skipped:
            parts += ["", "Not measured in this run:", *[f"- {k}: {v}" for k, v in self.skipped.items()]]
        return "\n".join(parts) + "\n"


def _synced(fn: Fn, device: torch.device) -> Fn:
    if device.type != "cuda":
        return fn

    def call() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return call


def time_call(fn: Fn, repeats: int, warmup: int = 2) -> float:
    """Fastest seconds per call of ``fn`` (see :func:`interleaved`)."""
    return interleaved({"fn": fn}, repeats, warmup)["fn"]


def interleaved(fns: dict[str, Fn], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Fastest seconds per call of each function, timed round-robin so drift hits all alike.

    The minimum, not the median: other processes on a shared machine only ever add time, so the
    fastest repeat is the closest to the method's own cost (as ``timeit`` recommends).
    """
    return {k: min(v) for k, v in interleaved_samples(fns, repeats, warmup).items()}


def interleaved_samples(fns: dict[str, Fn], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of every call, ``repeats`` rounds; each round calls every function once, in order."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def paired_ratio(samples: list[float], base: list[float]) -> float:
    """Median over rounds of ``samples[i] / base[i]``.

    Calls in one round run milliseconds apart, so a shared machine's slow and fast phases (which
    last seconds to minutes) cancel out of each ratio; the fastest-repeat ratio can pair a fast
    phase with a slow one.
    """
    return statistics.median(a / b for a, b in zip(samples, base, strict=True))


def copy_bandwidth(device: torch.device, mbytes: int = 256, repeats: int = 5) -> float:
    """Measured device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(mbytes << 18, dtype=torch.float32, device=device).uniform_()  # mbytes MiB
    dst = torch.empty_like(src)
    secs = time_call(_synced(lambda: dst.copy_(src), device), repeats)
    return 2 * src.numel() * src.element_size() / secs


def environment(device: torch.device) -> str:
    """Machine, versions and date, one line."""
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    vers = [f"torch {torch.__version__}"]
    for pkg in ("triton", "captum", "zennit", "grad-cam"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            vers.append(f"{pkg} {importlib.metadata.version(pkg)}")
    when = datetime.date.today().isoformat()
    return f"on {machine} ({device.type}, {torch.get_num_threads()} torch threads), {', '.join(vers)}, {when}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ours(model: nn.Module, x: torch.Tensor, cfg: BenchConfig, skipped: dict[str, str]) -> dict[str, Fn]:
    """Forward, VBP fast / reference / fused (+ CUDA graphs) and our ε-LRP.

    The forward and every VisualBackProp row run under ``torch.inference_mode()``, as the
    streaming engine calls them, so the ratio compares like with like.
    """
    fns: dict[str, Fn] = {"forward": lambda: model(x)}
    vbp = VisualBackProp(model)
    fns["vbp"] = lambda: vbp.attribute(x)
    if cfg.reference:
        ref = VisualBackPropReference(model)
        fns["vbp_reference"] = lambda: ref.attribute(x)
    fns.update(vbp_pass.fused_and_graphs(model, x, skipped))
    fns.update(vbp_pass.pass_alone(model, x, skipped))
    fns = {k: torch.inference_mode()(f) for k, f in fns.items()}
    lrp = _our_lrp(model, skipped)
    if lrp is not None:
        fns[LRP_OURS] = lambda: lrp.attribute(x)
    return fns


def _our_lrp(model: nn.Module, skipped: dict[str, str]):
    if "lrp" not in list_methods():
        with contextlib.suppress(ImportError):
            importlib.import_module("vbp_live.attribution.lrp")  # registers "lrp" when present
    if "lrp" not in list_methods():
        skipped[LRP_OURS] = "no attribution method 'lrp' is registered in this version"
        return None
    return create_method("lrp", model)


def _peers(model: nn.Module, x: torch.Tensor, skipped: dict[str, str]) -> dict[str, Fn]:
    layer = VisualBackProp(model).chain(x).stages[-1].name  # the last conv activation
    fns: dict[str, Fn] = {}
    for name, (build, _) in PEERS.items():
        try:
            fns[name] = build(model, x, layer)
            fns[name]()  # a peer that cannot handle the model is skipped, not fatal
        except PeerUnavailable as e:
            skipped[name] = str(e)
        except Exception as e:  # noqa: BLE001 - a peer's own failure is reported, not raised
            fns.pop(name, None)
            skipped[name] = f"failed on this model: {type(e).__name__}: {str(e)[:160]}"
    return fns


def measure(
    name: str, model: nn.Module, x: torch.Tensor, cfg: BenchConfig, report: BenchReport
) -> tuple[dict[str, float], dict[str, float]]:
    """Time every method on one (model, batch); append rows and return seconds per call and paired ratios."""
    dev = x.device
    fns = _ours(model, x, cfg, report.skipped)
    if cfg.peers:
        fns.update(_peers(model, x, report.skipped))
    samples = interleaved_samples({k: _synced(f, dev) for k, f in fns.items()}, cfg.repeats, warmup=min(2, cfg.repeats))
    secs = {k: min(v) for k, v in samples.items()}
    paired = {k: paired_ratio(v, samples["forward"]) for k, v in samples.items()}
    b, fwd = x.shape[0], secs["forward"]
    report.rows += [BenchRow(name, b, k, 1000 * s / b, s / fwd, paired[k]) for k, s in secs.items()]
    return secs, paired


def run_bench(cfg: BenchConfig, progress: bool = False) -> BenchReport:
    """Measure every (model, batch) of ``cfg`` and return the report with its target notes."""
    dev = torch.device(cfg.device)
    report = BenchReport(environment=environment(dev))
    bandwidth = copy_bandwidth(dev, 256 if dev.type == "cuda" else 64)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(total=len(cfg.batches) * (1 if cfg.checkpoint else len(cfg.models)), desc="bench",
               disable=not progress)
    for name, model, in_shape, b in _jobs(cfg, dev):
        x = torch.rand(b, *in_shape, generator=gen).to(dev)  # (B, C, H, W)
        secs, paired = measure(name, model, x, cfg, report)
        bar.update()
        act_bytes = vbp_pass.activation_bytes(model, x)
        report.notes += vbp_pass.target_notes(name, b, secs, act_bytes, bandwidth, dev, LRP_OURS, paired)
    return report


def _jobs(cfg: BenchConfig, dev: torch.device) -> Iterator[tuple[str, nn.Module, tuple[int, ...], int]]:
    """(name, model, input (C, H, W), batch) to time: the registered ``models``, or ``checkpoint``'s model."""
    if cfg.checkpoint:
        ck = open_model(cfg.checkpoint, cfg.trust_pickle)
        model, c = ck.build_model(dev), ck.crop
        for b in cfg.batches:
            yield Path(cfg.checkpoint).name, model, (c.channels, c.out_height, c.out_width), b
        return
    for name in cfg.models:
        kwargs = {"height": cfg.size[0], "width": cfg.size[1]} if cfg.size else {}
        model = create_model(name, **kwargs).to(dev).eval()
        for b in cfg.batches:
            yield name, model, model.in_shape, b


def rows_to_markdown(rows: list[BenchRow]) -> str:
    """A markdown table of bench rows."""
    out = ["| model | batch | method | ms/frame | × forward | × forward, paired |", "|---|---:|---|---:|---:|---:|"]
    out += [
        f"| {r.model} | {r.batch} | {r.method} | {r.ms_per_frame:.2f} | {r.ratio_to_forward:.3f} "
        f"| {r.paired_ratio:.3f} |"
        for r in rows
    ]
    return "\n".join(out)
