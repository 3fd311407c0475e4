"""A TorchScript model as a generic ``layer_stack`` net, so VisualBackProp can hook its layers.

TorchScript modules take no forward hooks, and VisualBackProp needs the post-activation maps and
the conv geometry. When a scripted or traced model's ``forward`` only calls its layers one after
the other (the usual steering net: convs, activations, pooling, a flatten, dense layers), the
same layers with the same weights, rebuilt as a ``layer_stack`` (:mod:`vbp_live.models.layer_stack`)
in the order ``forward`` calls them, are the same function, and a checkpoint can store it.
:func:`script_layer_stack` rebuilds them and checks that on an example input;
anything else (a layer type it does not know, a residual ``+`` between layers, a different
result) is refused with a :class:`~vbp_live.core.errors.ModelError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from vbp_live.core.errors import ModelError
from vbp_live.models.registry import create_model

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


def _pair(v: Any) -> list[int]:
    return [int(x) for x in v] if isinstance(v, tuple | list) else [int(v), int(v)]


def _pads(v: Any) -> list[int]:
    if isinstance(v, str):
        raise ModelError(f"TorchScript layer with padding={v!r} is not supported (give numbers)")
    ph, pw = _pair(v)
    return [ph, ph, pw, pw]


def _conv(m: Any) -> dict[str, Any]:
    w = m.weight  # (out, in/groups, kh, kw)
    if hasattr(m, "stride"):  # scripted: the module keeps its settings
        stride, padding, dilation, groups = m.stride, m.padding, m.dilation, m.groups
    else:  # traced: read them from the op (_convolution has transposed and output_padding before groups)
        kind, a = _op_args(m, _CONV)
        stride, padding, dilation, groups = a[3], a[4], a[5], a[8] if kind == "aten::_convolution" else a[6]
    return {"type": "conv2d", "in_channels": int(w.shape[1]) * int(groups), "out_channels": int(w.shape[0]),
            "kernel": [int(w.shape[2]), int(w.shape[3])], "stride": _pair(stride), "pad": _pads(padding),
            "dilation": _pair(dilation), "groups": int(groups), "bias": m.bias is not None}


def _pool(kind: str, ops: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    def spec(m: Any) -> dict[str, Any]:
        k, s, p = (_attr(m, n, ops, i) for n, i in (("kernel_size", 1), ("stride", 2), ("padding", 3)))
        out = {"type": kind, "kernel": _pair(k), "stride": _pair(s if s not in (None, [], ()) else k),
               "pad": _pads(p)}
        if kind == "maxpool2d":
            return {**out, "dilation": _pair(_attr(m, "dilation", ops, 4)),
                    "ceil_mode": bool(_attr(m, "ceil_mode", ops, 5))}
        return {**out, "ceil_mode": bool(_attr(m, "ceil_mode", ops, 4)),
                "count_include_pad": bool(_attr(m, "count_include_pad", ops, 5))}
    return spec


def _bn(m: Any) -> dict[str, Any]:
    if getattr(m, "weight", None) is None:
        raise ModelError("TorchScript BatchNorm2d without affine weights is not supported")
    return {"type": "batchnorm", "num_features": int(m.running_mean.shape[0]),
            "eps": float(_attr(m, "eps", ("aten::batch_norm",), 7)), "dims": 2}


_LEAVES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "Conv2d": _conv,
    "Linear": lambda m: {"type": "dense", "in_features": int(m.weight.shape[1]),
                         "out_features": int(m.weight.shape[0]), "bias": m.bias is not None},
    "BatchNorm2d": _bn,
    "ReLU": lambda m: {"type": "relu"},
    "ReLU6": lambda m: {"type": "relu6"},
    "ELU": lambda m: {"type": "elu", "alpha": float(_attr(m, "alpha", ("aten::elu",), 1))},
    "LeakyReLU": lambda m: {"type": "leaky_relu", "alpha": float(_attr(m, "negative_slope", ("aten::leaky_relu",), 1))},
    "SELU": lambda m: {"type": "selu"},
    "Tanh": lambda m: {"type": "tanh"},
    "Sigmoid": lambda m: {"type": "sigmoid"},
    "Dropout": lambda m: {"type": "identity"},
    "Dropout2d": lambda m: {"type": "identity"},
    "Identity": lambda m: {"type": "identity"},
    "Flatten": lambda m: {"type": "flatten"},
    "MaxPool2d": _pool("maxpool2d", ("aten::max_pool2d",)),
    "AvgPool2d": _pool("avgpool2d", ("aten::avg_pool2d",)),
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


def script_layer_stack(script: torch.jit.ScriptModule, example: torch.Tensor
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The scripted/traced model as ``layer_stack`` args and state dict (the same layers and weights).

    Args:
        script: a ``torch.jit.load``-ed model whose forward calls its layers one after the other.
        example: an input batch (B, C, H, W): the rebuilt net must give the model's output on it.

    Returns:
        ``(args, state_dict)`` for ``create_model("layer_stack", **args)``.

    Raises:
        ModelError: a layer type that is not supported (named, with the list of supported ones),
            an operation between layers, or a rebuilt net whose output differs.
    """
    layers: list[dict[str, Any]] = []
    sd: dict[str, torch.Tensor] = {}
    for name, sub in _calls(script):
        if sub.original_name == "Linear" and not any(s["type"] == "flatten" for s in layers):
            layers.append({"type": "flatten"})  # the x.view(B, -1) before the first dense layer
        if sub.original_name not in _LEAVES:
            raise ModelError(f"TorchScript layer {name} ({sub.original_name}) is not supported; supported: "
                             f"{', '.join(sorted(_LEAVES))}")
        i = len(layers)
        layers.append(_LEAVES[sub.original_name](sub))
        sd.update({f"layers.{i}.{k}": v.detach().clone() for k, v in sub.state_dict().items()})
    if not any(s["type"] == "conv2d" for s in layers):
        raise ModelError("TorchScript model: forward calls no conv layers VisualBackProp could follow")
    args = {"in_shape": [int(v) for v in example.shape[1:]], "layers": layers}
    net = create_model("layer_stack", **args)
    net.load_state_dict(sd)
    with torch.no_grad():
        want, got = script.eval()(example), net.eval()(example)
    if not isinstance(want, torch.Tensor) or want.shape != got.shape or not torch.allclose(got, want, 1e-4, 1e-5):
        raise ModelError("TorchScript model: its layers called one after the other do not give its output "
                         "(forward does more than chain them); name a registered architecture in the card "
                         "(model.architecture) to load its weights into a traceable net")
    return args, sd
