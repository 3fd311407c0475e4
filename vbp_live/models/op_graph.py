"""``op_graph``: a generic network described as a JSON-able graph of ops (converted ONNX models).

:mod:`vbp_live.io.onnx_model` turns an ONNX graph into these args; a checkpoint stores them like
any registered net's (name, args, state dict). Each node is ``{"op", "name", "inputs", "outputs",
...attributes}`` and runs in graph order on named tensors, starting from the one input::

    op_graph(in_shape=[3, 66, 200], input="x", outputs=["y"],
             constants=[{"name": "mean", "shape": [1, 3, 1, 1], "dtype": "float32"}],
             nodes=[{"op": "sub", "name": "n0", "inputs": ["x", "mean"], "outputs": ["a"]},
                    {"op": "conv2d", "name": "n1", "inputs": ["a"], "outputs": ["b"], "in_channels": 3, ...},
                    {"op": "elu", "name": "n2", "inputs": ["b"], "outputs": ["y"], "alpha": 1.0}])

Ops with weights or that VisualBackProp must see (convs, dense, batchnorm, pooling, activations,
identity) are modules built by :func:`~vbp_live.models.layer_stack.build_layer` (``nodes.n<i>`` in
the state dict) and receive the very tensor the previous module returned, so the tracer follows
the conv chain. The others are tensor functions: add, sub, mul, div, matmul, flatten (axis),
reshape (a constant shape, or a second input with the shape computed from ``shape`` / ``gather`` /
``concat`` nodes, as exporters write ``x.view(x.size(0), -1)``; allowzero), transpose (perm),
concat (axis), squeeze / unsqueeze (axes), softmax / log_softmax (axis), global_avgpool,
shape (start, end), gather (axis). Constants (initializers and ``Constant`` values
used as tensors) are buffers ``consts.c<j>`` whose shapes and dtypes the args state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import ModelError
from vbp_live.models.layer_stack import build_layer
from vbp_live.models.registry import register_generic_model

MODULE_OPS = ("conv2d", "dense", "batchnorm", "maxpool2d", "avgpool2d", "identity",
              "relu", "elu", "leaky_relu", "tanh", "sigmoid")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def _reshape(spec: Mapping[str, Any], x: torch.Tensor, computed: torch.Tensor | None = None) -> torch.Tensor:
    shape = [int(v) for v in (spec["shape"] if computed is None else computed.tolist())]
    if not spec.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]  # 0 copies the input's size
    return x.reshape(shape)


def _flatten(spec: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    axis = int(spec.get("axis", 1)) % (x.dim() or 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _squeeze(spec: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    axes = spec.get("axes")
    return x.squeeze() if axes is None else x.squeeze(tuple(int(a) for a in axes))


def _unsqueeze(spec: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    rank = x.dim() + len(spec["axes"])
    for a in sorted(int(a) % rank for a in spec["axes"]):
        x = x.unsqueeze(a)
    return x


def _gather(spec: Mapping[str, Any], data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    axis = int(spec.get("axis", 0)) % data.dim()
    picked = torch.index_select(data, axis, indices.reshape(-1) % data.shape[axis])
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]))


def _shape(spec: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.shape[spec.get("start", 0): spec.get("end")], dtype=torch.int64, device=x.device)


FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "add": lambda s, a, b: a + b,
    "sub": lambda s, a, b: a - b,
    "mul": lambda s, a, b: a * b,
    "div": lambda s, a, b: a / b,
    "matmul": lambda s, a, b: torch.matmul(a, b),
    "flatten": _flatten,
    "reshape": _reshape,
    "transpose": lambda s, x: x.permute(*[int(p) for p in s["perm"]]),
    "concat": lambda s, *xs: torch.cat(xs, dim=int(s["axis"])),
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "softmax": lambda s, x: torch.softmax(x, dim=int(s.get("axis", -1))),
    "log_softmax": lambda s, x: torch.log_softmax(x, dim=int(s.get("axis", -1))),
    "global_avgpool": lambda s, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "shape": _shape,
    "gather": _gather,
}


def _check_node(i: int, spec: Mapping[str, Any], known: set[str]) -> set[str]:
    """The outputs of node ``i``, after checking that its inputs exist by then."""
    ins, outs = spec.get("inputs"), spec.get("outputs")
    if not isinstance(ins, list) or not isinstance(outs, list) or len(outs) != 1:
        raise ModelError(f"op_graph node {i} ({spec.get('name')!r}): needs an inputs list and one output")
    if missing := [n for n in ins if n not in known]:
        raise ModelError(f"op_graph node {i} ({spec.get('name')!r}): inputs {missing} are not computed before it")
    return {str(outs[0])}


class Constants(nn.Module):
    """The graph's constant tensors as buffers ``c0, c1, ...`` (values come with the state dict)."""

    def __init__(self, specs: Sequence[Mapping[str, Any]]):
        super().__init__()
        self.index: dict[str, str] = {}
        for j, spec in enumerate(specs):
            if spec.get("dtype", "float32") not in DTYPES:
                raise ModelError(f"op_graph constant {spec.get('name')!r}: unsupported dtype {spec.get('dtype')!r}")
            try:
                value = torch.zeros([int(v) for v in spec["shape"]], dtype=DTYPES[spec.get("dtype", "float32")])
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise ModelError(f"op_graph constant {j}: bad spec {dict(spec)}: {e!r}") from e
            self.register_buffer(f"c{j}", value)
            self.index[str(spec["name"])] = f"c{j}"


class OpGraph(nn.Module):
    """Runs the nodes in order on named tensors (see the module docstring).

    Args:
        in_shape: (C, H, W) of the input (the batch axis is free).
        nodes: node specs in an order where every input is produced before it is used.
        constants: ``{"name", "shape", "dtype"}`` per constant tensor.
        input: the input's name.
        outputs: the names returned (one tensor, or a tuple for several).
    """

    def __init__(self, in_shape: Sequence[int], nodes: Sequence[Mapping[str, Any]],
                 constants: Sequence[Mapping[str, Any]] = (), input: str = "x", outputs: Sequence[str] = ("y",)):
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        self.input_name, self.output_names = str(input), [str(o) for o in outputs]
        self.specs = [dict(n) for n in nodes]
        self.consts = Constants(constants)
        self.nodes = nn.ModuleDict()
        known = {self.input_name, *self.consts.index}
        for i, spec in enumerate(self.specs):
            op = spec.get("op")
            if op in MODULE_OPS:
                self.nodes[f"n{i}"] = build_layer(i, dict(spec, type=op))
            elif op not in FUNCTIONS:
                raise ModelError(f"op_graph node {i} ({spec.get('name')!r}): unknown op {op!r}; "
                                 f"known: {', '.join(sorted(MODULE_OPS + tuple(FUNCTIONS)))}")
            known |= _check_node(i, spec, known)
        if missing := [o for o in self.output_names if o not in known]:
            raise ModelError(f"op_graph outputs {missing} are not computed by any node")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:  # (B, C, H, W) -> outputs
        """Run the graph."""
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for i, spec in enumerate(self.specs):
            args = [self._value(env, name) for name in spec["inputs"]]
            key = f"n{i}"
            out = self.nodes[key](*args) if key in self.nodes else FUNCTIONS[spec["op"]](spec, *args)
            env[spec["outputs"][0]] = out
        outs = tuple(env[name] for name in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    def _value(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self.consts, self.consts.index[name])


@register_generic_model
def op_graph(in_shape: Sequence[int], nodes: Sequence[Mapping[str, Any]],
             constants: Sequence[Mapping[str, Any]] = (), input: str = "x", outputs: Sequence[str] = ("y",)) -> OpGraph:
    """A graph of ops (converted ONNX models); see :class:`OpGraph`."""
    return OpGraph(in_shape, nodes, constants, input, outputs)
