"""Atomic file writes: write beside the target, fsync, then rename over it.

The temporary file is created with mode ``0o666`` and the process's umask applies at creation
(as for any file ``open()`` makes), so the finished file has the permissions the user expects:
``0644`` under umask 022, ``0600`` under umask 077. (``tempfile.mkstemp`` would make ``0600``.)
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def temp_beside(target: str | os.PathLike[str], tag: str = "tmp", suffix: str | None = None) -> Path:
    """Create a new empty hidden file ``.<stem>.<tag>-<pid>-<random><suffix>`` beside ``target``.

    The file is created exclusively (never an existing one) with the umask applied, in the
    target's folder (made if missing), so renaming it over ``target`` is atomic. Temporary files
    for the same target that a killed process left (see :func:`remove_stale_temps`) are removed first.

    Args:
        target: the file the temporary one will replace.
        tag: a word in the name saying what it is (``tmp``, ``partial``).
        suffix: the temporary name's suffix (default: the target's; some writers pick the format from it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    remove_stale_temps(target, tag, suffix)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = target.parent / f".{target.stem}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, flags, 0o666))  # the umask applies, as for open()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def remove_stale_temps(target: str | os.PathLike[str], tag: str, suffix: str) -> list[Path]:
    """Delete the temporary files of ``target`` whose creating process is gone (killed with SIGKILL).

    Only names this module makes (``.<stem>.<tag>-<pid>-<8 hex><suffix>``) whose process id no
    longer exists are removed; a running process's file is never touched. POSIX only (elsewhere
    nothing is removed). Returns what was removed.
    """
    target = Path(target)
    if os.name != "posix" or not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.stem}.{tag}-") + r"(\d+)-[0-9a-f]{8}" + re.escape(suffix) + "$")
    removed = []
    for p in target.parent.glob(f".{glob.escape(target.stem)}.{glob.escape(tag)}-*"):
        m = pattern.match(p.name)
        if m and not _process_exists(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning("removed %d temporary file(s) a killed run left beside %s", len(removed), target)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or an absurd number): leave its file alone
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` defaults to the target's suffix (some writers pick the format from it).
    """
    target = Path(path)
    tmp_path = temp_beside(target, "tmp", suffix)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
