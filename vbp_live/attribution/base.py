"""The contract every attribution method follows, its registry, and side-effect guards.

Every method is ``Method(model)`` with two calls:

* ``attribute(x, ...) -> (B, 1, H, W)`` tensor on ``x``'s device;
* ``run(x, ...) -> AttributionResult``: the model's output and that map for the same batch
  (what the streaming engine shows).

Both leave the model exactly as it was: same train/eval mode, weights, buffers, RNG state and
no hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_METHODS: dict[str, type[Attribution]] = {}


@dataclass
class AttributionResult:
    """The model's output and the attribution map for the same batch.

    Attributes:
        output: the model's output for the batch, as the model returns it (e.g. (B, 1)).
        mask: (B, 1, H, W) map on the input's device.
    """

    output: torch.Tensor
    mask: torch.Tensor


class Attribution:
    """Base class: holds the model; subclasses implement :meth:`attribute` (and may override :meth:`run`)."""

    name: str = ""

    def __init__(self, model: nn.Module):
        self.model = model

    def attribute(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Map shaped (B, 1, H, W) for input ``x`` shaped (B, C, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} must implement attribute()")

    def run(self, x: torch.Tensor, **kwargs: Any) -> AttributionResult:
        """The model's output and the map (``attribute(x, **kwargs)``) for the same batch.

        This default runs the model once without gradients and then :meth:`attribute`, which runs
        it again (a gradient method needs its own forward pass with gradients on). VisualBackProp
        and the fused VisualBackProp override it to take both from one forward pass.
        """
        check_input(x)
        with torch.no_grad(), preserved_state(self.model):
            out = self.model(x)
        return AttributionResult(out, self.attribute(x, **kwargs))


def register_method(name: str) -> Callable[[type[Attribution]], type[Attribution]]:
    """Class decorator: register an attribution method under ``name``."""

    def deco(cls: type[Attribution]) -> type[Attribution]:
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def list_methods() -> list[str]:
    """Names of the registered attribution methods, sorted."""
    return sorted(_METHODS)


def create_method(name: str, model: nn.Module, **kwargs: Any) -> Attribution:
    """Instantiate a registered method for ``model``."""
    if name not in _METHODS:
        raise KeyError(f"unknown attribution method {name!r}; registered: {', '.join(list_methods())}")
    return _METHODS[name](model, **kwargs)


def check_input(x: torch.Tensor) -> None:
    """Raise a clear error unless ``x`` is a (B, C, H, W) tensor with B >= 1."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected an input tensor shaped (B, C, H, W) with B >= 1, got {shape}")


def output_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of a map for input ``x``: x's floating dtype, else float32."""
    return x.dtype if x.is_floating_point() else torch.float32


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore RNG state and buffers (BatchNorm statistics) after a forward in train mode.

    In eval mode a forward changes neither, so nothing is copied and this costs nothing.
    """
    if not model.training:
        yield
        return
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
