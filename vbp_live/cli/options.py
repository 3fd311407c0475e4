"""What several commands share: the help layout, ``--device`` and ``--checkpoint`` with their defaults.

Kept light (no torch at import) so ``vbp-live --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from vbp_live.core.errors import VbpLiveError

DEVICE_HELP = "auto (CUDA if available, else the CPU), cpu, cuda or cuda:N (default: %(default)s)"
SHIPPED_NAMES = "netsvf, nethvf or netsvf-fixed"  # vbp_live.stream.session.SHIPPED_MODELS (kept light: no torch here)
DEFAULT_NAME = "nethvf"  # vbp_live.stream.session.DEFAULT_MODEL, for the help texts (no torch here either)
CHECKPOINT_HELP = ("vbp_live checkpoint (.pt), model card (.yaml, see docs/models.md) or the name of a shipped "
                   f"model ({SHIPPED_NAMES}): the model and its crop (default: the shipped {DEFAULT_NAME})")
TRUST_PICKLE_HELP = ("allow a model card's 'format: pickle' (a whole pickled model, torch.save(model)): loading it "
                     "runs code from the file, so only for files you trust")

_COLUMN = re.compile(r"^(\s+\S+(?:\s\S+)*\s{2,})")  # an indented table row: its first column and the gap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps descriptions and epilogs to the terminal width, keeping the author's layout.

    Paragraphs (runs of unindented lines) are re-filled to the width. Indented lines (tables,
    examples) keep their line breaks unless one is too long: then that entry (the line and the
    more-indented lines continuing it) is re-wrapped under its continuation indent, its second
    column, or four more spaces.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        para: list[str] = []
        entry: list[str] = []
        for line in [*text.splitlines(), ""]:
            if entry and line.strip() and _indent(line) > _indent(entry[0]):
                entry.append(line)  # continues the indented entry above
                continue
            out += _wrap_entry(entry, width, indent)
            entry = []
            if line.strip() and not line[0].isspace():
                para.append(line.strip())
                continue
            out += _fill(" ".join(para), width, indent, indent)
            para = []
            if line.strip():
                entry = [line.rstrip()]
            else:
                out.append("")
        return "\n".join(out).rstrip("\n")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fill(text: str, width: int, first: str, rest: str) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(text, max(width, 20), initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


def _wrap_entry(entry: list[str], width: int, indent: str) -> list[str]:
    """An indented entry as written if it fits, else re-wrapped with a hanging indent."""
    lines = [indent + line for line in entry]
    if all(len(line) <= width for line in lines):
        return lines
    lead = " " * _indent(lines[0])
    m = _COLUMN.match(lines[0])
    column = _indent(lines[1]) if len(lines) > 1 else len(m.group(1)) if m else 0
    hang = " " * column if 0 < column <= width // 2 else lead + "    "
    return _fill(" ".join(line.strip() for line in lines), width, lead, hang)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low`` (and <= ``high``); argparse reports others as usage errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def float_in(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    return parse


POSITIVE = int_in(1)
COUNT = int_in(0)


def add_device_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """``--device`` (``auto`` = CUDA when available, else the CPU)."""
    p.add_argument("--device", default=default, help=DEVICE_HELP)


def add_checkpoint_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, *flags: str) -> None:
    """``--checkpoint`` (optional: the shipped model is the default) and ``--trust-pickle``."""
    p.add_argument("--checkpoint", *flags, default=None, help=CHECKPOINT_HELP)
    add_trust_pickle_option(p)


def add_trust_pickle_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--trust-pickle``: load a whole pickled model named by a model card (it runs code from the file)."""
    p.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)


def resolve_device(text: str) -> str:
    """The device ``--device`` names, checked here: ``auto`` becomes ``cuda:0`` or ``cpu``.

    Raises:
        UsageError: not a device name vbp-live runs on.
        DeviceError: a CUDA device that this machine does not have.
    """
    from vbp_live.models.device import pick_device

    try:
        return str(pick_device(text))
    except VbpLiveError as e:
        raise type(e)(f"--{e}") from e


def checkpoint_or_shipped(path: str | None) -> Path:
    """``--checkpoint`` as given, a shipped model by name (``SHIPPED_MODELS``), else the default (nethvf).

    A file of that name in the working directory wins over the shipped model.

    Raises:
        CheckpointError: the shipped model asked for (or the default) is not installed.
    """
    from vbp_live.core.errors import CheckpointError
    from vbp_live.stream.session import DEFAULT_MODEL, SHIPPED_MODELS, shipped_checkpoint

    if path and (path not in SHIPPED_MODELS or Path(path).exists()):
        return Path(path)
    name = path or DEFAULT_MODEL
    shipped = shipped_checkpoint(name)
    if shipped is None:
        raise CheckpointError(f"the shipped model {name} ({SHIPPED_MODELS[name]}) is not installed")
    return shipped


RENDER_CHOICES = ("temporal", "frame", "paper")  # vbp_live.core.overlay.RENDER_MODES (kept light: no cv2 here)
COLOR_CHOICES = ("red", "cividis", "viridis", "magma", "inferno")  # vbp_live.core.colormaps.COLOR_NAMES


def add_look_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, timeline: float | None = None) -> None:
    """How the overlay looks: ``--render``, ``--color``, ``--timeline``, ``--min-height`` (``run``, ``demo``)."""
    p.add_argument("--render", choices=RENDER_CHOICES, default="temporal",
                   help="mask look: temporal (default: scaled to a percentile of the mask smoothed over ~1 s, "
                        "weak values still tinted), frame (the same scale per frame), paper (per-frame min-max, "
                        "as the paper's figures)")
    p.add_argument("--color", choices=COLOR_CHOICES, default="red",
                   help="mask colour: red (default), or a colour map that colour-blind viewers read "
                        "(cividis, viridis, magma, inferno)")
    p.add_argument("--timeline", type=float_in(0.0), nargs="?", const=10.0, default=timeline or 0.0,
                   metavar="SECONDS",
                   help="a strip along the bottom: predicted and actual steering over the last SECONDS "
                        f"(default: {'off' if timeline is None else f'{timeline:g}'}; the flag alone: 10; 0: off)")
    p.add_argument("--min-height", type=int_in(0), default=360, metavar="PX",
                   help="enlarge lower frames (whole factors) so the HUD stays legible; 0: never "
                        "(default: %(default)s)")


def look_options(args: argparse.Namespace) -> dict[str, object]:
    """The :func:`add_look_options` values as ``RunOptions`` fields."""
    return {"render": args.render, "color": args.color, "timeline_s": args.timeline or None,
            "min_height": args.min_height}


def overlay_line(o: dict) -> str:
    """One summary line about the mask as drawn: look, flicker and visibility."""
    return (f"overlay: --render {o['render']} --color {o['color']}: flicker {o['flicker']:.4f} (mean |change| of "
            f"the drawn tint per pixel and frame; {o['relative_flicker']:.3f} of the mean tint), "
            f"{100 * o['mass_visible']:.0f}% of the mask's mass visibly tinted, "
            f"{100 * o['band_tinted']:.0f}% of the crop band tinted")
