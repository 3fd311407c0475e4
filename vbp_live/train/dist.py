"""Device choice and DistributedDataParallel plumbing (torchrun: one command, any number of GPUs/nodes).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is initialised with
NCCL on CUDA and gloo on CPU. BatchNorm must see the *global* batch for a multi-process run to
match a single-process one: torch's ``SyncBatchNorm`` does that on CUDA only, so on CPU the
BatchNorm layers are swapped for :class:`GlobalBatchNorm2d` (same parameters and buffers, batch
statistics all-reduced with autograd).

Every collective goes through :func:`group_device`: NCCL only reduces CUDA tensors (on this
process's GPU), gloo only CPU ones, so a tensor is moved there for the collective and back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from vbp_live.models.device import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files (checkpoints, metrics, snapshots)."""
        return self.rank == 0


def backend_device(backend: str, local_rank: int = 0) -> torch.device:
    """Where a collective of ``backend`` wants its tensors: ``cuda:<local_rank>`` for NCCL, else the CPU."""
    return torch.device(f"cuda:{local_rank}") if str(backend).lower() == "nccl" else torch.device("cpu")


def group_device() -> torch.device:
    """The device of the joined process group's collectives (CPU when no group is joined)."""
    if not dist.is_initialized():
        return torch.device("cpu")
    return backend_device(dist.get_backend(), int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; returns this process's place."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d on %s (%s)", rank, world, device, backend)
    return DistInfo(rank, world, local_rank, device)


def wait_for_all() -> None:
    """Block until every rank gets here (no-op in one process): ranks leave a finished run together, so
    none tears its connections down while another still saves its checkpoint."""
    if _is_multi():
        dist.barrier()


def cleanup_distributed() -> None:
    """Leave the process group (if joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _is_multi() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def _reduce(t: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) a copy of ``t`` on the group's device; the result is on ``t``'s device."""
    on_group = t.to(group_device(), copy=True)
    dist.all_reduce(on_group, op=dist.ReduceOp.SUM)
    return on_group.to(t.device)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place, on any device; a no-op in a single process)."""
    if _is_multi():
        t.copy_(_reduce(t))
    return t


class _AllSum(torch.autograd.Function):
    """Sum over ranks; its gradient w.r.t. each rank's input is the sum of the upstream gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, t: torch.Tensor) -> torch.Tensor:
        return _reduce(t)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return _reduce(grad.contiguous())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks (works on gloo/CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        """Normalise with all-reduced batch statistics in training; plain BatchNorm otherwise."""
        if not (self.training and _is_multi()):
            return super().forward(x)
        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_tensor([x.numel() / c])])
        stats = _AllSum.apply(local)  # (2C + 1,), differentiable sum over ranks
        n = stats[-1]
        mean = stats[:c] / n  # (C,)
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)  # (C,) biased
        self._update_running(mean.detach(), var.detach(), n.item())
        scale = torch.rsqrt(var + self.eps) * self.weight  # (C,)
        return (x - mean[None, :, None, None]) * scale[None, :, None, None] + self.bias[None, :, None, None]

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        self.running_var.mul_(1 - m).add_(var * (n / max(n - 1.0, 1.0)), alpha=m)


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm2d use global-batch statistics (SyncBatchNorm on CUDA, else GlobalBatchNorm2d).

    Parameters and buffers keep their names, so ``state_dict`` and checkpoints are unchanged.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_batchnorm(child, device)
    return model
