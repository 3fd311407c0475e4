"""Compiled CPU kernel for VisualBackProp's deep-to-shallow pass, with a pure-torch fallback.

At batch 1 the pass is some 60 tiny torch ops (each paying dispatch and allocation), which cost
more than the arithmetic. ``vbp_cpu.c`` does the whole pass (scale up, multiply, min-max) in one
call per batch. It is plain C99 without Python or torch headers, compiled on first use with the
system C compiler (``$CC``, default ``cc``; well under a second) into a cache folder and loaded
with :mod:`ctypes`, which releases the GIL during the call.

No compiler, a failed build or ``VBP_LIVE_NATIVE=0`` simply means the torch path is used (one
warning in the log says why). The cache folder is ``$VBP_LIVE_CACHE_DIR``, else
``$XDG_CACHE_HOME/vbp_live``, else ``~/.cache/vbp_live``; the library's name carries a hash of
the source, compiler and flags, and it is written atomically, so concurrent first uses are safe.
If that folder cannot be used, a private folder in the temp directory is. A folder or library
that another user could have written (foreign owner, or writable by others) is refused: code
is loaded from it.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from vbp_live.attribution.capture import ConvChain

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("vbp_cpu.c")
FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared")
ENV_SWITCH = "VBP_LIVE_NATIVE"  # "0" turns the compiled path off
STEP_INTS = 13

OPENMP_FLAGS = ("-fopenmp",)
# Below this many elements a map's ReLU + channel sum runs on one thread: waking torch's other
# OpenMP threads costs some 20 us right after a conv, more than a 1 MB pass saves (measured on
# NetHVF's maps: 143 K elements 44 us on one thread vs 69 us on two; 487 K: 109 vs 90 us).
PARALLEL_MIN_ELEMENTS = 1 << 18

_lock = threading.Lock()
_state: dict[str, object] = {"lib": None, "tried": False, "error": "", "parallel": False}


def cache_dir() -> Path:
    """Where compiled libraries are kept (see the module docstring)."""
    if os.environ.get("VBP_LIVE_CACHE_DIR"):
        return Path(os.environ["VBP_LIVE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vbp_live"


def enabled() -> bool:
    """False when ``VBP_LIVE_NATIVE=0`` (or ``false``/``off``)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def _library_name(cc: str, flags: Sequence[str]) -> str:
    key = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), cc.encode(), " ".join(flags).encode(), platform.machine().encode(),
                    sys.platform.encode()])
    ).hexdigest()[:16]
    suffix = ".dylib" if sys.platform == "darwin" else ".dll" if os.name == "nt" else ".so"
    return f"vbp_cpu-{key}{suffix}"


def _check_private(path: Path) -> None:
    """Refuse a folder or library that another user could have written (code is loaded from it)."""
    st = path.stat()
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o002):
        raise OSError(f"refusing {path}: not owned by this user or writable by others "
                      f"(owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)})")


def _compile(folder: Path, cc: str, flags: Sequence[str] = FLAGS) -> Path:
    """Build the library into ``folder`` unless it is there already; returns its path."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_private(folder)
    target = folder / _library_name(cc, flags)
    if target.exists():
        _check_private(target)
        return target
    tmp = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        proc = subprocess.run([cc, *flags, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise OSError(f"{cc} failed on {SOURCE.name}: {proc.stderr.strip()[:500]}")
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    fn = lib.vbp_backprop_f32
    i64p, f32p = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_float)
    fn.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p), i64p, i64p, f32p, i64p,
                   ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                   ctypes.c_int64]
    fn.restype = ctypes.c_int
    lib.vbp_workspace_floats.argtypes = [ctypes.c_int64, i64p, i64p, i64p, ctypes.c_int64]
    lib.vbp_workspace_floats.restype = ctypes.c_int64
    lib.vbp_relu_chansum_f32.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.vbp_relu_chansum_f32.restype = None
    lib.vbp_openmp.restype = ctypes.c_int
    return lib


def _openmp_runtimes() -> set[str]:
    """Paths of the GNU OpenMP runtimes mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            return {line.split()[-1] for line in f if line.rstrip().endswith("libgomp.so.1")}
    except OSError:
        return set()


def _variants() -> list[tuple[str, ...]]:
    """Build flags to try, best first: with OpenMP only where torch already runs libgomp.

    The library's ``libgomp.so.1`` then resolves to torch's copy (same soname), so both share
    one thread pool; a second OpenMP runtime would fight torch's threads for the cores.
    """
    backend = torch.__config__.parallel_info()
    if sys.platform.startswith("linux") and "parallel backend: OpenMP" in backend and _openmp_runtimes():
        return [FLAGS + OPENMP_FLAGS, FLAGS]
    return [FLAGS]


def library() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first use; None if disabled or it cannot be built.

    ``VBP_LIVE_NATIVE`` and ``CC`` are read once, at that first use.
    """
    if _state["tried"]:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if not _state["tried"]:
            _state["lib"] = _load() if enabled() else None
            _state["tried"] = True
        return _state["lib"]  # type: ignore[return-value]


def _load() -> ctypes.CDLL | None:
    cc = os.environ.get("CC", "cc")
    folders = [cache_dir(), Path(tempfile.gettempdir()) / f"vbp_live-{os.getuid() if hasattr(os, 'getuid') else 0}"]
    errors = []
    for folder in folders:
        for flags in _variants():
            before = _openmp_runtimes()
            try:
                lib = _bind(_compile(folder, cc, flags))
            except (OSError, subprocess.SubprocessError, AttributeError) as e:
                errors.append(f"{folder} ({' '.join(flags[len(FLAGS):]) or 'serial'}): {e}")
                continue
            # threads only if the library shares the runtime that was already there (torch's)
            _state["parallel"] = bool(lib.vbp_openmp()) and before != set() and _openmp_runtimes() == before
            if errors:
                log.debug("compiled VisualBackProp kernel: earlier attempts failed: %s", "; ".join(errors))
            return lib
    _state["error"] = "; ".join(errors)
    log.warning("compiled VisualBackProp CPU kernel unavailable, using the torch path (slower at small batches): %s",
                _state["error"])
    return None


def relu_threads(numel: int) -> int:
    """Threads :func:`relu_channel_sum` would use now on a map of ``numel`` elements (0: it declines).

    Maps under :data:`PARALLEL_MIN_ELEMENTS` run on one thread. Larger ones use torch's thread
    count where the library shares torch's OpenMP runtime; without that, one thread of ours is
    slower there than torch's threaded ReLU plus sum, so it declines unless torch runs one thread.
    """
    n = torch.get_num_threads()
    if numel < PARALLEL_MIN_ELEMENTS or n == 1:
        return 1
    return n if _state["parallel"] else 0


def relu_channel_sum(x: torch.Tensor, inplace: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``relu(x)`` and its channel sum in one pass over memory, or None where it does not apply.

    It runs once per ReLU stage inside the forward pass, so its checks are kept to a few
    attribute reads (every microsecond here is paid ten times a frame).

    Args:
        x: (B, C, h, w) contiguous float32 CPU tensor, with gradients off (no autograd graph is
            recorded: it stands in for a ReLU only inside a capture without gradients).
        inplace: write the ReLU into ``x`` (as ``nn.ReLU(inplace=True)`` does) and return it.

    Returns:
        ``(out (B, C, h, w), channel sum (B, 1, h, w))``; ``out`` equals ``torch.relu(x)`` bit for
        bit (NaN and -0.0 included).
    """
    lib = library()
    if lib is None or not _readable(x) or x.dim() != 4 or torch.is_grad_enabled():
        return None
    numel = x.numel()
    threads = relu_threads(numel) if numel else 0
    if threads == 0:
        return None
    b, c, h, w = x.shape
    out = x if inplace else torch.empty_like(x)  # (B, C, h, w), contiguous as x is
    sums = torch.empty(b, 1, h, w, dtype=torch.float32)  # (B, 1, h, w)
    lib.vbp_relu_chansum_f32(x.data_ptr(), out.data_ptr(), sums.data_ptr(), b, c, h * w, threads)  # type: ignore[union-attr]
    return out, sums


def unavailable_reason() -> str:
    """Why :func:`library` returned None ('' if it did not, or was not asked yet)."""
    if _state["tried"] and _state["lib"] is None and not _state["error"]:
        return f"disabled by {ENV_SWITCH}={os.environ.get(ENV_SWITCH, '')}"
    return str(_state["error"])


@dataclass(frozen=True)
class NativePlan:
    """The steps of one input geometry, flattened for the C kernel (built once, reused per call).

    Each thread keeps its own workspace (a few hundred KB, allocated once): allocating it per
    call would cost page faults on every frame.
    """

    steps: ctypes.Array
    n_steps: int
    map_h: ctypes.Array
    map_w: ctypes.Array
    out_hw: tuple[int, int]
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    def buffers(self, lib: ctypes.CDLL) -> "_Buffers":
        """This thread's workspace and argument arrays (allocated on its first call)."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            n = lib.vbp_workspace_floats(len(self.map_h), self.map_h, self.map_w, self.steps, self.n_steps)
            k = len(self.map_h)
            buf = self._local.buf = _Buffers(torch.empty(int(n), dtype=torch.float32), (ctypes.c_void_p * k)(),
                                             (ctypes.c_float * k)(), [])
        return buf


@dataclass
class _Buffers:
    workspace: torch.Tensor  # (n,) float32
    ptrs: ctypes.Array
    scales: ctypes.Array
    scales_set: list[float]


def build_plan(chain: ConvChain, in_hw: tuple[int, int], map_hws: Sequence[tuple[int, int]]) -> NativePlan:
    """Flatten ``chain.walk_back`` (the walk every fast path takes) into the kernel's steps."""
    flat: list[int] = []
    for k, op, size_in, target, last in chain.walk_back(in_hw, map_hws):
        g = op.geometry
        mul = k - 1 if (last and k > 0) else -1  # multiply by the next shallower map after the stage's last op
        flat += [mul, *size_in, *target, *g.kernel, *g.stride, *g.padding, *g.dilation]
    return NativePlan(
        (ctypes.c_int64 * max(len(flat), 1))(*flat), len(flat) // STEP_INTS,
        (ctypes.c_int64 * len(map_hws))(*[h for h, _ in map_hws]),
        (ctypes.c_int64 * len(map_hws))(*[w for _, w in map_hws]),
        (int(in_hw[0]), int(in_hw[1])),
    )


def _readable(m: torch.Tensor) -> bool:
    """The memory layout the kernel reads: a contiguous float32 CPU tensor."""
    return m.dtype is torch.float32 and m.is_cpu and m.is_contiguous()


def readable_all(maps: Sequence[torch.Tensor]) -> bool:
    """True if every map has the layout the kernel reads (:func:`_readable`)."""
    for m in maps:
        if not _readable(m):
            return False
    return True


def backprop(plan: NativePlan, maps: Sequence[torch.Tensor], scales: Sequence[float], normalize: bool,
             checked: bool = False) -> torch.Tensor:
    """Input-sized mask (B, 1, H, W) float32 from the averaged maps (each (B, 1, h_k, w_k)).

    ``scales[k]`` multiplies map k as it is used (1.0 for channel means). ``normalize`` applies
    the per-image min-max. ``checked=True`` skips :func:`check_maps`: only for a caller that
    already checked maps of exactly these shapes against this plan and their layout on this call.
    """
    lib = library()
    if lib is None:
        raise RuntimeError(f"the compiled VisualBackProp kernel is unavailable: {unavailable_reason()}")
    if not checked:
        check_maps(plan, maps)
    b = maps[0].shape[0]
    out = torch.empty(b, 1, *plan.out_hw, dtype=torch.float32)  # (B, 1, H, W)
    buf = plan.buffers(lib)
    for i, m in enumerate(maps):
        buf.ptrs[i] = m.data_ptr()
    if buf.scales_set != list(scales):
        buf.scales[:] = buf.scales_set = list(scales)
    ws = buf.workspace
    rc = lib.vbp_backprop_f32(b, len(maps), buf.ptrs, plan.map_h, plan.map_w, buf.scales, plan.steps, plan.n_steps,
                              out.data_ptr(), plan.out_hw[0], plan.out_hw[1], int(normalize), ws.data_ptr(), ws.numel())
    if rc != 0:
        raise RuntimeError(f"the compiled VisualBackProp kernel refused its input (code {rc}): "
                           + _ERRORS.get(rc, "unknown error"))
    return out


def check_maps(plan: NativePlan, maps: Sequence[torch.Tensor]) -> None:
    """The kernel trusts the plan's sizes: refuse maps it does not describe (an out-of-bounds read)."""
    if len(maps) != len(plan.map_h):
        raise ValueError(f"the plan describes {len(plan.map_h)} maps, got {len(maps)}")
    b = maps[0].shape[0]
    for k, m in enumerate(maps):
        if m.shape != (b, 1, plan.map_h[k], plan.map_w[k]) or not _readable(m):
            raise ValueError(
                f"map {k} is {tuple(m.shape)} {m.dtype} on {m.device} (contiguous: {m.is_contiguous()}); the plan "
                f"needs a contiguous float32 CPU tensor shaped ({b}, 1, {plan.map_h[k]}, {plan.map_w[k]})"
            )


_ERRORS = {
    1: "the steps do not chain: a map's size differs from the plan's (the plan is stale or wrong)",
    3: "the workspace is smaller than the steps need",
}
