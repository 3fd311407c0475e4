"""In-process fuzz cases for the recording readers: mutants go through the real readers, not the CLI.

:func:`outcome` runs one case under a wall-clock alarm and names how it ended: ``read`` (every
frame decoded), ``read, images counted`` (some frames refused with a counted reason), ``clear
error`` (a one-line :class:`~vbp_live.core.errors.VbpLiveError`) or ``os error`` (an OSError
naming its file). Anything else propagates, so a test fails on it with its traceback.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.config import PrepConfig
from data_prep.plan import make_plan
from vbp_live.core.errors import VbpLiveError
from vbp_live.recordings.formats import open_recording
from vbp_live.recordings.images import ImageError, decode_payload


class CaseTimeout(Exception):
    """A case ran past its time limit (a hang)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (SIGALRM)."""

    def fire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_recording(path: Path) -> Counter[str]:
    """Scan, plan (sync, filters) and decode every kept frame; image refusals counted by reason."""
    rec = open_recording([path])
    scan = rec.scan()
    plan = make_plan(scan, PrepConfig())
    counts: Counter[str] = Counter()
    for _, payload in rec.payloads(plan.wanted()):
        try:
            decode_payload(payload, gray=True)
            counts["decoded"] += 1
        except ImageError as e:
            counts[e.reason] += 1
    return counts


def outcome(case: Callable[[], Counter[str] | object], timeout_s: float = 20.0) -> str:
    """Run one case; the name of how it ended (see the module docstring)."""
    try:
        with time_limit(timeout_s):
            res = case()
    except VbpLiveError as e:
        msg = str(e)
        if "\n" in msg.strip() or not msg.strip():
            raise AssertionError(f"error message is not one line: {msg!r}") from e
        return "clear error"
    except OSError as e:
        if not e.filename:
            raise
        return "os error"
    if isinstance(res, Counter) and any(k != "decoded" for k in res):
        return "read, images counted"
    return "read"
