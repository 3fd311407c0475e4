"""Layer 2: the paper's networks behind a registry."""

from __future__ import annotations

import numpy as np
import torch

from vbp_live.core.preprocess import INPUT_SCALE
from vbp_live.models import layer_stack as _layer_stack  # noqa: F401  (generic: converted Keras nets)
from vbp_live.models import op_graph as _op_graph  # noqa: F401  (generic: converted ONNX nets)
from vbp_live.models import pilotnet as _pilotnet  # noqa: F401  (registers the models)
from vbp_live.models.pilotnet import ConvNet
from vbp_live.models.registry import create_model, list_models, register_model, resolved_args

__all__ = ["ConvNet", "create_model", "list_models", "register_model", "resolved_args", "frames_to_input"]


def frames_to_input(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 preprocessed frames -> float network input.

    Args:
        frames: (B, H, W) gray or (B, H, W, 3) BGR uint8, numpy or torch.
        device: where the result lives.

    Returns:
        float32 (B, C, H, W) scaled by :data:`~vbp_live.core.preprocess.INPUT_SCALE`.
    """
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # read-only memmap rows: torch would warn (it is only read here), copy the uint8 batch
    t = torch.as_tensor(frames).to(device, non_blocking=True)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)  # (B, C, H, W)
    return t.float().mul_(INPUT_SCALE)
