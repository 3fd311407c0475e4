"""Shared fixtures: where ../shared lives, deterministic torch, GPU skip marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared beside the project root (override with VBP_SHARED_DIR)."""
    return Path(os.environ.get("VBP_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """The real third-party test files (../shared/data); skips with a reason if absent."""
    d = shared_dir() / "data"
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d} (set VBP_SHARED_DIR)")
    return d


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests on at most 2 threads (the CI machine has 2 cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` cleanly where no CUDA device exists."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
