"""The one place that turns a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device."""

from __future__ import annotations

import re

import torch

from vbp_live.core.errors import DeviceError, UsageError

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")  # the device names vbp-live takes


def pick_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """Resolve a device name, checking that this machine has it.

    Args:
        name: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: the GPU that ``auto`` and a bare ``cuda`` mean in a multi-process run.

    Raises:
        UsageError: not a device name vbp_live runs on.
        DeviceError: a CUDA device this machine does not have.
    """
    text = str(name).strip()
    if not DEVICE_NAME.fullmatch(text):
        raise UsageError(f"device {text!r} is not a device name (auto, cpu, cuda or cuda:N)")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(text)
    if dev.type == "cpu":
        return dev
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise DeviceError(f"device {text!r}: torch sees no CUDA device here (use cpu or auto)")
    index = local_rank if dev.index is None else dev.index
    if index >= n:
        raise DeviceError(f"device {text!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    return torch.device("cuda", index)
