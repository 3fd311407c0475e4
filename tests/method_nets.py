"""Tiny networks shared by the comparison-method and evaluation tests (not a test module)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

# Small kwargs so every registered method runs in milliseconds on the tiny nets below.
FAST_KWARGS = {"pda": {"window": 3, "patch": 5}, "pda_grad": {"window": 3, "patch": 5}}
IN_SHAPE = (1, 12, 16)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so folding matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def tiny_steering(inplace: bool = False, seed: int = 0, outputs: int = 1, dropout: bool = False) -> nn.Module:
    """BN -> conv -> ReLU twice (strides 1, 2, like the paper's nets), then an FC head; input 1x12x16."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [
        nn.BatchNorm2d(1), nn.Conv2d(1, 6, 3), nn.ReLU(inplace),
        nn.BatchNorm2d(6), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(inplace),
        nn.Flatten(), nn.Linear(8 * 4 * 6, 10), nn.ReLU(inplace),
    ]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(10, outputs))
    return randomize_bn(nn.Sequential(*layers), seed).eval()


def hooks_left(model: nn.Module) -> int:
    """Number of hooks of any kind still registered on the model's modules."""
    n = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            n += len(getattr(m, attr, {}) or {})
    return n


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of the state dict (weights and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """True if the model's weights and buffers equal ``saved`` exactly."""
    now = model.state_dict()
    return set(now) == set(saved) and all(torch.equal(now[k], saved[k]) for k in saved)


@contextlib.contextmanager
def eval_tiny_registered() -> Iterator[str]:
    """Register a tiny steering ConvNet for checkpoint round trips in CLI tests; yields its name.

    The registry is global, so the model is unregistered on exit: no test leaves it behind.
    """
    from vbp_live.models import ConvNet
    from vbp_live.models.registry import registered_models

    def eval_tiny_steer(height: int = 32, width: int = 48) -> ConvNet:
        return ConvNet((1, height, width), (4, 8, 8), (16, 1))

    with registered_models(eval_tiny_steer) as (name,):
        yield name


def tiny_checkpoint(path, seed: int = 0):
    """A checkpoint of the tiny net with a crop taking the lower half of any frame -> 32x48.

    Call it inside ``with eval_tiny_registered():`` (the CLI loads the model by name).
    """
    from vbp_live.core.preprocess import CropSpec
    from vbp_live.io.checkpoint import save_checkpoint
    from vbp_live.models import create_model

    torch.manual_seed(seed)
    model = create_model("eval_tiny_steer")
    crop = CropSpec(top=0.5, bottom=1.0, out_height=32, out_width=48)
    return save_checkpoint(path, model, crop)
