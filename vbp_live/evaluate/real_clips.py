"""How a steering model behaves on real dashcam clips that have no steering log (``scripts/real_clips.py``).

Per clip, from the network's raw per-frame output (no smoothing), in degrees of steering wheel
angle (positive = left, as every vbp_live checkpoint outputs after its output map):

- mean and standard deviation of the predicted angle;
- p50 / p95 of the frame-to-frame change ``|pred[t] - pred[t-1]|``;
- the mean on the clip's near-straight highway stretches (frame ranges in the clip table,
  docs/evaluation/real_clips.yaml, each with its reason);
- the lane-paint focus: the share of VisualBackProp mask mass on lane-paint pixels (found by the
  colour rule of :mod:`vbp_live.evaluate.paint`) over the share of the crop band they cover, pooled
  over the clip's frames (:class:`~vbp_live.core.metrics.MassTally`).

:data:`TARGETS` holds the issue's targets; :meth:`ClipResult.passes` says pass/fail per target.
The output and the mask come from one forward pass (:meth:`VisualBackProp.run`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from vbp_live.attribution import VisualBackProp
from vbp_live.core import config
from vbp_live.core.config import ConfigValueError
from vbp_live.core.metrics import MassTally
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.evaluate.paint import PaintRule, paint_mask
from vbp_live.io.frames import FrameRecord, FrameSource
from vbp_live.models import frames_to_input

log = logging.getLogger(__name__)

FOCUS_MIN = 5.0  # mask mass on lane paint >= 5 x its area share of the crop band
STEP_P95_MAX_DEG = 2.0  # p95 of |pred[t] - pred[t-1]| <= 2 degrees of steering wheel angle
STRAIGHT_MEAN_MAX_DEG = 3.0  # |mean| on near-straight highway stretches <= 3 degrees
TARGETS = {
    "focus": f"lane-paint focus >= {FOCUS_MIN:g}",
    "step_p95": f"frame-to-frame change p95 <= {STEP_P95_MAX_DEG:g} deg",
    "straight_mean": f"|mean| on near-straight stretches <= {STRAIGHT_MEAN_MAX_DEG:g} deg",
}


# -- the clip table (docs/evaluation/real_clips.yaml) ---------------------------------------------


@dataclass
class Stretch:
    """A near-straight highway stretch: frames ``first``..``last`` (inclusive) and why."""

    first: int
    last: int
    reason: str

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last:
            raise ConfigValueError("straight", f"straight: needs 0 <= first <= last, got {self.first}..{self.last}")


@dataclass
class ClipEntry:
    """One real source: a clip (or a still image, for the crop figure) and what was read off it by eye.

    Attributes:
        file: path relative to the shared data folder.
        horizon: the horizon (vanishing point) row as a fraction of the frame height; null = unknown
            (the paint rule then looks at the whole crop band).
        hood: first row of the ego hood as a fraction of the height; null = no hood in view.
        straight: near-straight highway stretches (clips only).
        note: what the source shows.
    """

    file: str
    horizon: float | None = None
    hood: float | None = None
    straight: list[Stretch] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        for key in ("horizon", "hood"):
            v = getattr(self, key)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigValueError(key, f"{key}: a fraction of the frame height in 0..1, got {v}")


@dataclass
class CropRows:
    """A crop band as fractions of the frame height, with the reason it was chosen."""

    top: float
    bottom: float
    reason: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.top < self.bottom <= 1.0:
            raise ConfigValueError("crop", f"crop: needs 0 <= top < bottom <= 1, got {self.top}..{self.bottom}")


@dataclass
class ClipTable:
    """``docs/evaluation/real_clips.yaml``: the clips, the still images and the recommended crop."""

    clips: list[ClipEntry] = field(default_factory=list)
    stills: list[ClipEntry] = field(default_factory=list)
    recommended_crop: CropRows | None = None


def load_table(path: str | Path) -> ClipTable:
    """Read the clip table (the one config loader: unknown keys and wrong types fail as ``file:line``)."""
    return config.load(ClipTable, path)


# -- the metrics ----------------------------------------------------------------------------------


def frame_steps(pred_deg: np.ndarray) -> np.ndarray:
    """``|pred[t] - pred[t-1]|`` for consecutive frames (one fewer than the predictions)."""
    return np.abs(np.diff(np.asarray(pred_deg, np.float64)))


def in_stretches(indices: np.ndarray, stretches: Sequence[Stretch]) -> np.ndarray:
    """Bool per frame: its index lies in one of the stretches."""
    idx = np.asarray(indices)
    hit = np.zeros(idx.shape, bool)
    for s in stretches:
        hit |= (idx >= s.first) & (idx <= s.last)
    return hit


@dataclass
class ClipResult:
    """What one model did on one clip (angles in degrees of steering wheel angle, positive = left).

    ``straight_mean_deg`` is None when the clip has no straight stretch among the frames read;
    the focus numbers are NaN when no paint was found.
    """

    name: str
    frames: int
    mean_deg: float
    std_deg: float
    step_p50_deg: float
    step_p95_deg: float
    straight_mean_deg: float | None
    straight_frames: int
    paint_area_share: float
    paint_mass_share: float
    paint_focus: float

    def passes(self) -> dict[str, bool | None]:
        """Pass/fail per target of :data:`TARGETS` (None: not measurable on this clip)."""
        straight = self.straight_mean_deg
        return {
            "focus": None if math.isnan(self.paint_focus) else self.paint_focus >= FOCUS_MIN,
            "step_p95": None if math.isnan(self.step_p95_deg) else self.step_p95_deg <= STEP_P95_MAX_DEG,
            "straight_mean": None if straight is None else abs(straight) <= STRAIGHT_MEAN_MAX_DEG,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the numbers (NaN as null) and the pass/fail per target."""
        d = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
        d["passes"] = self.passes()
        return d


def summarize(name: str, indices: np.ndarray, pred_deg: np.ndarray, tally: MassTally,
              stretches: Sequence[Stretch] = ()) -> ClipResult:
    """The clip's numbers from its frame indices, per-frame predictions (degrees) and pooled paint tally."""
    pred = np.asarray(pred_deg, np.float64)
    steps = frame_steps(pred)
    straight = pred[in_stretches(indices, stretches)]
    return ClipResult(
        name=name, frames=len(pred),
        mean_deg=float(pred.mean()) if pred.size else math.nan,
        std_deg=float(pred.std()) if pred.size else math.nan,
        step_p50_deg=float(np.percentile(steps, 50)) if steps.size else math.nan,
        step_p95_deg=float(np.percentile(steps, 95)) if steps.size else math.nan,
        straight_mean_deg=float(straight.mean()) if straight.size else None,
        straight_frames=int(straight.size),
        paint_area_share=tally.area_share(), paint_mass_share=tally.share(), paint_focus=tally.ratio(),
    )


# -- running a model over a clip ------------------------------------------------------------------


@dataclass
class ClipRun:
    """The raw per-frame record of one clip: frame indices, predictions (degrees) and the paint tally."""

    indices: list[int] = field(default_factory=list)
    pred_deg: list[float] = field(default_factory=list)
    tally: MassTally = field(default_factory=MassTally)


def paint_coverage(frame: np.ndarray, crop: CropSpec, horizon: float | None, rule: PaintRule) -> np.ndarray:
    """Lane paint of a full frame through the network's crop/resize: covered fraction per input pixel (h, w)."""
    y0, y1, _, _ = crop.box(frame.shape[0], frame.shape[1])
    paint = paint_mask(frame, (y0, y1), horizon, rule)  # (H, W) bool
    gray_crop = CropSpec(**{**crop.to_dict(), "color": "gray", "channel_order": ""})
    return preprocess_frame(paint.astype(np.uint8) * 255, gray_crop).astype(np.float64) / 255.0  # (h, w)


def batched(frames: Iterator[FrameRecord], size: int, limit: int | None) -> Iterator[list[FrameRecord]]:
    """Frame records in lists of ``size``, stopping after ``limit`` frames (None: all)."""
    batch: list[FrameRecord] = []
    for n, rec in enumerate(frames):
        if limit is not None and n >= limit:
            break
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_clip(model: nn.Module, crop: CropSpec, source: FrameSource, horizon: float | None,
             rule: PaintRule | None = None, max_frames: int | None = None, batch: int = 16) -> ClipRun:
    """Predict every frame of ``source`` and tally the VisualBackProp mask mass on lane paint.

    Args:
        model: the steering network (output: radians of steering wheel angle, positive = left).
        crop: the network's preprocessing.
        source: the clip (frames are read in order, none skipped).
        horizon: the clip's horizon row as a fraction of the height (None: the crop band's top).
        rule: the paint rule (default :class:`PaintRule`).
        max_frames: read at most this many frames (None: all).
        batch: frames per forward pass.
    """
    rule, run, vbp = rule or PaintRule(), ClipRun(), VisualBackProp(model, positive=True)  # as run shows it
    device = next(model.parameters()).device
    for recs in batched(source.frames(), batch, max_frames):
        x = frames_to_input(np.stack([preprocess_frame(r.image, crop) for r in recs]), device, crop)
        with torch.no_grad():
            res = vbp.run(x)  # one forward: output (B, 1) and mask (B, 1, h, w)
        pred = np.degrees(res.output.reshape(len(recs), -1)[:, 0].double().cpu().numpy())  # (B,)
        for rec, p, m in zip(recs, pred, res.mask[:, 0].double().cpu().numpy(), strict=True):
            run.indices.append(rec.index)
            run.pred_deg.append(float(p))
            run.tally.add(m, paint_coverage(rec.image, crop, horizon, rule))
    return run


# -- the printed report ---------------------------------------------------------------------------


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report_lines(results: Sequence[ClipResult]) -> list[str]:
    """A Markdown table of the clips' numbers with pass/fail per target."""
    lines = ["| clip | frames | mean ± std (deg) | step p50 / p95 (deg) | straight mean (deg, frames) "
             "| paint area / mass share | focus | targets (focus, p95, straight) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        p = r.passes()
        lines.append(
            f"| {r.name} | {r.frames} | {_num(r.mean_deg)} ± {_num(r.std_deg)} "
            f"| {_num(r.step_p50_deg)} / {_num(r.step_p95_deg)} "
            f"| {_num(r.straight_mean_deg)} ({r.straight_frames}) "
            f"| {_num(r.paint_area_share, '{:.2%}')} / {_num(r.paint_mass_share, '{:.2%}')} "
            f"| {_num(r.paint_focus)} | {_verdict(p['focus'])}, {_verdict(p['step_p95'])}, "
            f"{_verdict(p['straight_mean'])} |")
    return lines


# -- the crop figure ------------------------------------------------------------------------------


@dataclass
class Band:
    """A crop band to draw: rows as fractions of the height, a label and a BGR colour."""

    top: float
    bottom: float
    label: str
    color: tuple[int, int, int]


def draw_bands(image: np.ndarray, bands: Sequence[Band], horizon: float | None, hood: float | None) -> np.ndarray:
    """The image with each band's edges (solid) and label, the horizon (dashed blue) and the hood row (dashed black)."""
    out = image.copy() if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    h, w = out.shape[:2]
    t = max(1, round(h / 270))
    span = w // max(1, len(bands))  # each band gets its own stretch of columns, left to right
    for k, b in enumerate(bands):
        y0, y1 = round(b.top * h), min(h - t, round(b.bottom * h))
        x0 = k * span + round(0.01 * w)
        for y in (y0, y1):
            cv2.line(out, (x0, y), (x0 + span - round(0.02 * w), y), b.color, t)
        cv2.line(out, (x0, y0), (x0, y1), b.color, t)
        _label(out, b.label, (x0 + 4 * t, y0 + 4 * t), b.color, t)
    for frac, color in ((horizon, (255, 160, 0)), (hood, (0, 0, 0))):
        if frac is not None:
            y = round(frac * h)
            for x in range(0, w, 16 * t):
                cv2.line(out, (x, y), (min(w - 1, x + 8 * t), y), color, t)
    return out


def _label(image: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], t: int) -> None:
    """``text`` on a dark box with its top-left corner at ``org``, in place."""
    scale = 0.4 * t
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
    x, y = org
    cv2.rectangle(image, (x, y), (x + tw + 4 * t, y + th + base + 4 * t), (30, 30, 30), -1)
    cv2.putText(image, text, (x + 2 * t, y + th + 2 * t), cv2.FONT_HERSHEY_SIMPLEX, scale, color, t, cv2.LINE_AA)
