"""Frames to explain or evaluate: an image, an image folder, a video, a bag, a prepared dataset or a
synthetic drive (``ground_truth.npz``, re-rendered exactly, with its pixel masks).

Every loader returns :class:`Sample` objects: the picture to draw on, the network input made
with THE crop function (:func:`~vbp_live.core.preprocess.preprocess_frame`), the actual
steering angle where known and, for synthetic drives, the ground-truth masks at the network
input's resolution.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.recordings.images import ImageError, decode_payload

log = logging.getLogger(__name__)
GT_MASKS = ("lane", "hmark", "shadow", "car")  # the cues the paper discusses


@dataclass
class Sample:
    """One frame to explain.

    Attributes:
        name: short name for captions and file names.
        image: uint8 picture to draw on: the full frame, or the network input if ``cropped``.
        net_input: uint8 network input (out_height, out_width[, 3]).
        truth_rad: actual steering wheel angle (rad), or None.
        cropped: ``image`` already is the network input (prepared datasets).
        masks: ground-truth masks (out_height, out_width) bool by name (synthetic drives only).
    """

    name: str
    image: np.ndarray
    net_input: np.ndarray
    truth_rad: float | None = None
    cropped: bool = False
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def even_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them if ``n >= total``)."""
    if n <= 0 or n >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, n).round().astype(int).tolist()))


def mask_to_input(mask: np.ndarray, crop: CropSpec) -> np.ndarray:
    """A full-frame bool mask -> network-input resolution, through the same crop and resize as frames."""
    spec = dataclasses.replace(crop, color="gray", channel_order="", interpolation="area")
    return preprocess_frame(mask.astype(np.uint8) * 255, spec) >= 128


def make_sample(name: str, image: np.ndarray, crop: CropSpec, truth: float | None = None,
                cropped: bool = False) -> Sample:
    """Build a :class:`Sample`, checking that a pre-cropped frame has the checkpoint's input size."""
    if cropped:
        want = (crop.out_height, crop.out_width)
        if image.shape[:2] != want:
            raise InputError(f"{name}: frame is {image.shape[:2]}, the checkpoint's network input is {want}")
        net = image if (image.ndim == 3) != crop.grayscale else preprocess_frame(image, crop)
        return Sample(name, image, net, truth, True)
    return Sample(name, image, preprocess_frame(image, crop), truth, False)


def load_samples(spec: str | os.PathLike[str], crop: CropSpec, frames: int = 8,
                 split: str | None = None) -> list[Sample]:
    """Load up to ``frames`` evenly spaced samples from INPUT (see the module docstring).

    Sources of unknown length (bags) give their first ``frames`` frames.
    """
    p = Path(spec)
    if (p.is_file() and p.suffix.lower() == ".npz") or (p.is_dir() and (p / "ground_truth.npz").is_file()):
        return load_synthetic(p if p.is_file() else p / "ground_truth.npz", crop, frames)
    from vbp_live.io.frames import SourceError
    from vbp_live.io.sources import open_source
    from vbp_live.io.video import IMAGE_SUFFIXES

    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        try:
            img = decode_payload(p, gray=False, follow_symlinks=True)
        except ImageError as e:
            raise InputError(f"{p}: not a readable image ({e})") from None
        return [make_sample(p.stem, img, crop)]
    try:
        src = open_source(str(p), split=split)
    except SourceError as e:
        raise InputError(str(e)) from e
    with src:
        total = src.info.total
        names = [Path(f).stem for f in getattr(src, "files", [])]
        wanted = set(even_indices(total, frames)) if total else set(range(frames))
        out = []
        for k, rec in enumerate(src.frames()):
            if k in wanted:
                name = names[rec.index] if names else f"{p.stem}_{rec.index:06d}"
                out.append(make_sample(name, rec.image, crop, rec.truth_rad, rec.cropped))
            if len(out) == len(wanted):
                break
    if not out:
        raise InputError(f"{p}: no readable frames")
    return out


def load_synthetic(gt_path: Path, crop: CropSpec, frames: int = 8) -> list[Sample]:
    """Re-render frames of a synthetic drive from its ground-truth file (exact, no JPEG loss), with masks."""
    from vbp_live.io.ground_truth import GroundTruthError, load_ground_truth
    from vbp_live.synth import Renderer, simulate_drive

    try:
        gt = load_ground_truth(gt_path)
    except GroundTruthError as e:
        raise InputError(str(e)) from e
    drive = simulate_drive(gt.config)
    if drive.n_frames != len(gt) or not np.allclose(drive.steering, gt.steering, atol=1e-6):
        raise InputError(f"{gt_path}: re-simulating its drive config does not reproduce its steering "
                         "(written by another vbp_live version?)")
    renderer, out = Renderer(drive), []
    for i in even_indices(len(gt), frames):
        frame, rendered = renderer.render(i)
        truth_masks = gt.masks(i)
        if not np.array_equal(rendered.lane, truth_masks.lane):
            raise InputError(f"{gt_path}: frame {i} re-renders with different lane masks than the file holds")
        s = make_sample(f"synth_{i:05d}", frame, crop, float(gt.steering[i]))
        s.masks = {k: mask_to_input(getattr(truth_masks, k), crop) for k in GT_MASKS}
        out.append(s)
    return out


def read_steering_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """``name -> steering (rad)`` from a CSV with a file-name column and an angle column.

    Accepted headers: file name in ``filename``/``file``/``name``/``frame``/``center``; angle in
    ``steering_rad``/``angle``/``steering``. Names are matched by file stem.
    """
    p = Path(path)
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        name_col = next((cols[c] for c in ("filename", "file", "name", "frame", "center") if c in cols), None)
        angle_col = next((cols[c] for c in ("steering_rad", "angle", "steering") if c in cols), None)
        if name_col is None or angle_col is None:
            raise InputError(f"{p}: needs a file-name column (filename/file/name/frame/center) and an angle "
                             f"column (steering_rad/angle/steering); found {reader.fieldnames}")
        out = {}
        for row in reader:
            stem = Path(row[name_col].strip().replace("\\", "/")).stem
            try:
                out[stem] = float(row[angle_col])
            except ValueError as e:
                raise InputError(f"{p}: bad angle {row[angle_col]!r} for {stem}") from e
    return out


def apply_steering(samples: list[Sample], steering: str | None) -> None:
    """Set ``truth_rad`` from ``--steering``: a number (one sample) or a CSV (see :func:`read_steering_csv`)."""
    if not steering:
        return
    try:
        value = float(steering)
    except ValueError:
        table = read_steering_csv(steering)
        hits = 0
        for s in samples:
            if s.name in table:
                s.truth_rad, hits = table[s.name], hits + 1
        if not hits:
            log.warning("%s: no row matches the input frame names", steering)
        return
    if len(samples) != 1:
        raise InputError(f"--steering {steering}: a single value needs a single frame, got {len(samples)} "
                         "(give a CSV of file names and angles instead)")
    samples[0].truth_rad = value
