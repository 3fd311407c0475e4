"""``vbp-live``: entry point. Each subcommand lives in its own module ``vbp_live.cli.cmd_<name>``.

A command module defines ``register(subparsers) -> None``, which adds its parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Command modules keep
their heavy imports inside ``func`` so ``vbp-live --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order = order shown in --help. Add a command by adding its module here.
COMMANDS = ["demo", "run", "bench", "prep", "train", "synth", "explain", "evaluate"]


class CliError(Exception):
    """An error to show the user as one clear line (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="vbp-live",
        description=(
            "Real-time VisualBackProp overlays for end-to-end steering networks: see what the "
            "network looks at (red) and how wrong its steering is, frame by frame."
        ),
        epilog="Run 'vbp-live COMMAND --help' for the options of one command.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vbp_live.cli.cmd_{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen command, turn known errors into one-line messages."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, FileNotFoundError, ValueError, KeyError) as e:
        if args.verbose > 1:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"vbp-live {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
