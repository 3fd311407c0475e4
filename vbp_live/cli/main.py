"""``vbp-live``: entry point. Each subcommand lives in its own module ``vbp_live.cli.cmd_<name>``.

A command module defines ``register(subparsers) -> None``, which adds its parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Command modules keep
their heavy imports inside ``func`` so ``vbp-live --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import traceback

from vbp_live import __version__
from vbp_live.cli.options import HelpFormatter
from vbp_live.core.errors import VbpLiveError
from vbp_live.core.signals import raise_on_signals, signal_name

# Order = order shown in --help. Add a command by adding its module here.
COMMANDS = ["demo", "run", "bench", "prep", "train", "synth", "explain", "evaluate", "import-model"]


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vbp_live.cli.cmd_{name.replace('-', '_')}").register(sub)
    for command in sub.choices.values():  # every --help fits the terminal; hand-made tables are kept
        command.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command.

    A :class:`~vbp_live.core.errors.VbpLiveError` (a mistake in what the user gave us) and an
    ``OSError`` naming a file (missing, unreadable, disk full) print one line and exit 1; any
    other exception is a bug in vbp_live: its traceback is printed, then one line saying so
    (exit 1). ``-vv`` shows the traceback of user errors too. Ctrl-C exits 130 and SIGTERM 143:
    both raise :class:`~vbp_live.core.signals.Interrupted` unless the command takes them itself
    (``run`` and ``train`` stop at a safe point and finalize their outputs).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        with raise_on_signals():
            code = int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        print(f"interrupted ({signal_name(getattr(e, 'signum', None))})", file=sys.stderr)
        code = getattr(e, "exit_code", 130)
    except (VbpLiveError, OSError) as e:
        if isinstance(e, OSError) and e.filename is None:
            return _bug(args.command, e)
        if args.verbose > 1:
            traceback.print_exception(e)
        print(f"vbp-live {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - anything else is a bug: show it, say so
        return _bug(args.command, e)
    _exit_past_stuck_threads(code)
    return code


def _exit_past_stuck_threads(code: int) -> None:
    """A pipeline thread still inside a blocking call (it ignored the stop): exit now, releasing nothing.

    Interpreter teardown would destroy the decoder under that thread (SIGABRT/SIGSEGV); the
    outputs were finalized by then, so leaving at once loses nothing.
    """
    stuck = [t.name for t in threading.enumerate() if t.name.startswith("vbp-") and t.is_alive()]
    if stuck:
        print(f"threads {stuck} did not stop; exiting without waiting for them", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


def _bug(command: str, e: BaseException) -> int:
    """Print the traceback of an unexpected exception and one line saying it is a bug; exit 1."""
    traceback.print_exception(e)
    print(
        f"vbp-live {command}: internal error ({type(e).__name__}): this is a bug in vbp_live, "
        "not in your input; please report it with the traceback above",
        file=sys.stderr,
    )
    return 1

if __name__ == "__main__":
    sys.exit(main())
