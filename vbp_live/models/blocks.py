"""Building blocks of our networks and of converted ones (Keras ``.h5``, ONNX): pure torch.

:func:`conv_block` is the one place a hand-written net (:mod:`.pilotnet`, :mod:`.community`)
pairs a convolution with its activation. The rest builds converted networks from JSON-able specs.

Convolutions are real ``nn.Conv2d`` and activations real modules (``nn.ReLU``, ``nn.ELU``, ...), so
VisualBackProp's tracer finds the conv -> activation chain of a converted net as in our own nets.

Asymmetric padding (TensorFlow's ``same`` with a stride, ONNX ``pads`` that differ per side) pads
explicitly in ``forward``; the module's ``padding`` then holds the *leading* (top, left) padding and
``ceil_mode`` the rounding under which that padding gives the real output size (the converter picks
it from the input size, :func:`geometry_ceil`). That is the geometry VisualBackProp's ones-kernel
inverse needs: windows start at ``i*s - top``, and the tracer checks the sizes it computes against
the sizes seen, so a geometry it cannot express is refused, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vbp_live.core.errors import ModelError
from vbp_live.core.geometry import conv_out_size

Pads = tuple[int, int, int, int]  # (top, bottom, left, right)


def pads4(pad: Sequence[int] | None) -> Pads:
    """``[top, bottom, left, right]`` (or None: no padding) as a tuple of ints."""
    p = tuple(int(v) for v in (pad or (0, 0, 0, 0)))
    if len(p) != 4 or min(p) < 0:
        raise ModelError(f"padding must be [top, bottom, left, right] >= 0, got {pad!r}")
    return p  # type: ignore[return-value]


def lrtb(p: Pads) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) in ``F.pad``'s order for the last two axes: (left, right, top, bottom)."""
    return (p[2], p[3], p[0], p[1])


def symmetric(p: Pads) -> bool:
    """Whether top == bottom and left == right."""
    return p[0] == p[1] and p[2] == p[3]


def geometry_ceil(hw: Sequence[int], kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int],
                  dilation: Sequence[int] = (1, 1)) -> bool:
    """The ``ceil_mode`` under which the leading (top, left) padding alone gives the output size of an
    op padded (top, bottom, left, right) on an ``hw`` input (True when neither rounding does)."""
    p = pads4(pad)
    real = [(n + a + b - d * (k - 1) - 1) // s + 1
            for n, a, b, k, s, d in zip(hw, p[0::2], p[1::2], kernel, stride, dilation, strict=True)]
    for ceil in (False, True):
        try:
            if [conv_out_size(n, k, s, a, d, ceil) for n, a, k, s, d
                    in zip(hw, p[0::2], kernel, stride, dilation, strict=True)] == real:
                return ceil
        except ValueError:  # the leading padding alone leaves the kernel no room
            continue
    return True


class PaddedConv2d(nn.Conv2d):
    """A Conv2d with padding that differs per side, padded explicitly with zeros in ``forward``.

    ``padding`` and ``ceil_mode`` (read by the tracer) are its geometry (see the module docstring);
    the convolution itself runs unpadded on the padded input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int],
                 pad: Pads, dilation: Sequence[int] = (1, 1), groups: int = 1, bias: bool = True,
                 ceil_mode: bool = True):
        super().__init__(in_channels, out_channels, tuple(kernel), tuple(stride), 0, tuple(dilation), groups, bias)
        self.pad = tuple(pad)
        self.padding = (pad[0], pad[2])
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, O, h, w)
        """Pad (top, bottom, left, right) with zeros, then convolve without padding."""
        x = F.pad(x, lrtb(self.pad))  # (B, C, H + top + bottom, W + left + right)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        """Show the real per-side padding."""
        return super().extra_repr() + f", pad(t,b,l,r)={self.pad}"


class PaddedMaxPool2d(nn.MaxPool2d):
    """MaxPool2d with per-side padding (padded with -inf, as TensorFlow's ``same`` ignores pads).

    ``padding``/``ceil_mode`` hold the tracer's geometry, as for :class:`PaddedConv2d`.
    """

    def __init__(self, kernel: Sequence[int], stride: Sequence[int], pad: Pads, dilation: Sequence[int] = (1, 1),
                 ceil_mode: bool = True):
        super().__init__(tuple(kernel), tuple(stride), 0, tuple(dilation))
        self.pad = tuple(pad)
        self.padding = (pad[0], pad[2])
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, h, w)
        """Pad with -inf, then pool without padding."""
        x = F.pad(x, lrtb(self.pad), value=-math.inf)  # (B, C, H + top + bottom, W + left + right)
        return F.max_pool2d(x, self.kernel_size, self.stride, 0, self.dilation)

    def extra_repr(self) -> str:
        """Show the real per-side padding."""
        return super().extra_repr() + f", pad(t,b,l,r)={self.pad}"


class Affine(nn.Module):
    """``y = x * scale + offset`` (a Keras ``Lambda`` whose arithmetic the model card states)."""

    def __init__(self, scale: float, offset: float):
        super().__init__()
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift every element."""
        return x * self.scale + self.offset

    def extra_repr(self) -> str:
        """Show the arithmetic."""
        return f"scale={self.scale}, offset={self.offset}"


class Crop2d(nn.Module):
    """Drop (top, bottom, left, right) rows/columns (Keras ``Cropping2D``).

    ``crop_tblr`` states the crop for the VisualBackProp tracer (``attribution.capture.crop_of``):
    a crop of the input is followed, and its mask is zero on the rows and columns dropped.
    """

    def __init__(self, crop: Pads):
        super().__init__()
        self.crop = tuple(crop)

    @property
    def crop_tblr(self) -> tuple[int, ...]:
        """(top, bottom, left, right)."""
        return self.crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H - t - b, W - l - r)
        """Slice the spatial axes."""
        top, bottom, left, right = self.crop
        return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]

    def extra_repr(self) -> str:
        """Show the crop."""
        return f"crop(t,b,l,r)={self.crop}"


def conv_block(c_in: int, c_out: int, kernel: int, stride: int, act: nn.Module, *, batchnorm: bool = False,
               dropout: nn.Module | None = None) -> list[nn.Module]:
    """``[BatchNorm ->]`` valid ``kernel`` x ``kernel`` conv ``-> act [-> dropout]``, as a list of layers.

    Wrap the list in ``nn.Sequential`` (one submodule per block) or splice it into a flat one; the
    positions of the layers (so the state-dict keys) depend only on ``batchnorm`` and whether
    ``dropout`` is given, never on which activation or dropout module it is.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel: square kernel size (no padding).
        stride: the conv's stride.
        act: the activation module after the conv.
        batchnorm: put a ``BatchNorm2d`` over the input first.
        dropout: a module after the activation (``nn.Dropout`` or ``nn.Identity``); None: no slot.
    """
    layers: list[nn.Module] = [nn.BatchNorm2d(c_in)] if batchnorm else []
    layers += [nn.Conv2d(c_in, c_out, kernel, stride=stride), act]
    return layers if dropout is None else [*layers, dropout]


def conv2d(in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1),
           pad: Sequence[int] | None = None, dilation: Sequence[int] = (1, 1), groups: int = 1,
           bias: bool = True, geometry_ceil: bool = True) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` for symmetric padding, else a :class:`PaddedConv2d` (``ceil_mode=geometry_ceil``)."""
    p = pads4(pad)
    if symmetric(p):
        return nn.Conv2d(in_channels, out_channels, tuple(kernel), tuple(stride), (p[0], p[2]), tuple(dilation),
                         groups, bias)
    return PaddedConv2d(in_channels, out_channels, kernel, stride, p, dilation, groups, bias, geometry_ceil)


def max_pool2d(kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int] | None = None,
               dilation: Sequence[int] = (1, 1), ceil_mode: bool = False, geometry_ceil: bool = True) -> nn.MaxPool2d:
    """A plain ``nn.MaxPool2d`` for symmetric padding of at most half the kernel, else :class:`PaddedMaxPool2d`
    (whose ``ceil_mode`` is ``geometry_ceil``)."""
    p = pads4(pad)
    if symmetric(p) and 2 * p[0] <= kernel[0] and 2 * p[2] <= kernel[1]:
        return nn.MaxPool2d(tuple(kernel), tuple(stride), (p[0], p[2]), tuple(dilation), ceil_mode=ceil_mode)
    if ceil_mode:
        raise ModelError(f"max pooling with ceil_mode and per-side padding {p} is not supported")
    return PaddedMaxPool2d(kernel, stride, p, dilation, geometry_ceil)


def avg_pool2d(kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int] | None = None,
               count_include_pad: bool = False, ceil_mode: bool = False) -> nn.AvgPool2d:
    """``nn.AvgPool2d``; only symmetric padding of at most half the kernel (as PyTorch allows)."""
    p = pads4(pad)
    if not (symmetric(p) and 2 * p[0] <= kernel[0] and 2 * p[2] <= kernel[1]):
        raise ModelError(f"average pooling with per-side padding {p} (kernel {tuple(kernel)}) is not supported")
    return nn.AvgPool2d(tuple(kernel), tuple(stride), (p[0], p[2]), ceil_mode, count_include_pad)


def activation(kind: str, alpha: float | None = None) -> nn.Module:
    """An activation module by name: relu, relu6, elu, selu, leaky_relu, tanh, sigmoid, softplus, softsign,
    softmax / log_softmax (over dim 1).

    Raises:
        ModelError: an unknown name.
    """
    makers = {
        "relu": nn.ReLU, "relu6": nn.ReLU6, "selu": nn.SELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus, "softsign": nn.Softsign,
        "elu": lambda: nn.ELU(1.0 if alpha is None else alpha),
        "leaky_relu": lambda: nn.LeakyReLU(0.01 if alpha is None else alpha),
        "softmax": lambda: nn.Softmax(dim=1), "log_softmax": lambda: nn.LogSoftmax(dim=1),
    }
    if kind not in makers:
        raise ModelError(f"unknown activation {kind!r}; known: {', '.join(sorted(makers))}")
    return makers[kind]()


ACTIVATION_KINDS = ("relu", "relu6", "elu", "selu", "leaky_relu", "tanh", "sigmoid", "softplus", "softsign",
                    "softmax", "log_softmax")
