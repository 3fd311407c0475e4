"""The one place that pairs convolutions with their activations and owns the forward hooks and taps.

:func:`trace_conv_chain` runs one forward pass with hooks on every leaf module and follows the
*tensors* (not the module order) from the input through convs, pooling and shape-preserving
layers. It returns a :class:`ConvChain`: the post-activation maps VisualBackProp multiplies
(stages) and, between consecutive stages, the exact spatial ops (conv / pooling geometry).

Anything the tracer cannot follow (a residual ``+``, a concatenation, an upsample, a functional
op between two convs) cuts the trace; a conv fed by a cut tensor, or a stage that does not
consume the previous stage, is refused with :class:`UnsupportedModelError`, never guessed.

:class:`StageCapture` is used on every call: it taps only the stage modules (a stand-in
``forward``, cheaper per frame than hooks), hands each stage output to a reducer as it is
produced and restores the modules in ``finally``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from vbp_live.core.geometry import Geometry2d, pair
from vbp_live.core.errors import ModelError

UnsupportedModelError = ModelError  # the name the attribution API exports

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
)
# Layers that keep every pixel where it is (the map stays aligned with its input).
PASSTHROUGH: tuple[type[nn.Module], ...] = (
    nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LocalResponseNorm,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
) + ACTIVATIONS
POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class SpatialOp:
    """A conv or pooling between two maps, with the geometry of its ones-kernel inverse."""

    name: str
    kind: str  # "conv" or "pool"
    geometry: Geometry2d


@dataclass(frozen=True)
class Stage:
    """One averaged map of the chain.

    Attributes:
        name: qualified name of the module whose output is the map.
        call: which call of that module in one forward (activations may be reused).
        ops: spatial ops from the previous stage's map (or the input) to this map, in forward order.
        relu: apply ReLU before averaging (a Conv2d chosen explicitly, for nets using ``F.relu``).
    """

    name: str
    call: int
    ops: tuple[SpatialOp, ...]
    relu: bool = False


@dataclass
class ConvChain:
    """The traced plan: stages from shallow to deep and the modules that produce them."""

    stages: list[Stage]
    modules: dict[str, nn.Module] = field(repr=False)

    def op_inputs(self, k: int, base_hw: tuple[int, int], map_hw: tuple[int, int]) -> list[tuple[int, int]]:
        """Input size of each spatial op of stage ``k`` when the previous map is ``base_hw``.

        Checks that the ops lead exactly to ``map_hw`` (the size actually seen), so the inverse
        geometry is computed from real shapes, never guessed.
        """
        sizes = [tuple(base_hw)]
        for op in self.stages[k].ops:
            sizes.append(op.geometry.out_size(*sizes[-1]))
        if sizes[-1] != tuple(map_hw):
            raise UnsupportedModelError(
                f"stage {self.stages[k].name}: its ops map {tuple(base_hw)} to {sizes[-1]}, "
                f"but the map seen is {tuple(map_hw)}"
            )
        return sizes[:-1]

    def walk_back(
        self, in_hw: tuple[int, int], map_hws: Sequence[tuple[int, int]]
    ) -> Iterator[tuple[int, SpatialOp, tuple[int, int], tuple[int, int], bool]]:
        """VisualBackProp's deep-to-shallow walk, one ones-kernel step at a time.

        Yields ``(k, op, size_in, size_out, last)`` for every spatial op of stage ``k``, from the
        deepest stage to the input and within a stage from its last op to its first; ``last`` marks
        the stage's final step, after which the mask is multiplied by map ``k - 1`` (when k > 0).
        ``map_hws`` are the sizes of the maps seen; every stage has at least one op (a conv).
        """
        cur = tuple(map_hws[-1])
        for k in range(len(map_hws) - 1, -1, -1):
            base = tuple(in_hw) if k == 0 else tuple(map_hws[k - 1])
            steps = list(zip(reversed(self.stages[k].ops), reversed(self.op_inputs(k, base, cur))))
            for n, (op, target) in enumerate(steps):
                yield k, op, cur, tuple(target), n == len(steps) - 1
                cur = tuple(target)

    @functools.cached_property
    def call_orders(self) -> tuple[tuple[nn.Module, tuple[int | None, ...]], ...]:
        """Per stage module: the stage index of each of its calls in one forward (None: not a stage)."""
        orders: dict[int, tuple[nn.Module, dict[int, int]]] = {}
        for i, st in enumerate(self.stages):
            module = self.modules[st.name]
            orders.setdefault(id(module), (module, {}))[1][st.call] = i
        return tuple(
            (module, tuple(calls.get(c) for c in range(max(calls) + 1))) for module, calls in orders.values()
        )

    @functools.cached_property
    def relu_flags(self) -> tuple[bool, ...]:
        """Per stage: apply ReLU before reducing (see :class:`Stage`)."""
        return tuple(st.relu for st in self.stages)

    def describe(self) -> str:
        """Human-readable summary (one line per stage)."""
        lines = []
        for i, st in enumerate(self.stages):
            ops = ", ".join(f"{o.kind} {o.name} k{o.geometry.kernel} s{o.geometry.stride}" for o in st.ops)
            lines.append(f"stage {i}: {st.name}[{st.call}] <- {ops}")
        return "\n".join(lines)


def conv_geometry(m: nn.Conv2d) -> Geometry2d:
    """Geometry of a Conv2d (string paddings resolved; asymmetric 'same' refused)."""
    k, d = pair(m.kernel_size), pair(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            p = (0, 0)
        else:  # 'same'
            tot = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
            if tot[0] % 2 or tot[1] % 2:
                raise UnsupportedModelError(f"conv with padding='same' and an even kernel pads asymmetrically: {m}")
            p = (tot[0] // 2, tot[1] // 2)
    else:
        p = pair(m.padding)
    return Geometry2d(k, pair(m.stride), p, d)


def pool_geometry(m: nn.Module) -> Geometry2d:
    """Geometry of MaxPool2d / AvgPool2d (stride defaults to the kernel)."""
    k = pair(m.kernel_size)
    s = pair(m.stride) if m.stride is not None else k
    d = pair(getattr(m, "dilation", 1))
    return Geometry2d(k, s, pair(m.padding), d, bool(m.ceil_mode))


@dataclass
class _Origin:
    """Where a traced tensor comes from: stage ``base`` (-1 = input) and the ops applied since."""

    base: int
    ops: tuple[SpatialOp, ...]

    @property
    def has_conv(self) -> bool:
        return any(o.kind == "conv" for o in self.ops)


def _leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if not any(True for _ in m.children()):
            yield name, m


def _resolve_layers(model: nn.Module, layers: Sequence[nn.Module | str]) -> set[int]:
    named = dict(model.named_modules())
    ids = set()
    for layer in layers:
        if isinstance(layer, str):
            if layer not in named:
                raise UnsupportedModelError(f"no module named {layer!r} in the model")
            layer = named[layer]
        if not any(layer is m for m in named.values()):
            raise UnsupportedModelError(f"layer {layer!r} is not a module of the model")
        ids.add(id(layer))
    return ids


class _Tracer:
    """Follows tensors through one forward pass (see module docstring)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, explicit: set[int] | None):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.explicit = explicit
        self.origin: dict[int, _Origin] = {id(x): _Origin(-1, ())}
        self.keep: list[torch.Tensor] = [x]  # keeps ids unique while tracing
        self.in_hw = tuple(x.shape[-2:])
        self.stages: list[Stage] = []
        self.modules: dict[str, nn.Module] = {}
        self.calls: dict[int, int] = {}
        self.errors: list[str] = []
        self.last: tuple[_Origin, tuple[int, ...]] | None = None  # newest traced tensor (explicit mode)

    def hook(self, m: nn.Module, inputs: tuple, out: object) -> None:
        call = self.calls.get(id(m), 0)
        self.calls[id(m)] = call + 1
        if not isinstance(out, torch.Tensor) or not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        self.keep.append(out)
        src = self.origin.get(id(inputs[0]))
        name = self.names[id(m)]
        if src is None and isinstance(m, nn.Conv2d) and not self.stages and tuple(inputs[0].shape[-2:]) == self.in_hw:
            src = _Origin(-1, ())  # functional preprocessing (e.g. x / 255) before the first conv
        if src is None and self.explicit is not None and self.last and self.last[1] == tuple(inputs[0].shape[-2:]):
            src = self.last[0]  # explicit layers: functional pixel-wise ops (F.relu, ...) in between
        if src is None:
            if isinstance(m, nn.Conv2d) or (self.explicit and id(m) in self.explicit):
                self.errors.append(
                    f"{name} ({type(m).__name__}) takes a tensor that cannot be traced back to the previous "
                    "activation through convs, pooling and pixel-wise layers (a residual add, concatenation, "
                    "upsampling or functional op in between)"
                )
            return
        new = self._advance(m, name, src)
        if new is not None:
            self.origin[id(out)] = new
            self.last = (new, tuple(out.shape[-2:]))

    def _advance(self, m: nn.Module, name: str, src: _Origin) -> _Origin | None:
        if isinstance(m, nn.Conv2d):
            ops = src.ops + (SpatialOp(name, "conv", conv_geometry(m)),)
        elif isinstance(m, POOLS):
            ops = src.ops + (SpatialOp(name, "pool", pool_geometry(m)),)
        elif isinstance(m, PASSTHROUGH):
            ops = src.ops
        elif self.explicit and id(m) in self.explicit:
            self.errors.append(f"{name}: cannot follow geometry through {type(m).__name__}")
            return None
        else:
            return None
        if self._is_stage(m, _Origin(src.base, ops)):
            return self._add_stage(m, name, src.base, ops)
        return _Origin(src.base, ops)

    def _is_stage(self, m: nn.Module, o: _Origin) -> bool:
        if self.explicit is not None:
            return id(m) in self.explicit
        return isinstance(m, ACTIVATIONS) and o.has_conv

    def _add_stage(self, m: nn.Module, name: str, base: int, ops: tuple[SpatialOp, ...]) -> _Origin:
        k = len(self.stages)
        if base != k - 1:
            what = "the input" if base < 0 else f"stage {base} ({self.stages[base].name})"
            self.errors.append(
                f"{name} continues from {what}, not from the previous stage "
                f"{self.stages[k - 1].name if k else '(input)'}: the network branches"
            )
        if not any(o.kind == "conv" for o in ops) and not isinstance(m, nn.Conv2d):
            self.errors.append(f"{name}: no convolution between it and the previous stage")
        self.stages.append(Stage(name, self.calls[id(m)] - 1, ops, relu=isinstance(m, nn.Conv2d)))
        self.modules[name] = m
        return _Origin(k, ())


def trace_conv_chain(
    model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module | str] | None = None
) -> ConvChain:
    """Trace the conv -> activation chain of ``model`` on input ``x`` (one forward, no grad).

    Args:
        model: any module; its train/eval mode is left as it is.
        x: a (B, C, H, W) input (a batch of 1 is enough).
        layers: explicit modules (or names) whose outputs are the maps, overriding the automatic
            search; a Conv2d here means "its output through ReLU" (for nets that call ``F.relu``).
            With explicit layers, a functional op between two traced modules that keeps the
            spatial size (``F.relu``, scaling) is assumed to keep pixels in place.

    Raises:
        UnsupportedModelError: no usable conv -> activation pair, or a chain that branches.
    """
    tracer = _Tracer(model, x, _resolve_layers(model, layers) if layers is not None else None)
    me = threading.get_ident()

    def hook(m: nn.Module, inputs: tuple, out: object) -> None:
        if threading.get_ident() == me:  # another thread running the same model is not traced
            tracer.hook(m, inputs, out)

    handles = [m.register_forward_hook(hook) for _, m in _leaf_modules(model)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if tracer.errors:
        raise UnsupportedModelError(
            "VisualBackProp cannot follow this network: " + "; ".join(dict.fromkeys(tracer.errors))
            + ". Pass layers=[...] with a plain chain of activations, or use a network without branches."
        )
    if not tracer.stages:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no usable conv -> activation pair (nn.Conv2d followed by a "
            "ReLU-family module); pass layers=[...] to name the maps explicitly"
        )
    return ConvChain(tracer.stages, tracer.modules)


class StageCapture:
    """Taps the stage modules of a :class:`ConvChain` for the duration of one forward pass.

    ``reduce(stage_index, tensor)`` is called with each stage's output as soon as it is produced
    (so in-place layers later in the network cannot corrupt it and nothing large is kept alive).
    Only the thread that entered :meth:`hooked` is captured, so several threads may attribute
    with the same model at once. ``seen`` counts the stage outputs captured.

    ``relu(k, x, inplace)``, if given, may take over a plain ``nn.ReLU`` stage: compute the ReLU
    and the reduction in one pass (see :meth:`_taps`); VisualBackProp's compiled CPU path uses it.

    The tap stands in for each stage module's ``forward`` (an instance attribute, see
    :func:`_tapped`) instead of registering forward hooks: a registered hook sends every call of
    that module through torch's slow hook path and registering and removing ten hooks per frame
    costs more again (measured on NetHVF at batch 1: +0.27 ms per frame with hooks, +0.03 ms with
    taps, on a forward of about 10 ms). The module's own hooks still run around the tap, and the
    map is the module's output as its ``forward`` returns it.
    """

    def __init__(
        self,
        chain: ConvChain,
        reduce: Callable[[int, torch.Tensor], None],
        relu: Callable[[int, torch.Tensor, bool], torch.Tensor | None] | None = None,
    ):
        self.chain = chain
        self.reduce = reduce
        self.relu = relu
        self._seen = [0]  # a cell the taps count into

    @property
    def seen(self) -> int:
        """Stage outputs captured by the last (or current) :meth:`hooked` forward."""
        return self._seen[0]

    def _taps(self) -> list[tuple[nn.Module, Callable]]:
        """One tap per stage module; ``order[c]`` is the stage of that module's call ``c`` (or None).

        A stage that is a plain ``nn.ReLU`` (its class's own forward, called with one tensor) is
        offered to ``relu(k, x, inplace)`` first, which may compute the ReLU itself and reduce it
        in the same pass (returning the ReLU's output) or decline with None.
        """
        self._seen = seen = [0]
        reduce, relu_flags, fused = self.reduce, self.chain.relu_flags, self.relu
        taps = []
        for module, order in self.chain.call_orders:
            calls = [0]

            def tap(inner: Callable, args: tuple, kwargs: dict, order=order, calls=calls) -> object:
                c = calls[0]
                calls[0] = c + 1
                k = order[c] if c < len(order) else None
                if k is None:
                    return inner(*args, **kwargs)
                seen[0] += 1
                if fused is not None and len(args) == 1 and not kwargs and getattr(inner, "__func__", None) is _RELU_FORWARD:
                    out = fused(k, args[0], inner.__self__.inplace)
                    if out is not None:
                        return out
                out = inner(*args, **kwargs)
                reduce(k, out.clamp(min=0) if relu_flags[k] else out)
                return out

            taps.append((module, tap))
        return taps

    @contextlib.contextmanager
    def hooked(self) -> Iterator["StageCapture"]:
        """Context in which the stage taps are active for this thread; always removed on exit."""
        if os.environ.get("VBP_AB_HOOKS") == "1":  # A/B measurement: plain forward hooks
            with self._hooks():
                yield self
            return
        with _tapped(self._taps()):
            yield self

    @contextlib.contextmanager
    def _hooks(self) -> Iterator[None]:
        self._seen = seen = [0]
        reduce, relu_flags = self.reduce, self.chain.relu_flags
        me = threading.get_ident()
        handles = []
        for module, order in self.chain.call_orders:
            calls = [0]

            def hook(m, inputs, out, order=order, calls=calls):
                if threading.get_ident() != me:
                    return
                c = calls[0]
                calls[0] = c + 1
                k = order[c] if c < len(order) else None
                if k is None:
                    return
                seen[0] += 1
                reduce(k, out.clamp(min=0) if relu_flags[k] else out)

            handles.append(module.register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


_MISSING = object()
_RELU_FORWARD = nn.ReLU.forward
_taps_lock = threading.Lock()
# id(module) -> (module, the forward it had in its __dict__ or _MISSING, our stand-in, thread id -> tap)
_installed: dict[int, tuple[nn.Module, object, Callable, dict[int, Callable]]] = {}


def _stand_in(inner: Callable, taps: dict[int, Callable]) -> Callable:
    """The ``forward`` put on a tapped module: the calling thread's tap if it has one, else ``inner``."""
    get_ident = threading.get_ident

    def forward(*args: object, **kwargs: object) -> object:
        tap = taps.get(get_ident())
        return inner(*args, **kwargs) if tap is None else tap(inner, args, kwargs)

    return forward


@contextlib.contextmanager
def _tapped(taps: Sequence[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Route this thread's calls of each module through its tap, then restore the module exactly.

    The first active capture of a module puts a stand-in ``forward`` into the module's instance
    dictionary (keeping any ``forward`` the user had put there); the last one to leave restores
    it. Other threads calling the module meanwhile go straight to the original ``forward``.
    """
    me = threading.get_ident()
    done: list[nn.Module] = []
    try:
        with _taps_lock:
            for module, tap in taps:
                _tap(module, me, tap)
                done.append(module)
        yield
    finally:
        with _taps_lock:
            for module in done:
                _untap(module, me)


def _tap(module: nn.Module, me: int, tap: Callable) -> None:
    """Give thread ``me`` the tap ``tap`` on ``module``; the first one in installs the stand-in."""
    entry = _installed.get(id(module))
    if entry is None:
        saved = module.__dict__.get("forward", _MISSING)
        per_thread: dict[int, Callable] = {}
        entry = _installed[id(module)] = (module, saved, _stand_in(module.forward, per_thread), per_thread)
        module.__dict__["forward"] = entry[2]
    if me in entry[3]:
        raise RuntimeError(f"{type(module).__name__} is already captured by this thread: captures cannot nest")
    entry[3][me] = tap


def _untap(module: nn.Module, me: int) -> None:
    """Drop this thread's tap of ``module``; the last one out restores the module's ``forward``."""
    entry = _installed.get(id(module))
    if entry is None or entry[3].pop(me, None) is None or entry[3]:
        return  # not ours, or other threads still capture it
    del _installed[id(module)]
    _, saved, stand_in, _ = entry
    if module.__dict__.get("forward") is not stand_in:
        return  # someone replaced forward while we were tapping: keep theirs
    if saved is _MISSING:
        del module.__dict__["forward"]
    else:
        module.__dict__["forward"] = saved
