"""Colours for the attribution overlay: the paper's red, and colour maps that colour-blind viewers read.

A colour map here is a 256-entry BGR lookup table indexed by the displayed mask value (0 weak,
255 strong). ``red`` is one colour for every value (the paper's figures); the others come from
OpenCV's perceptually uniform maps: ``cividis`` (designed for red-green colour blindness),
``viridis``, ``magma`` and ``inferno`` (all readable with deuteranopia, protanopia and
tritanopia). Their darkest quarter is skipped, so weak values still tint instead of darkening
the frame.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

COLOR_NAMES = ("red", "cividis", "viridis", "magma", "inferno")
_CV2_MAPS = {
    "cividis": cv2.COLORMAP_CIVIDIS,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
}
RED_BGR = (0, 0, 255)
SKIP_DARK = 64  # lookup entries of the OpenCV map skipped at the dark end


@functools.cache
def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 BGR lookup table of colour map ``name`` (read-only).

    Raises:
        ValueError: for an unknown name (the CLI offers only :data:`COLOR_NAMES`).
    """
    if name == "red":
        lut = np.tile(np.asarray(RED_BGR, np.uint8), (256, 1))  # (256, 3)
    elif name in _CV2_MAPS:
        full = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], _CV2_MAPS[name])[:, 0]  # (256, 3)
        idx = np.round(np.linspace(SKIP_DARK, 255, 256)).astype(np.intp)  # (256,)
        lut = full[idx]
    else:
        raise ValueError(f"unknown colour map {name!r}; use one of {', '.join(COLOR_NAMES)}")
    lut.setflags(write=False)
    return lut


def is_single_color(name: str) -> bool:
    """Whether ``name`` paints every mask value in one colour (the paper's red)."""
    return name == "red"
