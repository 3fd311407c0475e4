"""Run one fuzz case in a forked child with a memory cap and a timeout, and classify the outcome.

The parent process never runs torch or OpenCV work itself (forking after a thread pool has
started is unsafe); every case, and every kind's setup, runs in a fresh fork. A case is a
function returning a ``vbp-live`` argv; the child runs the real CLI entry point in-process
(no interpreter start-up per case) with stdout/stderr sent to a file, so the classification
sees exactly what a user would see.

Outcomes:
    success        exit 0
    clear error    exit 1 whose last line is the CLI's one-line ``vbp-live CMD: error: ...``
    traceback      the CLI's "internal error ... bug" line, or any other exit
    crash          killed by a signal (SIGSEGV, SIGABRT, ...)
    hang           still running after the timeout (the process group is killed)
    memory         peak RSS over the cap, or a MemoryError (the address space is capped too)
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = ("success", "clear error", "traceback", "crash", "hang", "memory")
BAD = ("traceback", "crash", "hang", "memory")
_CLEAR = re.compile(r"^vbp-live [\w-]+: error: \S")


@dataclass
class CaseResult:
    """What one case did."""

    kind: str
    seed: int
    outcome: str
    detail: str  # the last output line (the error message), or why it was classified so
    seconds: float
    peak_mb: float


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(fn: Callable[[], int], log: Path, mem_cap_mb: int) -> None:
    """In the forked child: cap memory, send output to ``log``, run ``fn``, exit with its code."""
    os.setpgid(0, 0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 3
    try:
        cap = _vm_size_bytes() + mem_cap_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        code = int(fn() or 0)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        code = 4
    except BaseException as e:  # noqa: BLE001 - report anything, never return into the parent's loop
        import traceback

        traceback.print_exception(e)
        print("internal error: escaped the CLI", file=sys.stderr)
        code = 5
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_forked(
    fn: Callable[[], int], log: Path, timeout_s: float, mem_cap_mb: int
) -> tuple[int | None, int, float, float]:
    """Fork, run ``fn`` in the child; returns (exit code or None, signal, seconds, peak RSS MB)."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(fn, log, mem_cap_mb)
    deadline = t0 + timeout_s
    while True:
        wpid, status, usage = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            wpid, status, usage = os.wait4(pid, 0)
            return None, signal.SIGKILL, time.monotonic() - t0, usage.ru_maxrss / 1024
        time.sleep(0.01)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    with contextlib.suppress(OSError):  # grandchildren (worker processes) left behind
        os.killpg(pid, signal.SIGKILL)
    return code, sig, time.monotonic() - t0, usage.ru_maxrss / 1024




def classify(code: int | None, sig: int, output: str, peak_mb: float, mem_cap_mb: int) -> tuple[str, str]:
    """The outcome name and a one-line detail from how a case ended."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if "MemoryError" in output or peak_mb > mem_cap_mb:
        return "memory", f"peak {peak_mb:.0f} MB; {last[:160]}"
    if code is None:
        if sig == signal.SIGKILL:
            return "hang", "timed out"
        return "crash", f"signal {signal.Signals(sig).name}"
    if "internal error" in output:
        return "traceback", last[:200]
    if code == 0:
        return "success", last[:160]
    if code == 1 and _CLEAR.match(last):
        return "clear error", last[:200]
    return "traceback", f"exit {code}: {last[:180]}"


def run_case(kind: str, seed: int, make_argv: Callable[[], list[str]], workdir: Path, timeout_s: float,
             mem_cap_mb: int) -> CaseResult:
    """Build the case's inputs and run ``vbp-live <argv>`` in a capped, timed fork."""
    log = workdir / f"{kind}-{seed}.log"

    def body() -> int:
        import torch

        torch.set_num_threads(1)
        argv = make_argv()
        from vbp_live.cli.main import main

        return main(argv)

    code, sig, seconds, peak = run_forked(body, log, timeout_s, mem_cap_mb)
    output = log.read_text(errors="replace") if log.exists() else ""
    outcome, detail = classify(code, sig, output, peak, mem_cap_mb)
    return CaseResult(kind, seed, outcome, detail, seconds, peak)


def run_setup(fn: Callable[[], None], log: Path, timeout_s: float = 600.0) -> None:
    """Run a kind's one-time setup (writing its seed inputs) in a fork; raise if it fails."""

    def body() -> int:
        fn()
        return 0

    code, sig, _, _ = run_forked(body, log, timeout_s, 8192)
    if code != 0:
        raise RuntimeError(f"fuzz setup failed (exit {code}, signal {sig}):\n{log.read_text(errors='replace')}")
