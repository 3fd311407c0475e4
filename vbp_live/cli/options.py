"""What several commands share: the help layout, ``--device`` and ``--checkpoint`` with their defaults.

Kept light (no torch at import) so ``vbp-live --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

DEVICE_HELP = "auto (CUDA if available, else the CPU), cpu, cuda or cuda:N (default: %(default)s)"
CHECKPOINT_HELP = "vbp_live checkpoint (.pt): the model and its crop (default: the shipped model)"

_COLUMN = re.compile(r"^(\s+\S+(?:\s\S+)*\s{2,})")  # an indented table row: its first column and the gap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions and epilogs to the terminal width, keeping the author's layout.

    Paragraphs (runs of unindented lines) are re-filled to the width; indented lines (tables,
    examples) keep their line breaks and are only wrapped when too long, continuing under
    their second column.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        para: list[str] = []
        for line in text.splitlines():
            if line.strip() and not line[0].isspace():
                para.append(line.strip())
                continue
            out += _fill(" ".join(para), width, indent, indent)
            para = []
            out += _wrap_indented(line, width, indent) if line.strip() else [""]
        out += _fill(" ".join(para), width, indent, indent)
        return "\n".join(out)


def _fill(text: str, width: int, first: str, rest: str) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(text, max(width, 20), initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


def _wrap_indented(line: str, width: int, indent: str) -> list[str]:
    """An indented line as it is, or wrapped under its second column (or its own indent)."""
    line = indent + line.rstrip()
    if len(line) <= width:
        return [line]
    m = _COLUMN.match(line)
    hang = " " * (len(m.group(1)) if m else len(line) - len(line.lstrip()))
    return _fill(line.strip(), width, line[:len(line) - len(line.lstrip())], hang)


def add_device_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """``--device`` (``auto`` = CUDA when available, else the CPU)."""
    p.add_argument("--device", default=default, help=DEVICE_HELP)


def add_checkpoint_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, *flags: str) -> None:
    """``--checkpoint`` (optional: the shipped model is the default)."""
    p.add_argument("--checkpoint", *flags, default=None, help=CHECKPOINT_HELP)


def resolve_device(text: str) -> str:
    """The device ``--device`` names, checked here: ``auto`` becomes ``cuda`` or ``cpu``.

    Raises:
        UsageError: not a device name torch knows.
        DeviceError: a CUDA device that this machine does not have.
    """
    import torch

    from vbp_live.core.errors import DeviceError, UsageError
    from vbp_live.stream.engine import pick_device

    try:
        dev = pick_device(text.strip())
    except RuntimeError as e:
        raise UsageError(f"--device {text!r} is not a device (auto, cpu, cuda or cuda:N)") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"--device {text}: torch sees no CUDA device here (use --device cpu or auto)")
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"--device {text}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif dev.type != "cpu":
        raise UsageError(f"--device {text!r}: vbp-live runs on auto, cpu, cuda or cuda:N")
    return str(dev)


def checkpoint_or_shipped(path: str | None) -> Path:
    """``--checkpoint`` as given, else the shipped model.

    Raises:
        CheckpointError: no checkpoint given and the shipped model is not installed.
    """
    if path:
        return Path(path)
    from vbp_live.core.errors import CheckpointError
    from vbp_live.stream.session import SHIPPED, shipped_checkpoint

    shipped = shipped_checkpoint()
    if shipped is None:
        raise CheckpointError(f"no --checkpoint given and the shipped model ({SHIPPED}) is not installed")
    return shipped
