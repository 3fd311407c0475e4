"""Capture forward + VisualBackProp for one fixed input shape as a CUDA graph: one launch a frame.

At batch 1 a frame is a few dozen small kernels, so launch latency, not arithmetic, sets the
time. :class:`CudaGraphed` records any ``fn(x)`` once (after a warm-up on a side stream, which
also compiles the Triton kernels and traces the chain) and then replays it on a static input
buffer. The outputs are static buffers too: they are overwritten by the next call, so clone
what you keep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import nn

from vbp_live.attribution.base import AttributionResult
from vbp_live.attribution.vbp import VisualBackProp

T = TypeVar("T")


class CudaGraphed(Generic[T]):
    """``fn`` captured for inputs shaped like ``example`` (shape, dtype and CUDA device fixed).

    Args:
        fn: a function of one tensor; it must do only CUDA work (no host syncs, no CPU tensors).
        example: a CUDA tensor with the fixed shape; its values are copied in as the first input.
        warmup: eager calls on a side stream before capture.

    Raises:
        ValueError: ``example`` is not on a CUDA device.
    """

    def __init__(self, fn: Callable[[torch.Tensor], T], example: torch.Tensor, warmup: int = 3):
        if not example.is_cuda:
            raise ValueError(f"CUDA graphs need a CUDA tensor; the example input is on {example.device}")
        self.static_x = example.detach().clone()  # (B, C, H, W), fixed for the graph's life
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(self.static_x)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out: T = fn(self.static_x)

    def __call__(self, x: torch.Tensor) -> T:
        """Copy ``x`` into the static input, replay the graph, return the (static) outputs."""
        if x.shape != self.static_x.shape or x.dtype != self.static_x.dtype:
            raise ValueError(
                f"this graph was captured for {tuple(self.static_x.shape)} {self.static_x.dtype}, "
                f"got {tuple(x.shape)} {x.dtype}: capture a new one for that shape"
            )
        self.static_x.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.static_out


def _require_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError(
            "capture a CUDA graph in eval mode (model.eval()): a train-mode forward changes "
            "BatchNorm statistics and the RNG, which a replayed graph would not restore"
        )


def graph_forward(model: nn.Module, example: torch.Tensor) -> CudaGraphed[torch.Tensor]:
    """The model's forward pass alone, captured (the baseline for a graphed VBP)."""
    _require_eval(model)

    def fwd(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return CudaGraphed(fwd, example)


def graph_vbp(method: VisualBackProp, example: torch.Tensor, raw: bool = False) -> CudaGraphed[AttributionResult]:
    """Forward + VisualBackProp of ``method`` (``vbp`` or ``vbp_fused``) captured as one graph.

    Each call returns an :class:`AttributionResult` whose ``output`` and ``mask`` are the
    graph's static buffers.

    Example:
        >>> graphed = graph_vbp(FusedVisualBackProp(model.cuda().eval()), x0.cuda())
        >>> res = graphed(frame_batch)      # res.output (B, 1), res.mask (B, 1, H, W)
    """
    _require_eval(method.model)
    method.chain(example)  # trace outside the capture
    return CudaGraphed(lambda x: method.run(x, raw=raw), example)
