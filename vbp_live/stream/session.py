"""One overlay run from options: open the source and model, build sinks, run the pipeline, report.

Shared by ``vbp-live run``, ``vbp-live demo`` and the benchmark script.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from vbp_live.core.errors import UsageError
from vbp_live.core.horizon import estimate_horizon
from vbp_live.core.hud import HudStyle
from vbp_live.core.overlay import MaskStyle
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.frames import FrameSource, VideoInfo
from vbp_live.io.sinks import FrameSink
from vbp_live.io.sources import open_source
from vbp_live.stream.engine import OverlayEngine, configure_threads, default_batch
from vbp_live.stream.pipeline import Pipeline, PipelineConfig
from vbp_live.stream.records import PredictionLog
from vbp_live.stream.render import OverlayRenderer
from vbp_live.stream.stats import StreamStats

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# name -> asset; `--checkpoint NAME` picks one (docs/training.md#the-shipped-models). NetSVF and NetHVF
# trained on 96 randomized synthetic drives; netsvf-fixed: the earlier NetSVF of one fixed-world drive.
SHIPPED_MODELS = {"netsvf": ASSETS / "netsvf_randomized.pt", "nethvf": ASSETS / "nethvf_randomized.pt",
                  "netsvf-fixed": ASSETS / "netsvf_synth.pt"}
DEFAULT_MODEL = "nethvf"  # meets every real-clip target (docs/training.md#the-shipped-models)
SHIPPED = SHIPPED_MODELS[DEFAULT_MODEL]  # the default model


def shipped_checkpoint(name: str = DEFAULT_MODEL) -> Path | None:
    """A shipped checkpoint (a file in ``vbp_live/assets``; see SHIPPED_MODELS) if it is installed."""
    path = SHIPPED_MODELS[name]
    return path if path.is_file() else None


@dataclass
class RunOptions:
    """Everything ``vbp-live run`` can be told (see its ``--help``)."""

    checkpoint: str | os.PathLike[str] | None = None
    trust_pickle: bool = False
    device: str = "auto"
    method: str = "auto"
    batch_size: int | None = None  # None: default_batch(device)
    queue_size: int = 32
    threads: int | None = None
    fps: float | None = None
    live: bool | None = None
    realtime: bool = False
    split: str | None = None
    max_frames: int | None = None
    reconnect_s: float = 30.0
    camera_topics: tuple[str, ...] = ()  # bags: camera topics to try instead of Udacity's
    positive_maps: bool = True  # VisualBackProp: positive part of signed activations (ELU, ...)
    glyph: bool = True
    hud: bool = True
    alpha: float = 0.7
    csv: str | os.PathLike[str] | None = None
    render: str = "temporal"  # the mask look: temporal, frame or paper (core/overlay.MaskStyle)
    color: str = "red"
    timeline_s: float | None = None
    min_height: int = 360  # smaller frames are enlarged for display
    horizon: float | None = None  # the source's horizon row: the model's crop band follows it (CropSpec.at_horizon)
    auto_horizon: bool = False  # estimate ``horizon`` from the source's lane lines first (core.horizon)

    def open_source(self, spec: str) -> FrameSource:
        """SOURCE opened with these options (rate, live, split, reconnect, camera topics)."""
        return open_source(spec, fps=self.fps, live=self.live, split=self.split, reconnect_s=self.reconnect_s,
                           camera_topics=self.camera_topics)


@dataclass
class RunResult:
    """What a run produced: the stats, finalized output files and notes for the user."""

    stats: StreamStats
    outputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    overlay: dict[str, object] = field(default_factory=dict)  # OverlayRenderer.summary(): look, flicker, visibility
    source: dict[str, object] = field(default_factory=dict)  # source_summary(): size, rate, warnings, skips


def load_engine(opts: RunOptions) -> tuple[OverlayEngine, str]:
    """The engine for ``opts.checkpoint`` (or the shipped model) and a line describing it."""
    ckpt = opts.checkpoint or shipped_checkpoint()
    if ckpt is None:
        raise UsageError(f"no --checkpoint given and the shipped model ({SHIPPED}) is not installed")
    engine = OverlayEngine.from_checkpoint(ckpt, device=opts.device, trust_pickle=opts.trust_pickle,
                                           method=opts.method, positive_maps=opts.positive_maps)
    configure_threads(engine.device, opts.threads)
    desc = (f"model {engine.model_name} from {ckpt}; {engine.method_name} on {engine.device}, "
            f"{torch.get_num_threads()} torch threads")
    if opts.horizon is not None:
        try:
            engine.crop = engine.crop.at_horizon(opts.horizon)
        except ValueError as e:
            raise UsageError(f"--horizon {opts.horizon}: {ckpt}: {e}") from None
        desc += f"; crop rows {engine.crop.top:.3f}-{engine.crop.bottom:.3f} for the horizon at {opts.horizon:.3f} H"
    return engine, desc


def run_overlay(
    spec: str,
    opts: RunOptions,
    make_sinks: Callable[[VideoInfo], Sequence[FrameSink]],
    progress: bool = True,
    predictions: PredictionLog | None = None,
) -> RunResult:
    """Open SOURCE ``spec`` and the checkpoint, then run (see :func:`run_source`).

    Args:
        make_sinks: builds the sinks once the source is known (its fps, size, live or not).
        predictions: collects per-frame predictions (see :func:`run_source`).
    """
    opts, found = resolve_horizon(spec, opts)
    source = opts.open_source(spec)
    result = None
    try:
        engine, desc = load_engine(opts)
        result = run_source(source, engine, opts, make_sinks(source.info), progress=progress, predictions=predictions)
    finally:
        if result is None or not result.stats.stuck:
            source.close()  # never under a reader thread that is still inside the decoder
        else:
            log.error("not releasing %s: threads %s are still running", source.info.name, result.stats.stuck)
    result.notes.insert(0, desc if not found else f"{desc} ({found})")
    return result


AUTO_HORIZON_FRAMES = (600, 10)  # --horizon auto looks at every 10th of the first 600 frames


def resolve_horizon(spec: str, opts: RunOptions) -> tuple[RunOptions, str]:
    """``opts`` with ``auto_horizon`` turned into a ``horizon`` estimated from SOURCE ``spec``'s
    lane lines (:func:`vbp_live.core.horizon.estimate_horizon`), and a note saying so ("" when not asked)."""
    if not opts.auto_horizon:
        return opts, ""
    limit, every = AUTO_HORIZON_FRAMES
    with opts.open_source(spec) as src:
        if src.info.live:
            raise UsageError(f"--horizon auto: {spec} is live; give the camera's horizon as a number (--horizon FRAC)")
        est = estimate_horizon(r.image for k, r in zip(range(limit), src.frames(), strict=False) if k % every == 0)
    if est.row is None:
        raise UsageError(f"--horizon auto: {spec}: too few lane lines to find the horizon by ({est.crossings} "
                         f"crossings in {est.frames} frames); give it as a number (--horizon FRAC)")
    log.info("horizon of %s: %.3f H (%d lane-line crossings in %d frames)", spec, est.row, est.crossings, est.frames)
    found = f"horizon estimated from {est.crossings} lane-line crossings in {est.frames} frames"
    return replace(opts, horizon=est.row, auto_horizon=False), found


def run_source(
    source: FrameSource,
    engine: OverlayEngine,
    opts: RunOptions,
    sinks: Sequence[FrameSink],
    progress: bool = True,
    note: str = "",
    predictions: PredictionLog | None = None,
) -> RunResult:
    """Run an open source through ``engine`` into ``sinks``; sinks are always closed (finalized).

    Args:
        note: an extra HUD line on every frame.
        predictions: collects per-frame predictions (default: a CSV log when ``opts.csv`` is set).
    """
    ds_crop = getattr(source, "crop", None)
    if ds_crop is not None and not ds_crop.same_band(engine.crop):  # the reference horizon aside
        log.warning("%s was prepared with crop %s, but the model was trained with %s: its masks and steering "
                    "may not mean what they would on the model's own crop", source.info.name, ds_crop, engine.crop)
    renderer = make_renderer(engine.crop, opts, note)
    batch = opts.batch_size or default_batch(engine.device)
    cfg = PipelineConfig(batch, opts.queue_size, max_frames=opts.max_frames, realtime=opts.realtime)
    bar = _progress_bar(source, opts) if progress else None
    if predictions is None and opts.csv:
        predictions = PredictionLog(opts.csv)
    try:
        pipe = Pipeline(source, engine, renderer, sinks, cfg, on_frame=bar, log=predictions)
        stats = pipe.run()
    except BaseException:
        _discard(sinks)  # interrupted before the writer took the sinks over: leave no temporary files
        raise
    finally:
        if bar is not None:
            bar.close()
    outputs = [Path(p) for s in sinks if (p := getattr(s, "finalized", None))]
    if opts.csv and predictions is not None and predictions.path is not None and predictions.path.is_file():
        outputs.append(predictions.path)
    notes = [f"source {source.info.name}: {source.info.width}x{source.info.height} at {source.info.fps:.2f} fps"
             + (" (live: stale frames are dropped)" if source.info.live else "")]
    notes += [f"source warning: {w}" for w in getattr(source, "warnings", [])]
    return RunResult(stats, outputs, notes, renderer.summary(), source_summary(source))


def source_summary(source: FrameSource) -> dict[str, object]:
    """The source as plain values for ``--stats-json``: name, size, rate, and what its reader survived.

    ``warnings`` are the reader's one-line warnings; ``skipped`` (recordings only) is what it skipped,
    ``{"counts": {reason: n}, "first": [...]}`` (:meth:`~vbp_live.recordings.base.SkipLog.to_dict`).
    """
    info = source.info
    out: dict[str, object] = {"name": info.name, "width": info.width, "height": info.height, "fps": info.fps,
                              "live": info.live, "warnings": list(getattr(source, "warnings", []))}
    skipped = getattr(source, "skipped", None)
    if skipped is not None:
        out["skipped"] = skipped.to_dict()
    return out


def make_renderer(crop: CropSpec, opts: RunOptions, note: str = "") -> OverlayRenderer:
    """The renderer ``opts`` ask for (one per run: it holds the temporal scale and the timeline)."""
    style = HudStyle(glyph=opts.glyph) if opts.hud else None
    look = MaskStyle(mode=opts.render, color=opts.color, alpha=opts.alpha, min_tint=min(MaskStyle.min_tint, opts.alpha))
    return OverlayRenderer(crop, style, note=note, mask_style=look, timeline_s=opts.timeline_s,
                          min_height=opts.min_height)


def _discard(sinks: Sequence[FrameSink]) -> None:
    """Abort every sink (finalized ones keep their files; temporary files are removed)."""
    for sink in sinks:
        try:
            sink.abort()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.debug("aborting %s failed", sink, exc_info=True)


class _Bar:
    """tqdm progress driven from the writer thread."""

    def __init__(self, total: int | None, desc: str):
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False)

    def __call__(self, stats: StreamStats) -> None:
        self.tqdm.update(1)
        if stats.frames_out % 10 == 0:
            self.tqdm.set_postfix(fps=f"{stats.fps:.1f}", dropped=stats.dropped, refresh=False)

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(source: FrameSource, opts: RunOptions) -> _Bar:
    total = source.info.total
    if opts.max_frames is not None:
        total = min(total, opts.max_frames) if total else opts.max_frames
    return _Bar(total, "overlay")
