"""``layer_stack``: a generic sequential network described by a JSON-able list of layers.

It is the architecture a converted sequential Keras model is rebuilt as (:mod:`vbp_live.io.keras_h5`
writes the list), so a checkpoint stores it like any registered net: name, args, state dict.
The network takes NCHW input; every layer is one module (``layers.<i>`` in the state dict)::

    layer_stack(in_shape=[3, 66, 200], layers=[
        {"type": "affine", "scale": 0.00784, "offset": -1.0},
        {"type": "conv2d", "in_channels": 3, "out_channels": 24, "kernel": [5, 5], "stride": [2, 2]},
        {"type": "elu", "alpha": 1.0},
        {"type": "flatten"},
        {"type": "dense", "in_features": 1152, "out_features": 1}])

Layer types: ``affine`` (scale, offset), ``conv2d`` (in_channels, out_channels, kernel, stride,
dilation, pad = [top, bottom, left, right], bias), ``dense`` (in_features, out_features, bias),
``flatten``, ``dropout`` (p), ``identity``, ``crop`` / ``zero_pad`` ([top, bottom, left, right]),
``maxpool2d`` / ``avgpool2d`` (kernel, stride, pad, ceil_mode; maxpool also dilation, avgpool
count_include_pad), ``batchnorm`` (num_features, eps, dims = 1 or 2) and the activations of
:func:`~vbp_live.models.blocks.activation` (elu and leaky_relu take alpha). A conv2d or maxpool2d
that pads per side may state ``geometry_ceil``, the tracer's rounding
(:func:`~vbp_live.models.blocks.geometry_ceil`). The layers live in an ``nn.ModuleList``, not an
``nn.Sequential``, so inference copies never fold a BatchNorm into a conv that pads per side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import ModelError
from vbp_live.models import blocks
from vbp_live.models.registry import register_generic_model


def _batchnorm(spec: Mapping[str, Any]) -> nn.Module:
    cls = nn.BatchNorm1d if int(spec.get("dims", 2)) == 1 else nn.BatchNorm2d
    return cls(int(spec["num_features"]), eps=float(spec.get("eps", 1e-5)))


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "affine": lambda s: blocks.Affine(s["scale"], s["offset"]),
    "conv2d": lambda s: blocks.conv2d(
        s["in_channels"], s["out_channels"], s["kernel"], s.get("stride", (1, 1)), s.get("pad"),
        s.get("dilation", (1, 1)), s.get("groups", 1), s.get("bias", True), s.get("geometry_ceil", True)),
    "dense": lambda s: nn.Linear(s["in_features"], s["out_features"], bias=s.get("bias", True)),
    "flatten": lambda s: nn.Flatten(),
    "dropout": lambda s: nn.Dropout(float(s.get("p", 0.5))),
    "crop": lambda s: blocks.Crop2d(blocks.pads4(s["crop"])),
    "zero_pad": lambda s: nn.ZeroPad2d(blocks.lrtb(blocks.pads4(s["pad"]))),
    "maxpool2d": lambda s: blocks.max_pool2d(s["kernel"], s.get("stride", s["kernel"]), s.get("pad"),
                                             s.get("dilation", (1, 1)), bool(s.get("ceil_mode", False)),
                                             s.get("geometry_ceil", True)),
    "avgpool2d": lambda s: blocks.avg_pool2d(s["kernel"], s.get("stride", s["kernel"]), s.get("pad"),
                                             bool(s.get("count_include_pad", False)), bool(s.get("ceil_mode", False))),
    "batchnorm": _batchnorm,
    "identity": lambda s: nn.Identity(),
}


def build_layer(i: int, spec: Mapping[str, Any]) -> nn.Module:
    """The module of one layer spec (``i`` only names it in errors).

    Raises:
        ModelError: an unknown type or a spec missing a field.
    """
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    try:
        if kind in _BUILDERS:
            return _BUILDERS[kind](spec)
        if kind in blocks.ACTIVATION_KINDS:
            return blocks.activation(kind, spec.get("alpha"))
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a field missing or out of range
        raise ModelError(f"layer_stack layer {i} ({kind}): bad spec {dict(spec)}: {e!r}") from e
    known = sorted(_BUILDERS) + list(blocks.ACTIVATION_KINDS)
    raise ModelError(f"layer_stack layer {i}: unknown layer type {kind!r}; known: {', '.join(known)}")


class LayerStack(nn.Module):
    """Layers applied one after the other to an NCHW input.

    Args:
        in_shape: (C, H, W) of the input.
        layers: layer specs (see the module docstring).
    """

    def __init__(self, in_shape: Sequence[int], layers: Sequence[Mapping[str, Any]]):
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        if len(self.in_shape) != 3:
            raise ModelError(f"layer_stack in_shape must be (C, H, W), got {list(in_shape)}")
        self.layers = nn.ModuleList(build_layer(i, s) for i, s in enumerate(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out)
        """Run the layers in order."""
        for layer in self.layers:
            x = layer(x)
        return x


@register_generic_model
def layer_stack(in_shape: Sequence[int], layers: Sequence[Mapping[str, Any]]) -> LayerStack:
    """A sequential net from layer specs (converted Keras models); see :class:`LayerStack`."""
    return LayerStack(in_shape, layers)
