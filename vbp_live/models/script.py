"""An eager copy of a TorchScript model, so VisualBackProp can hook its layers.

TorchScript modules take no forward hooks, and VisualBackProp needs the post-activation maps and
the conv geometry. When a scripted or traced model's ``forward`` only calls its layers one after
the other (the usual steering net: convs, activations, pooling, a flatten, dense layers), the
same layers with the same weights, rebuilt as eager modules in the order ``forward`` calls them,
are the same function. :func:`eager_chain` rebuilds them and checks that on an example input;
anything else (a layer type it does not know, a residual ``+`` between layers, a different
result) is refused with a :class:`~vbp_live.core.errors.ModelError` naming it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import ModelError

# graph ops a top-level forward may use besides calling its layers (shape bookkeeping, flattening)
_GLUE = {"prim::Constant", "prim::GetAttr", "prim::CallMethod", "prim::ListConstruct", "prim::NumToTensor",
         "prim::TupleConstruct", "prim::TupleUnpack", "aten::size", "aten::Int", "aten::view", "aten::reshape",
         "aten::flatten", "aten::contiguous", "prim::ListUnpack", "prim::unchecked_cast", "aten::__getitem__",
         "aten::len", "prim::RaiseException", "aten::dim", "aten::ne", "aten::eq", "prim::If", "aten::format",
         "aten::__is__", "aten::__isnot__", "prim::Uninitialized", "aten::warn", "aten::mul", "aten::floordiv"}


def _const(value: torch._C.Value) -> Any:
    """The constant a graph value holds (``prim::Constant`` or a list of them)."""
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_const(v) for v in node.inputs()]
    return value.toIValue()


def _op_args(module: Any, ops: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The first ``ops`` call in a traced module's graph and its constant arguments (layers without attributes)."""
    for node in module.inlined_graph.nodes():
        if node.kind() in ops:
            return node.kind(), [_const(v) if v.node().kind() in ("prim::Constant", "prim::ListConstruct") else None
                                 for v in node.inputs()]
    raise ModelError(f"TorchScript layer {module.original_name}: no {ops[0]} in its graph")


def _attr(module: Any, name: str, ops: tuple[str, ...], pos: int) -> Any:
    """A layer setting: the scripted module's attribute, else the constant in its traced graph."""
    value = getattr(module, name) if hasattr(module, name) else _op_args(module, ops)[1][pos]
    return tuple(value) if isinstance(value, list) else value


_CONV = ("aten::_convolution", "aten::conv2d")
_MAXPOOL = ("aten::max_pool2d",)
_AVGPOOL = ("aten::avg_pool2d",)


def _conv(m: Any) -> nn.Module:
    w = m.weight  # (out, in/groups, kh, kw)
    if hasattr(m, "stride"):  # scripted: the module keeps its settings
        stride, padding, dilation, groups = m.stride, m.padding, m.dilation, m.groups
    else:  # traced: read them from the op (_convolution has transposed and output_padding before groups)
        kind, a = _op_args(m, _CONV)
        stride, padding, dilation, groups = a[3], a[4], a[5], a[8] if kind == "aten::_convolution" else a[6]
    if isinstance(padding, str):
        raise ModelError(f"TorchScript Conv2d with padding={padding!r} is not supported")
    return nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(stride),
                     padding=tuple(padding), dilation=tuple(dilation), groups=groups, bias=m.bias is not None)


def _pool(kind: type[nn.Module], ops: tuple[str, ...]) -> Callable[[Any], nn.Module]:
    def make(m: Any) -> nn.Module:
        k, s, p = (_attr(m, n, ops, i) for n, i in (("kernel_size", 1), ("stride", 2), ("padding", 3)))
        if kind is nn.MaxPool2d:
            return nn.MaxPool2d(k, s, p, dilation=_attr(m, "dilation", ops, 4), ceil_mode=_attr(m, "ceil_mode", ops, 5))
        return nn.AvgPool2d(k, s, p, ceil_mode=_attr(m, "ceil_mode", ops, 4))
    return make


def _bn(m: Any) -> nn.Module:
    eps = _attr(m, "eps", ("aten::batch_norm",), 7)
    return nn.BatchNorm2d(m.running_mean.shape[0], eps=eps, affine=getattr(m, "weight", None) is not None)


_LEAVES: dict[str, Callable[[Any], nn.Module]] = {
    "Conv2d": _conv,
    "Linear": lambda m: nn.Linear(m.weight.shape[1], m.weight.shape[0], bias=m.bias is not None),
    "BatchNorm2d": _bn,
    "ReLU": lambda m: nn.ReLU(),
    "ReLU6": lambda m: nn.ReLU6(),
    "ELU": lambda m: nn.ELU(_attr(m, "alpha", ("aten::elu",), 1)),
    "LeakyReLU": lambda m: nn.LeakyReLU(_attr(m, "negative_slope", ("aten::leaky_relu",), 1)),
    "Tanh": lambda m: nn.Tanh(),
    "Sigmoid": lambda m: nn.Sigmoid(),
    "Dropout": lambda m: nn.Identity(),
    "Dropout2d": lambda m: nn.Identity(),
    "Identity": lambda m: nn.Identity(),
    "Flatten": lambda m: nn.Flatten(getattr(m, "start_dim", 1), getattr(m, "end_dim", -1)),
    "MaxPool2d": _pool(nn.MaxPool2d, _MAXPOOL),
    "AvgPool2d": _pool(nn.AvgPool2d, _AVGPOOL),
}


def _calls(module: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The leaf layers ``module.forward`` calls, in call order, with their qualified names."""
    names: dict[str, str] = {}
    for node in module.graph.nodes():
        kind = node.kind()
        if kind == "prim::GetAttr":
            owner = names.get(node.inputsAt(0).debugName(), "")
            names[node.output().debugName()] = f"{owner}.{node.s('name')}" if owner else node.s("name")
        elif kind == "prim::CallMethod":
            path = names.get(node.inputsAt(0).debugName())
            if path is None or node.s("name") != "forward":
                raise ModelError(f"TorchScript model: forward calls {node.s('name')} on something that is not a layer")
            sub = module
            for part in path.split("."):
                sub = getattr(sub, part)
            if sub.original_name in _LEAVES:
                yield f"{prefix}{path}", sub
            else:
                yield from _calls(sub, f"{prefix}{path}.")
        elif kind not in _GLUE:
            where = f" in {prefix.rstrip('.')}" if prefix else ""
            raise ModelError(f"TorchScript model: forward{where} computes {kind} between its layers (not a plain "
                             "chain of layers VisualBackProp can follow); name a registered architecture in the "
                             "card (model.architecture) to load its weights into a traceable net")


def eager_chain(script: torch.jit.ScriptModule, example: torch.Tensor) -> nn.Sequential:
    """The scripted/traced model's layers as an eager ``nn.Sequential`` with the same weights.

    Args:
        script: a ``torch.jit.load``-ed model whose forward calls its layers one after the other.
        example: an input batch (B, C, H, W): the copy must give the model's output on it.

    Raises:
        ModelError: a layer type that is not supported (named, with the list of supported ones),
            an operation between layers, or a copy whose output differs.
    """
    layers: list[nn.Module] = []
    names: list[str] = []
    for name, sub in _calls(script):
        if sub.original_name == "Linear" and layers and not any(isinstance(m, nn.Flatten) for m in layers):
            layers.append(nn.Flatten())  # the x.view(B, -1) before the first dense layer
            names.append("flatten")
        if sub.original_name not in _LEAVES:
            raise ModelError(f"TorchScript layer {name} ({sub.original_name}) is not supported; supported: "
                             f"{', '.join(sorted(_LEAVES))}")
        eager = _LEAVES[sub.original_name](sub)
        eager.load_state_dict({k: v.detach().clone() for k, v in sub.state_dict().items()})
        layers.append(eager)
        names.append(name.replace(".", "_"))
    if not layers:
        raise ModelError("TorchScript model: forward calls no layers VisualBackProp could follow")
    chain = nn.Sequential(OrderedDict(zip(names, layers, strict=True))).eval()
    with torch.no_grad():
        want, got = script.eval()(example), chain(example)
    if not isinstance(want, torch.Tensor) or want.shape != got.shape or not torch.allclose(got, want, 1e-4, 1e-5):
        raise ModelError("TorchScript model: its layers called one after the other do not give its output "
                         "(forward does more than chain them); name a registered architecture in the card "
                         "(model.architecture) to load its weights into a traceable net")
    return chain
