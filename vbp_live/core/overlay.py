"""Rendering of attribution masks onto frames (numpy / OpenCV only)."""

from __future__ import annotations

import numpy as np

RED_BGR = (0, 0, 255)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Return a uint8 (H, W, 3) BGR view/copy of a gray or BGR frame."""
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected (H,W) or (H,W,3) frame, got {frame.shape}")


def overlay_mask(
    frame: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.7,
    color: tuple[int, int, int] = RED_BGR,
) -> np.ndarray:
    """Blend a [0, 1] mask onto a frame in one color (red by default), as in the paper's figures.

    Args:
        frame: uint8 (H, W) or (H, W, 3) BGR.
        mask: float (H, W) in [0, 1]; values outside are clipped.
        alpha: blend weight at mask value 1.
        color: BGR color of the overlay.

    Returns:
        a new uint8 (H, W, 3) BGR image.
    """
    base = to_bgr(frame).astype(np.float32)  # (H, W, 3)
    if mask.shape != base.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match frame {base.shape[:2]}")
    w = (np.clip(mask, 0.0, 1.0).astype(np.float32) * alpha)[:, :, None]  # (H, W, 1)
    out = base * (1.0 - w) + np.asarray(color, np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
