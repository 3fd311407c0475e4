"""The one preprocessing step shared by data preparation, training, streaming and imported models.

A :class:`CropSpec` says how a network sees a frame:

- the **crop box**, in *fractions* of the frame's height and width (so the same spec serves
  640×480 Udacity frames, 320×160 simulator frames and 960×540 dashcams) or in *pixels*
  (``frame[top:bottom, left:right]`` with Python's slice rules, for models trained on one camera);
- the **colour space** (``gray``, ``bgr``, ``rgb``, ``yuv``, ``hsv``) and **channel order**;
- the network's input **size** and the resize **interpolation**;
- the **scaling** of the uint8 pixels to the network's input values (``y = x * scale + offset``,
  per channel; :func:`affine_scaling` builds it from ``x/127.5-1`` or mean/std) and the tensor **layout**.

:func:`preprocess_frame` does the uint8 part (what prepared datasets store);
:func:`vbp_live.models.frames_to_input` applies the scaling and layout;
:func:`mask_to_frame` maps a mask computed on the network input back onto the full-resolution frame.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

INPUT_SCALE = 1.0 / 255.0  # default: uint8 pixel -> network input value

_INTERP = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
COLORS = ("gray", "bgr", "rgb", "yuv", "hsv")
_FROM_BGR = {"rgb": cv2.COLOR_BGR2RGB, "yuv": cv2.COLOR_BGR2YUV, "hsv": cv2.COLOR_BGR2HSV}
UNITS = ("fraction", "pixel")
LAYOUTS = ("nchw", "nhwc")


MAX_SIDE = 16_384  # pixels: the largest network input side (cv2.resize takes at most 2**31 - 1)


@dataclass(frozen=True)
class CropSpec:
    """How a network sees a frame: crop box, colour, size, scaling and layout.

    Attributes:
        top, bottom: band rows. ``units="fraction"``: fractions of the frame height (0 = top edge,
            1 = bottom edge). ``units="pixel"``: slice bounds ``frame[top:bottom]``; negative values count
            from the bottom edge and ``bottom=0`` means the edge itself (``60, -25`` = rows ``60:-25``).
        out_height, out_width: network input size in pixels.
        left, right: band columns, as ``top``/``bottom`` (default: the full width).
        color: colour space of the network input: ``gray`` (one channel, the paper's step iv),
            ``bgr`` (as OpenCV reads frames), ``rgb``, ``yuv`` or ``hsv`` (OpenCV's 8-bit YUV / HSV, H in 0..179).
        interpolation: ``area`` (default, best for downscaling), ``linear``, ``nearest``, ``cubic`` or ``lanczos``.
        units: ``fraction`` (default) or ``pixel``: how the crop box is given.
        channel_order: the colour's letters in the network's channel order, e.g. ``vuy`` for a ``yuv``
            net that takes V first; empty = the colour's own order.
        scale, offset: network input ``y = x * scale + offset`` for uint8 ``x``; one value for all channels
            or one per channel (default ``x / 255``).
        layout: ``nchw`` (default, PyTorch) or ``nhwc`` (channels last, for a model that takes that).
        horizon: the horizon row (fraction of the frame height) of the camera the band was chosen
            for, or None. With it the band can follow a camera whose horizon sits elsewhere
            (:meth:`at_horizon`, ``--horizon`` of ``vbp-live run`` and ``prep``).
    """

    top: float
    bottom: float
    out_height: int
    out_width: int
    left: float = 0.0
    right: float | None = None
    color: str = "gray"
    interpolation: str = "area"
    units: str = "fraction"
    channel_order: str = ""
    scale: tuple[float, ...] = (INPUT_SCALE,)
    offset: tuple[float, ...] = (0.0,)
    layout: str = "nchw"
    horizon: float | None = None

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {list(UNITS)}, got {self.units!r}")
        if self.right is None:
            object.__setattr__(self, "right", 1.0 if self.units == "fraction" else 0)
        if self.units == "fraction":
            self._check_fractions()
        else:
            self._check_pixels()
        if not (1 <= self.out_height <= MAX_SIDE and 1 <= self.out_width <= MAX_SIDE):
            raise ValueError(f"output size must be 1..{MAX_SIDE} pixels a side, got {self.out_height}x{self.out_width}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {self.interpolation!r}")
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {list(COLORS)}, got {self.color!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        self._check_channel_order()
        self._check_scaling()
        self._check_horizon()

    def _check_horizon(self) -> None:
        if self.horizon is None:
            return
        if self.units != "fraction":
            raise ValueError("a horizon needs a crop band in fractions (units: fraction)")
        if isinstance(self.horizon, bool) or not 0.0 < float(self.horizon) < 1.0:
            raise ValueError(f"horizon must be a fraction of the frame height in (0, 1), got {self.horizon!r}")
        object.__setattr__(self, "horizon", float(self.horizon))

    def _check_fractions(self) -> None:
        if not (0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(f"crop band needs 0 <= top < bottom <= 1, got top={self.top}, bottom={self.bottom}")
        if not (0.0 <= self.left < self.right <= 1.0):
            raise ValueError(f"crop band needs 0 <= left < right <= 1, got left={self.left}, right={self.right}")

    def _check_pixels(self) -> None:
        for name in ("top", "bottom", "left", "right"):
            v = getattr(self, name)
            if isinstance(v, bool) or not float(v).is_integer():
                raise ValueError(f"a pixel crop needs whole numbers, got {name}={v!r}")
            object.__setattr__(self, name, int(v))
        for a, b, what in ((self.top, self.bottom, "rows"), (self.left, self.right, "columns")):
            if a >= 0 and b > 0 and b <= a:
                raise ValueError(f"pixel crop {what} {a}:{b} are empty")

    def _check_channel_order(self) -> None:
        own = "" if self.color == "gray" else self.color
        if self.channel_order and sorted(self.channel_order) != sorted(own):
            raise ValueError(f"channel_order must be a reordering of {own!r} (color {self.color}), "
                             f"got {self.channel_order!r}")

    def _check_scaling(self) -> None:
        for name in ("scale", "offset"):
            v = getattr(self, name)
            vals = tuple(float(x) for x in (v if isinstance(v, Sequence) else (v,)))
            if len(vals) not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values (one per channel), got {len(vals)}")
            if not all(np.isfinite(vals)) or (name == "scale" and 0.0 in vals):
                raise ValueError(f"{name} must be finite{' and non-zero' if name == 'scale' else ''}, got {vals}")
            object.__setattr__(self, name, vals)

    @property
    def grayscale(self) -> bool:
        """Whether the network input is one gray channel."""
        return self.color == "gray"

    @property
    def channels(self) -> int:
        """Channels of the network input (1 for grayscale, else 3)."""
        return 1 if self.grayscale else 3

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixel box ``(y0, y1, x0, x1)`` of the band in a ``height``×``width`` frame."""
        if self.units == "pixel":
            y0, y1 = _pixel_span(int(self.top), int(self.bottom), height)
            x0, x1 = _pixel_span(int(self.left), int(self.right), width)
        else:
            y0, y1 = round(self.top * height), round(self.bottom * height)
            x0, x1 = round(self.left * width), round(self.right * width)
        if y1 <= y0 or x1 <= x0 or y0 < 0 or x0 < 0 or y1 > height or x1 > width:
            raise ValueError(f"crop band {y0}:{y1}, {x0}:{x1} is empty or outside a {width}x{height} frame")
        return y0, y1, x0, x1

    def same_band(self, other: CropSpec) -> bool:
        """Whether ``other`` cuts and scales frames exactly as this crop does (the reference
        :attr:`horizon` aside: it says which camera the band was chosen for, not what the network sees)."""
        return replace(self, horizon=None) == replace(other, horizon=None)

    def at_horizon(self, horizon: float) -> CropSpec:
        """The band moved with a camera whose horizon is at row ``horizon`` (fraction of the height).

        The rows keep their distance from the horizon, so the road fills the band as it did on the
        camera the band was chosen for. A band that would leave the frame stops at its edge (logged).
        Needs :attr:`horizon`, the horizon the band was chosen for.
        """
        if self.horizon is None:
            raise ValueError("the crop has no reference horizon (crop.horizon), so it cannot follow one")
        if not 0.0 < horizon < 1.0:
            raise ValueError(f"horizon must be a fraction of the frame height in (0, 1), got {horizon!r}")
        shift = min(max(horizon - self.horizon, -self.top), 1.0 - self.bottom)
        if abs(shift - (horizon - self.horizon)) > 1e-9:
            log.warning("the crop band moved to the horizon at %.3f H would leave the frame; it stops at "
                        "rows %.3f-%.3f", horizon, self.top + shift, self.bottom + shift)
        top, bottom = round(self.top + shift, 6), round(self.bottom + shift, 6)
        return replace(self, top=top, bottom=bottom, horizon=round(self.horizon + shift, 6))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML / checkpoint friendly: lists, numbers, strings)."""
        d = asdict(self)
        d["scale"], d["offset"] = list(self.scale), list(self.offset)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CropSpec:
        """Build from a dict, rejecting unknown keys with a clear message.

        Dicts written before colour spaces existed (``grayscale: true/false``) still load; a
        ``grayscale`` key next to ``color`` (a preset's dict with an old-style override) wins:
        true means ``gray``, false keeps a colour ``color`` or means ``bgr``.
        """
        d = dict(d)
        if "grayscale" in d:
            gray, color = d.pop("grayscale"), d.get("color", "gray")
            d["color"] = "gray" if gray else (color if color != "gray" else "bgr")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown crop keys {unknown}; known: {sorted(names)}")
        return cls(**d)

    def with_height(self, out_height: int) -> CropSpec:
        """Same field of view per output row, taller output (e.g. the paper's 135-row variant)."""
        if self.units != "fraction":
            raise ValueError("with_height needs a crop box in fractions")
        band = (self.bottom - self.top) * out_height / self.out_height
        return CropSpec(**{**self.to_dict(), "out_height": out_height, "bottom": min(1.0, self.top + band)})


def _pixel_span(a: int, b: int, n: int) -> tuple[int, int]:
    """Slice bounds ``a:b`` of a length-``n`` axis (negative = from the end, ``b == 0`` = the end)."""
    return (a + n if a < 0 else a), (b + n if b <= 0 else b)


# Defaults for 640x480 Udacity center-camera frames. NetSVF sees a 125-row band at full
# resolution; NetHVF sees about twice the vertical field of view, scaled down by that factor.
CROP_PRESETS: dict[str, CropSpec] = {
    "netsvf": CropSpec(top=0.55, bottom=0.55 + 125 / 480, out_height=125, out_width=640),
    "nethvf": CropSpec(top=0.40, bottom=0.40 + 228 / 480, out_height=125, out_width=351),
    "signnet": CropSpec(top=0.0, bottom=1.0, out_height=125, out_width=125),
}


def preprocess_frame(frame: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crop, convert and resize one frame for the network (the uint8 part of the preprocessing).

    Gray nets: crop, convert, resize (the conversion then touches fewer pixels). Colour nets: crop,
    resize (in BGR), convert to the colour space, reorder channels; resizing before the YUV/HSV
    conversion is what most Keras driving pipelines do and never interpolates hue.

    Args:
        frame: uint8 image, (H, W) gray or (H, W, 3) BGR as OpenCV reads it.
        spec: the crop box, colour space and output size.

    Returns:
        uint8 array (out_height, out_width) for ``color="gray"``, else (out_height, out_width, 3).
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H,W) or (H,W,3) frame, got {frame.dtype} {frame.shape}")
    y0, y1, x0, x1 = spec.box(frame.shape[0], frame.shape[1])
    band = frame[y0:y1, x0:x1]  # crop first: the colour conversion then touches fewer pixels
    if spec.grayscale and band.ndim == 3:
        band = cv2.cvtColor(band, cv2.COLOR_BGR2GRAY)
    elif not spec.grayscale and band.ndim == 2:
        band = cv2.cvtColor(band, cv2.COLOR_GRAY2BGR)
    if band.shape[:2] != (spec.out_height, spec.out_width):
        band = cv2.resize(band, (spec.out_width, spec.out_height), interpolation=_INTERP[spec.interpolation])
    if spec.color in _FROM_BGR:
        band = cv2.cvtColor(band, _FROM_BGR[spec.color])  # (h, w, 3) in the colour's own order
    if spec.channel_order:
        band = band[..., [spec.color.index(c) for c in spec.channel_order]]
    return np.ascontiguousarray(band)


def mask_to_frame(mask: np.ndarray, spec: CropSpec, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Map a network-input-sized mask back onto the full frame (zeros outside the band).

    Args:
        mask: float array (out_height, out_width).
        spec: the crop used to make the network input.
        frame_shape: shape of the original frame; only (H, W) are used.

    Returns:
        float32 array (H, W).
    """
    h, w = frame_shape[:2]
    y0, y1, x0, x1 = spec.box(h, w)
    full = np.zeros((h, w), np.float32)
    full[y0:y1, x0:x1] = cv2.resize(mask.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return full


def affine_scaling(
    expr: str = "x/255", mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scale, offset)`` for :class:`CropSpec` from an affine expression in ``x`` and an optional mean/std.

    The input is ``(expr(x) - mean) / std``, e.g. ``affine_scaling("x/127.5-1")`` or, torchvision style,
    ``affine_scaling("x/255", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])``.

    Args:
        expr: ``+ - * /``, numbers, parentheses and ``x`` (the uint8 pixel), affine in ``x``.
        mean, std: one value or one per channel, subtracted and divided after ``expr``.

    Raises:
        ValueError: the expression is not affine in ``x`` or uses anything else.
    """
    a, b = _affine(expr)
    means = _as_tuple(0.0 if mean is None else mean)
    stds = _as_tuple(1.0 if std is None else std)
    n = max(len(means), len(stds))
    if {len(means), len(stds)} - {1, n}:
        raise ValueError(f"mean and std need the same number of values, got {len(means)} and {len(stds)}")
    if 0.0 in stds:
        raise ValueError("std must be non-zero")
    means, stds = means * (n // len(means)), stds * (n // len(stds))
    scale = tuple(a / s for s in stds)
    offset = tuple((b - m) / s for m, s in zip(means, stds, strict=True))
    return scale, offset


def _as_tuple(v: Sequence[float] | float) -> tuple[float, ...]:
    return tuple(float(x) for x in v) if isinstance(v, Sequence) else (float(v),)


def _affine(expr: str) -> tuple[float, float]:
    """``(a, b)`` with ``expr == a*x + b``; parsed with :mod:`ast`, never evaluated as code."""
    try:
        tree = ast.parse(str(expr).strip(), mode="eval")
        a, b = _affine_node(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"scaling {expr!r} is not an affine expression in x ({e})") from None
    if a == 0.0:
        raise ValueError(f"scaling {expr!r} is not an affine expression in x (it does not depend on x)")
    return a, b


def _affine_node(node: ast.AST) -> tuple[float, float]:
    if isinstance(node, ast.Name) and node.id == "x":
        return 1.0, 0.0
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return 0.0, float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        a, b = _affine_node(node.operand)
        return (-a, -b) if isinstance(node.op, ast.USub) else (a, b)
    if isinstance(node, ast.BinOp):
        (a1, b1), (a2, b2) = _affine_node(node.left), _affine_node(node.right)
        if isinstance(node.op, ast.Add | ast.Sub):
            sign = 1.0 if isinstance(node.op, ast.Add) else -1.0
            return a1 + sign * a2, b1 + sign * b2
        if isinstance(node.op, ast.Mult) and (a1 == 0.0 or a2 == 0.0):
            return a1 * b2 + a2 * b1, b1 * b2
        if isinstance(node.op, ast.Div) and a2 == 0.0:
            return a1 / b2, b1 / b2
        raise ValueError("only products and quotients by numbers are affine")
    raise ValueError(f"unsupported element {ast.dump(node)[:40]}")
