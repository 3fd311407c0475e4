"""Side-by-side comparison figures like the paper's Figures 15-19 (``vbp-live explain``).

For each frame: the input, then one panel per method with its map in red on the frame (mapped
back through the checkpoint's crop), and a caption with the predicted steering wheel angle
and, where the actual angle is known, the error ``actual − predicted`` in degrees.

Maps are shown after each method's sign convention (positive = evidence, negatives hidden),
scaled so that the ``percentile``-th percentile of the positive part is full red: gradient
maps are spiky, and a plain maximum would leave all but a few pixels invisible.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from vbp_live.attribution import Attribution, create_method, list_methods
from vbp_live.core.overlay import overlay_mask, to_bgr
from vbp_live.core.plot import grid, stack_rows, text_band
from vbp_live.core.preprocess import CropSpec, mask_to_frame
from vbp_live.evaluate.inputs import Sample
from vbp_live.io.atomic import atomic_path
from vbp_live.models import frames_to_input

log = logging.getLogger(__name__)
COMPARISON_METHODS = ("vbp", "lrp", "saliency", "deconvnet", "gbp", "gradcam", "pda", "pda_grad")
DEFAULT_METHODS = ("vbp", "lrp", "saliency", "gbp", "gradcam")
LABELS = {
    "vbp": "VisualBackProp", "lrp": "eps-LRP", "saliency": "saliency |grad|", "deconvnet": "DeconvNet",
    "gbp": "guided backprop", "gradcam": "Grad-CAM", "pda": "PDA (Alg. 2)", "pda_grad": "PDA grad (Alg. 3)",
}


def parse_methods(text: str) -> list[str]:
    """``"vbp,lrp"`` -> names; ``"all"`` = every comparison method; unknown names raise a clear error."""
    names = list(COMPARISON_METHODS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in list_methods()]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or text!r}; choose from {', '.join(list_methods())} or 'all'")
    return list(dict.fromkeys(names))


def build_methods(model: nn.Module, names: Sequence[str], options: dict[str, dict[str, Any]] | None = None,
                  fit_images: torch.Tensor | None = None) -> dict[str, Attribution]:
    """Instantiate methods; those with ``fit`` (PDA) estimate their statistics from ``fit_images``."""
    methods = {}
    for name in names:
        m = create_method(name, model, **(options or {}).get(name, {}))
        if fit_images is not None and hasattr(m, "fit"):
            m.fit(fit_images)
        methods[name] = m
    return methods


def samples_to_input(samples: Sequence[Sample], device: torch.device | str = "cpu",
                     crop: CropSpec | None = None) -> torch.Tensor:
    """Network inputs of the samples as one float batch (N, C, H, W), scaled as ``crop`` says."""
    return frames_to_input(np.stack([s.net_input for s in samples]), device, crop)


def batches(n: int, size: int) -> Iterable[slice]:
    """Slices covering ``range(n)`` in chunks of ``size``."""
    for s in range(0, n, max(1, size)):
        yield slice(s, min(n, s + size))


def predict(model: nn.Module, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    """Model outputs (N, K) as float64 numpy, in no-grad batches."""
    with torch.no_grad():
        outs = [model(x[sl]).reshape(len(x[sl]), -1).double().cpu() for sl in batches(len(x), batch)]
    return torch.cat(outs).numpy()


def compute_maps(method: Attribution, x: torch.Tensor, batch: int = 8,
                 progress: Callable[[int], None] | None = None, warmup: bool = True) -> tuple[np.ndarray, float]:
    """Maps (N, H, W) float32 for every sample and the wall time in seconds (device synchronized).

    ``warmup`` first runs the method once on one frame (untimed) so one-time work (tracing the
    network, planning LRP) is not counted; it is skipped for PDA, where one frame costs hundreds
    of forward passes.
    """
    if warmup and not hasattr(method, "fit"):
        method.attribute(x[:1])
    maps, t0 = [], time.perf_counter()
    for sl in batches(len(x), batch):
        maps.append(method.attribute(x[sl])[:, 0].float().cpu())
        if progress:
            progress(sl.stop - sl.start)
    if x.is_cuda:
        torch.cuda.synchronize()
    return torch.cat(maps).numpy(), time.perf_counter() - t0


def display_map(m: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Positive part scaled so its ``percentile``-th percentile (of positive pixels) is 1, clipped to [0, 1]."""
    pos = np.clip(np.nan_to_num(m.astype(np.float32)), 0.0, None)
    nz = pos[pos > 0]
    if nz.size == 0:
        return np.zeros_like(pos)
    hi = float(np.percentile(nz, percentile)) if percentile < 100 else float(nz.max())
    return np.clip(pos / (hi if hi > 0 else float(nz.max())), 0.0, 1.0)


def overlay_panel(sample: Sample, crop: CropSpec, map01: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """The sample's picture with ``map01`` (network-input sized) in red on the crop band."""
    img = to_bgr(sample.image).copy()  # (H, W, 3)
    if sample.cropped:
        return overlay_mask(img, map01, alpha)
    full = mask_to_frame(map01, crop, img.shape)
    y0, y1, x0, x1 = crop.box(img.shape[0], img.shape[1])
    img[y0:y1, x0:x1] = overlay_mask(img[y0:y1, x0:x1], full[y0:y1, x0:x1], alpha)
    return img


def describe_output(out: np.ndarray, truth_rad: float | None) -> str:
    """Caption text: predicted steering wheel angle (and error) for a 1-output net, else the class."""
    if out.size != 1:
        return f"predicted class {int(np.argmax(out))}"
    pred = float(out.ravel()[0])
    text = f"predicted {math.degrees(pred):+.1f} deg SWA ({pred:+.3f} rad)"
    if truth_rad is not None:
        err = math.degrees(truth_rad - pred)
        text += f" | actual {math.degrees(truth_rad):+.1f} deg | error (actual - predicted) {err:+.1f} deg"
    return text


def _fit(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] == width:
        return img
    h = max(1, round(img.shape[0] * width / img.shape[1]))
    return cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA if width < img.shape[1] else cv2.INTER_LINEAR)


def explain_figure(sample: Sample, crop: CropSpec, maps: dict[str, np.ndarray], out: np.ndarray,
                   ms: dict[str, float] | None = None, panel_width: int = 480, cols: int = 3,
                   percentile: float = 99.5) -> np.ndarray:
    """One figure: input + one overlay panel per method, titled, with a caption (BGR uint8)."""
    panels = [stack_rows([text_band(["input"], panel_width), _fit(to_bgr(sample.image), panel_width)])]
    for name, m in maps.items():
        title = LABELS.get(name, name) + (f"  {ms[name]:.1f} ms/frame" if ms and name in ms else "")
        panel = overlay_panel(sample, crop, display_map(m, percentile))
        panels.append(stack_rows([text_band([title], panel_width), _fit(panel, panel_width)]))
    body = grid(panels, cols)
    caption = text_band([sample.name, describe_output(out, sample.truth_rad)], body.shape[1], scale=0.55)
    return stack_rows([caption, body])


def write_png(path: Path, img: np.ndarray) -> Path:
    """Write a PNG atomically; raise if OpenCV cannot encode it."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise OSError(f"{path}: OpenCV could not write the PNG")
    return path


def run_explain(samples: Sequence[Sample], model: nn.Module, crop: CropSpec, names: Sequence[str], out_dir: Path,
                device: str = "cpu", batch: int = 8, options: dict[str, dict[str, Any]] | None = None,
                panel_width: int = 480, cols: int = 3, percentile: float = 99.5,
                progress: Callable[..., Any] | None = None) -> tuple[list[Path], np.ndarray, dict[str, float]]:
    """Compute every method's maps for the samples and write one figure per sample.

    Returns the written paths, the model outputs (N, K) and each method's ms/frame.
    """
    x = samples_to_input(samples, device, crop)  # (N, C, H, W)
    outputs = predict(model, x, batch)
    methods = build_methods(model, names, options, fit_images=x)
    maps, ms = {}, {}
    for name, method in methods.items():
        bar = progress(total=len(samples), desc=name, unit="frame") if progress else None
        maps[name], secs = compute_maps(method, x, batch, bar.update if bar is not None else None)
        ms[name] = 1000.0 * secs / len(samples)
        if bar is not None:
            bar.close()
    paths = []
    for i, s in enumerate(samples):
        fig = explain_figure(s, crop, {n: m[i] for n, m in maps.items()}, outputs[i], ms, panel_width, cols, percentile)
        paths.append(write_png(Path(out_dir) / f"{s.name}_explain.png", fig))
    return paths, outputs, ms
