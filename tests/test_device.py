"""The one device resolver: names, auto, and clear errors for devices this machine lacks."""

from __future__ import annotations

import pytest
import torch

from vbp_live.core.errors import DeviceError, UsageError
from vbp_live.models.device import pick_device


def test_auto_and_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(" auto ").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["potato", "mps:0x", "meta"])
def test_not_a_device_is_a_usage_error(name):
    with pytest.raises(UsageError, match=name):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_device_error():
    with pytest.raises(DeviceError, match="no CUDA device"):
        pick_device("cuda:1")


@pytest.mark.gpu
def test_local_rank_picks_the_gpu():
    assert pick_device("auto", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="CUDA device"):
        pick_device(f"cuda:{torch.cuda.device_count()}")
