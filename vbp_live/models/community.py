"""Community steering networks a model card can name: NVIDIA PilotNet (2016) and donkeycar's KerasLinear.

Both are plain conv stacks (valid padding, an activation after every conv and every hidden dense
layer), so VisualBackProp follows them like the paper's nets. State-dict keys do not depend on the
activation or on dropout (dropout is one module between the conv stack and the head, or in the head
at fixed positions), so one set of weights loads into every variant.

* PilotNet (Bojarski et al. 2016, "End to End Learning for Self-Driving Cars"): 3×66×200 (YUV) ->
  conv 24, 36, 48 (5×5, stride 2), 64, 64 (3×3, stride 1) -> dense 100, 50, 10, 1.
* donkeycar KerasLinear (``donkeycar/parts/keras.py``: ``core_cnn_layers`` + ``default_n_linear``):
  3×120×160 (RGB) -> conv 24, 32, 64 (5×5, stride 2), 64 (3×3, stride ``l4_stride``), 64 (3×3, stride 1),
  each followed by ReLU and dropout -> dense 100, 50 (ReLU, dropout) -> ``num_outputs`` linear
  outputs (angle, throttle).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vbp_live.models.blocks import conv_block
from vbp_live.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}
PILOTNET_CONVS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))  # (channels, kernel, stride)
PILOTNET_FC = (100, 50, 10, 1)
DONKEY_FC = (100, 50)


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def _dropout(p: float) -> nn.Module:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


class PlainConvNet(nn.Module):
    """Valid convs, each followed by an activation (and dropout), then dense layers.

    Args:
        in_shape: (C, H, W) of the input.
        convs: (channels, kernel, stride) per conv.
        fc: sizes of the dense layers, the last being the output (no activation after it).
        activation: ``relu`` or ``elu``.
        conv_dropout: dropout after every conv (donkeycar) ...
        flat_dropout: ... or once after the conv stack (Udacity PilotNet variants).
        fc_dropout: dropout after every hidden dense layer.
    """

    def __init__(self, in_shape: Sequence[int], convs: Sequence[tuple[int, int, int]], fc: Sequence[int],
                 activation: str = "relu", conv_dropout: float = 0.0, flat_dropout: float = 0.0,
                 fc_dropout: float = 0.0):
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        if len(self.in_shape) != 3 or min(self.in_shape) < 1:
            raise ValueError(f"input shape must be positive (C, H, W), got {self.in_shape}")
        layers: list[nn.Module] = []
        c = self.in_shape[0]
        for c_out, k, s in convs:
            layers += conv_block(c, c_out, k, s, _activation(activation), dropout=_dropout(conv_dropout))
            c = c_out
        self.features = nn.Sequential(*layers)
        self.dropout = _dropout(flat_dropout)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).numel()
        head: list[nn.Module] = [nn.Flatten()]
        for i, n in enumerate(fc):
            head.append(nn.Linear(flat, n))
            flat = n
            if i < len(fc) - 1:
                head += [_activation(activation), _dropout(fc_dropout)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out)
        """Run the network."""
        return self.head(self.dropout(self.features(x)))


@register_model
def pilotnet(height: int = 66, width: int = 200, channels: int = 3, activation: str = "relu",
             dropout: float = 0.0) -> PlainConvNet:
    """NVIDIA PilotNet 2016: 3x66x200 (YUV in the paper) -> 1 steering value.

    ``activation``: ``relu`` (the paper) or ``elu`` (the Udacity behavioral-cloning variants);
    ``dropout``: once after the conv stack (0 = none).
    """
    return PlainConvNet((channels, height, width), PILOTNET_CONVS, PILOTNET_FC, activation, flat_dropout=dropout)


@register_model
def donkeycar_linear(height: int = 120, width: int = 160, channels: int = 3, num_outputs: int = 2,
                     dropout: float = 0.2, l4_stride: int = 1) -> PlainConvNet:
    """donkeycar's KerasLinear: 3x120x160 RGB -> ``num_outputs`` values (angle, throttle).

    As ``default_n_linear`` in donkeycar 4.x: dropout ``dropout`` after every conv and hidden dense
    layer; ``l4_stride`` is the fourth conv's stride (1 for KerasLinear, 2 in KerasCategorical).
    """
    convs = ((24, 5, 2), (32, 5, 2), (64, 5, 2), (64, 3, l4_stride), (64, 3, 1))
    return PlainConvNet((channels, height, width), convs, (*DONKEY_FC, num_outputs), "relu",
                        conv_dropout=dropout, fc_dropout=dropout)
