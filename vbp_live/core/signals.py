"""Ctrl-C (SIGINT) and SIGTERM as one request to stop: the handlers every long-running command uses.

Two ways to take the request, both treating SIGTERM (docker, systemd, ``kill``) exactly like Ctrl-C:

- :func:`stop_on_signals` only *sets an event* and records the signal. Nothing is raised, so no
  ``KeyboardInterrupt`` can land inside ``Thread.join`` or a C extension; the code that owns the
  event stops at its next safe point (the streaming pipeline, the training loop).
- :func:`raise_on_signals` raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the main
  thread, so code written for Ctrl-C (``except KeyboardInterrupt``, ``finally``) also runs on SIGTERM.

The exit code of an interrupted command is ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(sig: int | str | None) -> int:
    """The shell's exit code for a command ended by signal ``sig`` (number or name; 130 when unknown: Ctrl-C)."""
    return 128 + int(signal.Signals[sig] if isinstance(sig, str) else (sig or signal.SIGINT))


def signal_name(signum: int | None) -> str:
    """``SIGINT``, ``SIGTERM``, ... (``SIGINT`` when unknown)."""
    return signal.Signals(int(signum or signal.SIGINT)).name


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (raised by :func:`raise_on_signals`); ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return exit_code(self.signum)


@dataclass
class StopRequest:
    """What :func:`stop_on_signals` recorded: the event it sets and the first signal received.

    Attributes:
        event: set on the first signal.
        signum: that signal's number (None while none arrived).
        count: how many stop signals arrived.
    """

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None
    count: int = 0

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (meaningful once a signal arrived)."""
        return exit_code(self.signum)


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, object] | None:
    """Install ``handler`` for SIGINT and SIGTERM; returns the old handlers (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers; the caller's owner handles signals
    return {s: signal.signal(s, handler) for s in STOP_SIGNALS}


def _restore(old: dict[int, object] | None) -> None:
    for s, h in (old or {}).items():
        signal.signal(s, h)  # type: ignore[arg-type]


@contextlib.contextmanager
def stop_on_signals(
    event: threading.Event | None = None,
    what: str = "stopping",
    second: Callable[[StopRequest, int], None] | None = None,
) -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set ``event`` (nothing is raised); yields the :class:`StopRequest`.

    Off the main thread this installs nothing (the request still works through its event).

    Args:
        event: the event to set (default: a new one).
        what: said in the log line on the first signal ("SIGTERM received: <what>").
        second: called with the request and the signal number on every later signal (e.g. to abort
            harder); default: logged only.
    """
    req = StopRequest(event if event is not None else threading.Event())

    def handler(signum: int, frame: FrameType | None) -> None:
        req.count += 1
        if req.count == 1:
            req.signum = signum
            req.event.set()
            log.warning("%s received: %s", signal_name(signum), what)
        elif second is not None:
            second(req, signum)
        else:
            log.warning("%s received again: still %s", signal_name(signum), what)

    old = _install(handler)
    try:
        yield req
    finally:
        _restore(old)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    old = _install(handler)
    try:
        yield
    finally:
        _restore(old)
