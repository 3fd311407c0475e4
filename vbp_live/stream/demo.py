"""The embedded default: a short synthetic drive with ground truth, overlaid by the shipped model.

:func:`run_demo` renders a drive with :mod:`vbp_live.synth` (frames are produced on the fly in
the reader thread), runs the default shipped model (NetHVF, ``vbp_live/assets/nethvf_randomized.pt``) through the
streaming pipeline and writes an overlay video with the predicted and actual steering wheel
angle and the error. Without the shipped model it uses an untrained NetHVF and says so, on
every frame and in the result.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.io.sinks import VideoFileSink
from vbp_live.io.video import ArraySource
from vbp_live.models import create_model
from vbp_live.stream.engine import OverlayEngine, configure_threads
from vbp_live.stream.records import PredictionLog
from vbp_live.stream.session import DEFAULT_MODEL, SHIPPED, RunOptions, RunResult, run_source, shipped_checkpoint

log = logging.getLogger(__name__)

UNTRAINED_NOTE = "UNTRAINED net (shipped model not installed)"


@dataclass
class DemoResult:
    """What the demo did.

    Attributes:
        run: the pipeline's result (stats, output files).
        model: which model ran (the checkpoint path, or the untrained note).
        trained: whether the shipped model was used.
        rmse_deg: steering error RMSE over the drive in degrees.
        frames: frames rendered.
    """

    run: RunResult
    model: str
    trained: bool
    rmse_deg: float | None
    frames: int


def demo_engine(
    device: str = "auto", checkpoint: str | os.PathLike[str] | None = None, trust_pickle: bool = False
) -> tuple[OverlayEngine, bool, str]:
    """The shipped model (or ``checkpoint``: a checkpoint or model card); else an untrained net of the same kind."""
    ckpt = checkpoint or shipped_checkpoint()
    if ckpt is not None:
        return OverlayEngine.from_checkpoint(ckpt, device=device, trust_pickle=trust_pickle), True, str(ckpt)
    log.warning("the shipped model %s is not installed: using an UNTRAINED %s", SHIPPED, DEFAULT_MODEL)
    torch.manual_seed(0)
    model = create_model(DEFAULT_MODEL).eval()
    engine = OverlayEngine(model, CROP_PRESETS[DEFAULT_MODEL], device if device != "auto" else "cpu")
    return engine, False, UNTRAINED_NOTE


def run_demo(
    out: str | os.PathLike[str] = "out/vbp_demo.mp4",
    frames: int = 120,
    seed: int = 7,
    device: str = "auto",
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
    look: dict[str, object] | None = None,
) -> DemoResult:
    """Render a synthetic drive and write its overlay video.

    Args:
        out: the overlay video to write.
        frames: drive length in frames (20 per second).
        seed: which drive.
        device: where the model runs ("auto": CUDA if available).
        checkpoint: another model instead of the shipped one.
        batch_size: most frames per model step (default: 2 on CPU, 16 on CUDA).
        progress: show a progress bar.
        trust_pickle: allow a model card's whole pickled model (runs code from the file).
        look: overlay look as :class:`RunOptions` fields (``render``, ``color``, ``timeline_s``, ...).
    """
    from vbp_live.synth import DriveConfig, render_frames, simulate_drive

    engine, trained, model = demo_engine(device, checkpoint, trust_pickle)
    configure_threads(engine.device)
    drive = simulate_drive(DriveConfig(seed=seed, frames=frames, start_stopped=False))
    pairs = ((img, float(t)) for (img, _), t in zip(render_frames(drive), drive.steering, strict=True))
    name = f"synthetic drive (seed {seed})"
    source = ArraySource(pairs, fps=drive.config.fps, total=frames, name=name, size=(640, 480))
    opts = RunOptions(batch_size=batch_size, **(look or {}))
    preds = PredictionLog()
    sink = VideoFileSink(Path(out), drive.config.fps)
    note = "" if trained else UNTRAINED_NOTE
    result = run_source(source, engine, opts, [sink], progress=progress, note=note, predictions=preds)
    return DemoResult(result, model, trained, preds.rmse_deg(), frames)
