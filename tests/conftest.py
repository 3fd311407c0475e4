"""Shared fixtures: where ../shared lives, deterministic torch, GPU skip marker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's ``shared`` folder: ``$VBP_SHARED_DIR``, else found from the repository.

    Looks for ``shared/data`` beside the checkout and beside each folder above it (a git
    worktree or a clone in a subfolder), then beside the repository this one was cloned from
    (``git clone /work/main /tmp/ci`` finds ``/work/shared``).
    """
    if os.environ.get("VBP_SHARED_DIR"):
        return Path(os.environ["VBP_SHARED_DIR"])
    for base in [*ROOT.parents, *_origin_parents()]:
        if (base / "shared" / "data").is_dir():
            return base / "shared"
    return ROOT.parent / "shared"


def _origin_parents() -> list[Path]:
    """The folders above the local repository this checkout was cloned from, if any."""
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    origin = Path(url.removeprefix("file://"))
    return list(origin.resolve().parents) if url and origin.is_dir() else []


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
