"""Layer 2: the paper's networks behind a registry."""

from __future__ import annotations

import numpy as np
import torch

from vbp_live.core.preprocess import INPUT_SCALE, CropSpec
from vbp_live.models import community as _community  # noqa: F401  (registers the models)
from vbp_live.models import layer_stack as _layer_stack  # noqa: F401  (generic: converted Keras nets)
from vbp_live.models import op_graph as _op_graph  # noqa: F401  (generic: converted ONNX nets)
from vbp_live.models import pilotnet as _pilotnet  # noqa: F401  (registers the models)
from vbp_live.models.pilotnet import ConvNet
from vbp_live.models.registry import (
    args_problem,
    create_model,
    list_models,
    model_arg_types,
    register_model,
    resolved_args,
)

__all__ = ["ConvNet", "args_problem", "create_model", "list_models", "model_arg_types", "register_model",
           "resolved_args", "frames_to_input"]


def frames_to_input(
    frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", spec: CropSpec | None = None
) -> torch.Tensor:
    """uint8 preprocessed frames -> float network input (the scaling and layout of the preprocessing).

    Args:
        frames: (B, H, W) gray or (B, H, W, C) uint8, numpy or torch, as
            :func:`~vbp_live.core.preprocess.preprocess_frame` makes them.
        device: where the result lives.
        spec: the preprocessing (its ``scale``, ``offset`` and ``layout``); None: ``x / 255``, NCHW.

    Returns:
        float32 (B, C, H, W) (or (B, H, W, C) for ``layout="nhwc"``), ``x * scale + offset`` per channel.
    """
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # read-only memmap rows: torch would warn (it is only read here), copy the uint8 batch
    t = torch.as_tensor(frames).to(device, non_blocking=True)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)  # (B, C, H, W)
    if spec is None:
        return t.float().mul_(INPUT_SCALE)
    t = t.float()  # (B, C, H, W)
    t = t.mul_(_per_channel(spec.scale, t))
    if any(spec.offset):
        t = t.add_(_per_channel(spec.offset, t))
    return t.permute(0, 2, 3, 1) if spec.layout == "nhwc" else t  # (B, H, W, C) or (B, C, H, W)


def _per_channel(values: tuple[float, ...], t: torch.Tensor) -> float | torch.Tensor:
    """One number, or a (1, C, 1, 1) tensor that broadcasts over a (B, C, H, W) batch."""
    if len(values) == 1:
        return values[0]
    return torch.tensor(values, dtype=t.dtype, device=t.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
