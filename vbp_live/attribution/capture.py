"""The one tracer and the one owner of every hook the attribution methods use.

* :func:`trace_leaf_calls` runs one forward pass with a hook on every leaf module and records
  each call (module, inputs, output) in order. LRP plans its rules from it; and
  :func:`trace_conv_chain` follows the *tensors* (not the module order) from the input through
  convs, pooling and shape-preserving layers and returns a :class:`ConvChain`: the
  post-activation maps VisualBackProp multiplies (stages) and, between consecutive stages, the
  exact spatial ops (conv / pooling geometry). Anything the tracer cannot follow (a residual
  ``+``, a concatenation, an upsample, a functional op between two convs) cuts the trace; a conv
  fed by a cut tensor, or a stage that does not consume the previous stage, is refused with
  :class:`UnsupportedModelError`, never guessed.
* :func:`module_hooks` registers forward hooks, forward pre-hooks and gradient hooks on module
  outputs for the duration of a ``with`` block (only the calling thread is affected; all are
  removed in ``finally``). Every method that needs hooks asks for them here.
* :class:`StageCapture` hands each stage output of a :class:`ConvChain` to a reducer as it is
  produced (forward hooks on the stage modules, through :func:`module_hooks`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from vbp_live.attribution.base import preserved_state
from vbp_live.core.errors import ModelError
from vbp_live.core.geometry import Geometry2d, pair

UnsupportedModelError = ModelError  # the name the attribution API exports
ForwardHook = Callable[[nn.Module, tuple, object], object]
PreHook = Callable[[nn.Module, tuple], object]
GradRule = Callable[[nn.Module, torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
)
# Layers that keep every pixel where it is (the map stays aligned with its input).
PASSTHROUGH: tuple[type[nn.Module], ...] = (
    nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LocalResponseNorm,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
) + ACTIVATIONS
POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d)
# Activations whose outputs go below zero: averaged as they are, their negative parts cancel the
# positive ones (an ELU net's maps are a nearly uniform band); ``positive=True`` averages max(a, 0).
SIGNED_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
)


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
        relu: apply ReLU before averaging: a Conv2d chosen explicitly (for nets using ``F.relu``), or a
            signed activation (ELU, LeakyReLU, ...) traced with ``positive=True`` (its positive part).
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
    input_crop: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) dropped before the first conv

    def first_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """The size the first stage's ops see for an ``in_hw`` input (the input less ``input_crop``)."""
        if self.input_crop is None:
            return tuple(in_hw)
        top, bottom, left, right = self.input_crop
        return (in_hw[0] - top - bottom, in_hw[1] - left - right)

    def uncrop(self, mask: torch.Tensor) -> torch.Tensor:
        """A mask of the first stage's input size (B, 1, h, w) back on the whole input (B, 1, H, W).

        The rows and columns the network crops away before its first conv get zero: it never sees them.
        """
        if self.input_crop is None:
            return mask
        top, bottom, left, right = self.input_crop
        return torch.nn.functional.pad(mask, (left, right, top, bottom))  # (B, 1, H, W)

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
        ``map_hws`` are the sizes of the maps seen; every stage has at least one op (a conv). With
        an ``input_crop`` the walk ends at the cropped size: :meth:`uncrop` puts it back on the input.
        """
        cur = tuple(map_hws[-1])
        for k in range(len(map_hws) - 1, -1, -1):
            base = self.first_hw(in_hw) if k == 0 else tuple(map_hws[k - 1])
            steps = list(zip(reversed(self.stages[k].ops), reversed(self.op_inputs(k, base, cur)), strict=True))
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


def conv_geometry(m: nn.Conv2d) -> Geometry2d:
    """Geometry of a Conv2d (string paddings resolved; asymmetric 'same' refused).

    A conv that pads per side itself (``models.blocks.PaddedConv2d``) states its leading padding and
    ``ceil_mode`` (one extra trailing row/column), as pooling layers do.
    """
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
    return Geometry2d(k, pair(m.stride), p, d, bool(getattr(m, "ceil_mode", False)))


def pool_geometry(m: nn.Module) -> Geometry2d:
    """Geometry of MaxPool2d / AvgPool2d (stride defaults to the kernel)."""
    k = pair(m.kernel_size)
    s = pair(m.stride) if m.stride is not None else k
    d = pair(getattr(m, "dilation", 1))
    return Geometry2d(k, s, pair(m.padding), d, bool(m.ceil_mode))


def crop_of(m: nn.Module) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a module that only drops border rows and columns, else None.

    Such a module states its crop as ``crop_tblr`` (``models.blocks.Crop2d``, Keras ``Cropping2D``).
    """
    crop = getattr(m, "crop_tblr", None)
    if crop is None:
        return None
    top, bottom, left, right = (int(v) for v in crop)
    return (top, bottom, left, right)


@dataclass
class _Origin:
    """Where a traced tensor comes from: stage ``base`` (-1 = input) and the ops applied since."""

    base: int
    ops: tuple[SpatialOp, ...]

    @property
    def has_conv(self) -> bool:
        return any(o.kind == "conv" for o in self.ops)


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

    def __init__(self, x: torch.Tensor, explicit: set[int] | None, positive: bool = False):
        self.explicit, self.positive = explicit, positive
        self.origin: dict[int, _Origin] = {id(x): _Origin(-1, ())}
        self.in_hw = tuple(x.shape[-2:])
        self.stages: list[Stage] = []
        self.modules: dict[str, nn.Module] = {}
        self.calls: dict[int, int] = {}
        self.errors: list[str] = []
        self.last: tuple[_Origin, tuple[int, ...]] | None = None  # newest traced tensor (explicit mode)
        self.input_crop: tuple[int, int, int, int] | None = None

    def visit(self, call: LeafCall) -> None:
        """Follow one leaf call (in forward order)."""
        m, inputs, out, name = call.module, call.inputs, call.output, call.name
        self.calls[id(m)] = self.calls.get(id(m), 0) + 1
        if not isinstance(out, torch.Tensor) or not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        src = self.origin.get(id(inputs[0]))
        on_input = not self.stages and tuple(inputs[0].shape[-2:]) == self.in_hw
        if src is None and on_input and (isinstance(m, nn.Conv2d) or crop_of(m) is not None):
            src = _Origin(-1, ())  # functional preprocessing (e.g. x / 255) before the first conv or crop
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
        crop = crop_of(m)
        if crop is not None:
            return self._crop(name, src, crop)
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

    def _crop(self, name: str, src: _Origin, crop: tuple[int, int, int, int]) -> _Origin | None:
        """A crop of the input before the first conv (Keras ``Cropping2D``); one anywhere else is refused."""
        if src.base == -1 and not src.ops and self.input_crop is None:
            self.input_crop = crop
            return _Origin(-1, ())
        self.errors.append(f"{name}: a crop after the first conv (only a crop of the input can be followed)")
        return None

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
        relu = isinstance(m, nn.Conv2d) or (self.positive and isinstance(m, SIGNED_ACTIVATIONS))
        self.stages.append(Stage(name, self.calls[id(m)] - 1, ops, relu=relu))
        self.modules[name] = m
        return _Origin(k, ())


def trace_conv_chain(
    model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module | str] | None = None, positive: bool = False
) -> ConvChain:
    """Trace the conv -> activation chain of ``model`` on input ``x`` (one forward, no grad).

    Args:
        model: any module; its train/eval mode is left as it is.
        x: a (B, C, H, W) input (a batch of 1 is enough).
        layers: explicit modules (or names) whose outputs are the maps, overriding the automatic
            search; a Conv2d here means "its output through ReLU" (for nets that call ``F.relu``).
            With explicit layers, a functional op between two traced modules that keeps the
            spatial size (``F.relu``, scaling) is assumed to keep pixels in place.
        positive: maps of signed activations (:data:`SIGNED_ACTIVATIONS`: ELU, LeakyReLU, ...) are
            taken through a ReLU (their positive part); ReLU-family maps are unchanged either way.

    Raises:
        UnsupportedModelError: no usable conv -> activation pair, or a chain that branches.
    """
    tracer = _Tracer(x, _resolve_layers(model, layers) if layers is not None else None, positive)
    calls, _ = trace_leaf_calls(model, x)
    for call in calls:
        tracer.visit(call)
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
    return ConvChain(tracer.stages, tracer.modules, tracer.input_crop)


class StageCapture:
    """Hands each stage output of a :class:`ConvChain` to ``reduce(k, tensor)`` during a forward pass.

    ``reduce`` is called as soon as stage ``k``'s module returns its output (so in-place layers
    later in the network cannot corrupt it and nothing large is kept alive); a stage that is a
    Conv2d named explicitly (``Stage.relu``) is handed over through a ReLU. The hooks sit on the
    stage modules only while :meth:`hooked` is active and see only the thread that entered it,
    so several threads may attribute with the same model at once. ``seen`` counts the stage
    outputs captured by the last (or current) forward.
    """

    def __init__(self, chain: ConvChain, reduce: Callable[[int, torch.Tensor], None]):
        self.chain = chain
        self.reduce = reduce
        self.seen = 0

    @contextlib.contextmanager
    def hooked(self) -> Iterator[StageCapture]:
        """Context in which this thread's forward passes are captured; the hooks are always removed."""
        self.seen = 0
        relu = [st.relu for st in self.chain.stages]
        with module_hooks(forward=[(module, self._hook(order, relu)) for module, order in self.chain.call_orders]):
            yield self

    def _hook(self, order: tuple[int | None, ...], relu: list[bool]) -> ForwardHook:
        """The forward hook of one stage module; ``order[c]`` is the stage of its call ``c`` (or None),
        ``relu[k]`` whether stage ``k`` is handed over through a ReLU."""
        calls = 0

        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            nonlocal calls
            k = order[calls] if calls < len(order) else None
            calls += 1
            if k is not None:
                self.seen += 1
                self.reduce(k, out.clamp(min=0) if relu[k] else out)

        return hook


@dataclass(frozen=True)
class LeafCall:
    """One call of a leaf module in a traced forward pass (see :func:`trace_leaf_calls`)."""

    name: str
    module: nn.Module
    inputs: tuple
    output: object


def trace_leaf_calls(model: nn.Module, x: torch.Tensor) -> tuple[list[LeafCall], object]:
    """One forward pass without gradients that records every call of a leaf module, in order.

    Returns the calls and the model's output. The records hold on to every tensor they name, so
    while they live ``id()`` identifies a tensor across calls: the planners follow tensors by
    identity. The train/eval mode is kept; RNG and buffers are restored (:func:`preserved_state`).
    """
    names = {id(m): n for n, m in model.named_modules()}
    calls: list[LeafCall] = []

    def record(m: nn.Module, inputs: tuple, out: object) -> None:
        calls.append(LeafCall(names[id(m)], m, inputs, out))

    leaves = [(m, record) for m in model.modules() if next(m.children(), None) is None]
    with module_hooks(forward=leaves), torch.no_grad(), preserved_state(model):
        out = model(x)
    return calls, out


@contextlib.contextmanager
def module_hooks(
    forward: Sequence[tuple[nn.Module, ForwardHook]] = (),
    pre: Sequence[tuple[nn.Module, PreHook]] = (),
    output_grad: Sequence[tuple[nn.Module, GradRule]] = (),
) -> Iterator[None]:
    """While active, this thread's calls of the given modules run the given hooks.

    Args:
        forward: ``(module, hook(module, inputs, output))``; a hook may return a new output.
        pre: ``(module, hook(module, inputs))``; a hook may return new inputs (a tuple).
        output_grad: ``(module, rule(module, output))``: on each call whose output requires grad,
            ``rule`` may return ``fn(grad) -> grad``, which then transforms the gradient arriving
            at that output (a hook on that tensor: it lives as long as its autograd graph).

    Other threads calling the same modules meanwhile are not affected. Every hook is removed on
    exit, also when the block raises.
    """
    me = threading.get_ident()
    handles = []
    try:
        for m, hook in pre:
            handles.append(m.register_forward_pre_hook(_this_thread(hook, me)))
        for m, hook in forward:
            handles.append(m.register_forward_hook(_this_thread(hook, me)))
        for m, rule in output_grad:
            handles.append(m.register_forward_hook(_this_thread(_on_output_grad(rule), me)))
        yield
    finally:
        for h in handles:
            h.remove()


def _this_thread(hook: Callable[..., object], me: int) -> Callable[..., object]:
    """``hook`` for calls from thread ``me``; a no-op (None: nothing replaced) for other threads."""
    get_ident = threading.get_ident

    def call(*args: object) -> object:
        return hook(*args) if get_ident() == me else None

    return call


def _on_output_grad(rule: GradRule) -> ForwardHook:
    def hook(module: nn.Module, inputs: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.requires_grad:
            fn = rule(module, out)
            if fn is not None:
                out.register_hook(fn)

    return hook
