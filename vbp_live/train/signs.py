"""Procedural traffic-sign classes for the sign net (the paper's Table 2 net) and its tests.

Class ``k`` is a sign outline (one of six shapes: circle, triangle, inverted triangle, square,
diamond, octagon) with the digit ``k // 6`` inside. Position, size, rotation, contrast,
background texture, blur and noise vary per image, so the classes must be recognised from the
sign itself. Deterministic for a seed.
"""

from __future__ import annotations

import cv2
import numpy as np

SHAPES = ("circle", "triangle", "inverted_triangle", "square", "diamond", "octagon")


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    sides, phase = {"triangle": (3, -90), "inverted_triangle": (3, 90), "square": (4, 45),
                    "diamond": (4, 0), "octagon": (8, 22.5)}[shape]
    a = np.deg2rad(phase + angle + np.arange(sides) * 360.0 / sides)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1).round().astype(np.int32)  # (sides, 2)


def draw_sign(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One grayscale (size, size) uint8 image of class ``label``."""
    bg = rng.uniform(40, 200)
    img = (bg + rng.normal(0, 18, (size, size))).astype(np.float32)  # (H, W) textured background
    img = np.clip(cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 4.0)), 0, 255).astype(np.uint8)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    r = size * rng.uniform(0.28, 0.4)
    edge, fill = (255, 20) if bg < 120 else (10, 235)
    shape = SHAPES[label % len(SHAPES)]
    thick = max(2, int(r * 0.15))
    if shape == "circle":
        cv2.circle(img, (int(cx), int(cy)), int(r), fill, -1)
        cv2.circle(img, (int(cx), int(cy)), int(r), edge, thick)
    else:
        pts = _polygon(shape, cx, cy, r, rng.uniform(-8, 8))
        cv2.fillPoly(img, [pts], fill)
        cv2.polylines(img, [pts], True, edge, thick)
    scale = r / 40.0
    (tw, th), _ = cv2.getTextSize(str(label // len(SHAPES)), cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.putText(img, str(label // len(SHAPES)), (int(cx - tw / 2), int(cy + th / 2)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, edge, max(1, int(2 * scale)), cv2.LINE_AA)
    img = img.astype(np.float32) * rng.uniform(0.6, 1.2) + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_sign_dataset(n: int, num_classes: int = 43, size: int = 125, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, size, size) uint8 and their int64 labels in ``[0, num_classes)``."""
    if n < 2 or num_classes < 2:
        raise ValueError(f"need at least 2 images and 2 classes, got n={n}, num_classes={num_classes}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    frames = np.stack([draw_sign(int(k), size, rng) for k in labels])  # (n, size, size)
    return frames, labels
