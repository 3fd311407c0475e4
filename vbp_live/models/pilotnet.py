"""The paper's networks (supplement, Tables 1 and 2): NetSVF, NetHVF and the traffic-sign net.

Every conv is preceded by BatchNorm and followed by ReLU; filters are 3x3 with no padding and
strides alternate 1, 2. Every fully connected layer but the last is followed by ReLU.
The ReLUs work in place (as torchvision's nets do): no extra buffer per layer, the same values
and gradients (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vbp_live.models.blocks import conv_block
from vbp_live.models.registry import register_model

STEERING_CHANNELS = (32, 32, 48, 48, 64, 64, 96, 96, 128, 128)
SIGN_CHANNELS = (16, 16, 24, 24, 32, 32, 48, 48)


def bn_conv_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """BatchNorm -> 3x3 valid conv -> ReLU (in place): one block of the paper's nets."""
    return nn.Sequential(*conv_block(c_in, c_out, 3, stride, nn.ReLU(inplace=True), batchnorm=True))


class ConvNet(nn.Module):
    """A stack of BN-conv-ReLU blocks (strides 1, 2, 1, 2, ...) followed by an FC head.

    Args:
        in_shape: (C, H, W) of the input.
        channels: output channels of each conv.
        fc: sizes of the fully connected layers, the last one being the output.
        log_softmax: end with LogSoftmax (classification nets).
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], fc: Sequence[int], log_softmax: bool = False):
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        c = self.in_shape[0]
        blocks = []
        for i, c_out in enumerate(channels):
            blocks.append(bn_conv_relu(c, c_out, stride=1 if i % 2 == 0 else 2))
            c = c_out
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).numel()
        head: list[nn.Module] = [nn.Flatten()]
        for i, n in enumerate(fc):
            head.append(nn.Linear(flat, n))
            flat = n
            if i < len(fc) - 1:
                head.append(nn.ReLU(inplace=True))
        if log_softmax:
            head.append(nn.LogSoftmax(dim=1))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out)
        """Run the network."""
        return self.head(self.features(x))


def _steering_net(height: int, width: int) -> ConvNet:
    if height < 1 or width < 1:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    return ConvNet((1, height, width), STEERING_CHANNELS, (1024, 512, 1))


@register_model
def netsvf(height: int = 125, width: int = 640) -> ConvNet:
    """NetSVF (standard vertical field of view): 1x125x640 grayscale -> steering wheel angle (rad)."""
    return _steering_net(height, width)


@register_model
def nethvf(height: int = 125, width: int = 351) -> ConvNet:
    """NetHVF (high vertical field of view): 1x125x351 grayscale -> steering wheel angle (rad)."""
    return _steering_net(height, width)


@register_model
def signnet(height: int = 125, width: int = 125, num_classes: int = 43, channels: int = 1) -> ConvNet:
    """Traffic-sign net (Table 2): 125x125 -> log-probabilities over ``num_classes``."""
    return ConvNet((channels, height, width), SIGN_CHANNELS, (64, num_classes), log_softmax=True)
