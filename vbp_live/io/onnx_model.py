"""ONNX models as torch modules: a small converter written with the ``onnx`` package (optional extra).

:func:`load_onnx` turns an ONNX graph into the registered ``op_graph`` architecture
(:mod:`vbp_live.models.op_graph`): name, JSON-able args and a state dict, so our one checkpoint
format stores it and ``create_model`` + ``load_state_dict`` rebuild it. Convs become real
``nn.Conv2d`` (initializer weights) and activations real modules, so VisualBackProp traces the
converted graph. (onnx2torch would need torchvision; this converter needs only ``onnx``.)

Supported ops: Conv, Relu, Elu, LeakyRelu, Tanh, Sigmoid, Gemm, MatMul, Add, Sub, Mul, Div,
Flatten, Reshape, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, Dropout, Identity,
Transpose, Constant, Concat, Squeeze, Unsqueeze, Softmax, LogSoftmax, and Shape and Gather (so the
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` that exporters write for
``x.view(x.size(0), -1)`` works). Any other op is refused with one line naming it and its node.
A graph whose one input is NHWC and immediately transposed to NCHW is converted to take NCHW.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vbp_live.core.errors import CheckpointError, ModelError
from vbp_live.models import create_model
from vbp_live.models.blocks import geometry_ceil, symmetric

log = logging.getLogger(__name__)
_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64", np.dtype(np.float16): "float16",
           np.dtype(np.int64): "int64", np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # optional extra
        raise CheckpointError("loading ONNX models needs the onnx package: pip install 'vbp-live[onnx]'") from e
    return onnx


def load_onnx(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Convert an ONNX model file into an ``op_graph`` network.

    Returns:
        ``("op_graph", args, state_dict)``: ``create_model("op_graph", **args)`` then
        ``load_state_dict(state_dict)`` rebuild the network (NCHW input of shape ``args["in_shape"]``).

    Raises:
        CheckpointError: the onnx package is missing, or the file is not an ONNX model.
        ModelError: an op or attribute the converter lacks (one line naming the op and node),
            several inputs, or an input that is not one fixed-size image.
    """
    onnx = _onnx()
    from google.protobuf.message import DecodeError  # protobuf comes with onnx

    try:
        model = onnx.load(os.fspath(path))
    except (OSError, ValueError, DecodeError) as e:
        raise CheckpointError(f"{path}: not a readable ONNX model ({e})") from e
    if not len(model.graph.node):
        raise CheckpointError(f"{path}: not an ONNX model (no graph nodes)")
    conv = _Converter(str(path), _opset(model), _shapes(onnx, model))
    conv.run(model.graph)
    args = conv.args()
    try:
        create_model("op_graph", **args).load_state_dict(conv.state)  # the specs build and the weights fit
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    except RuntimeError as e:  # a file whose shapes contradict each other (e.g. kernel_shape vs. weights)
        raise ModelError(f"{path}: the converted weights do not fit: {str(e).splitlines()[0]}") from e
    log.info("converted %s: %d ONNX nodes -> %d op_graph nodes", path, len(model.graph.node), len(conv.specs))
    return "op_graph", args, conv.state


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)


def _shapes(onnx: Any, model: Any) -> dict[str, list[int | None]]:
    """Static shapes of the graph's tensors where ONNX shape inference knows them."""
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception as e:  # noqa: BLE001  (inference is optional help; the conversion checks what it needs)
        log.debug("ONNX shape inference failed: %s", e)
        graph = model.graph
    out = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    return out


def _same_pads(size: int, k: int, s: int, d: int, upper: bool) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


@dataclass
class _Converter:
    """ONNX nodes -> op_graph node specs, constants and state dict."""

    path: str
    opset: int
    shapes: dict[str, list[int | None]]
    specs: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    used: dict[str, None] = field(default_factory=dict)  # constants used as tensors, in first-use order
    alias: dict[str, str] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)
    input: str = ""
    in_shape: list[int] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def run(self, graph: Any) -> None:
        """Convert every node of ``graph``."""
        from onnx import numpy_helper

        self.consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.set_input(graph)
        for node in graph.node:
            if node.output and node.output[0] in self.alias:
                continue  # the NHWC -> NCHW transpose of the input, folded away
            self.add(node)
        self.outputs = [self.alias.get(o.name, o.name) for o in graph.output]
        missing = [o for o in self.outputs if o not in self.defined]
        if missing:
            raise ModelError(f"{self.path}: graph outputs {missing} are not computed from the input")

    def set_input(self, graph: Any) -> None:
        """The one non-constant input: (N, C, H, W), or (N, H, W, C) feeding a Transpose to NCHW."""
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: the graph has {len(inputs)} inputs {[i.name for i in inputs]}; one needed")
        name, dims = inputs[0].name, self.shapes.get(inputs[0].name, [])
        if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
            raise ModelError(f"{self.path}: input {name!r} has shape {dims}; one fixed-size image (N, C, H, W) needed")
        users = [n for n in graph.node if name in n.input]
        perm = [list(a.ints) for a in users[0].attribute if a.name == "perm"] if len(users) == 1 else []
        if users and users[0].op_type == "Transpose" and perm == [[0, 3, 1, 2]]:
            self.alias[users[0].output[0]] = name
            dims = [dims[0], dims[3], dims[1], dims[2]]
        self.input, self.in_shape = name, [int(d) for d in dims[1:]]
        self.defined.add(name)

    def args(self) -> dict[str, Any]:
        """The op_graph factory's arguments (plain JSON)."""
        constants = []
        for j, name in enumerate(self.used):
            value = self.consts[name]
            constants.append({"name": name, "shape": list(value.shape), "dtype": _DTYPES[value.dtype]})
            self.state[f"consts.c{j}"] = torch.from_numpy(np.array(value))
        return {"in_shape": self.in_shape, "input": self.input, "outputs": self.outputs,
                "nodes": self.specs, "constants": constants}

    # --- helpers ---------------------------------------------------------------------------------

    def fail(self, node: Any, what: str) -> ModelError:
        """A one-line error naming the op and its node."""
        return ModelError(f"{self.path}: ONNX op {node.op_type} (node {node.name or node.output[0]!r}): {what}")

    def const(self, node: Any, i: int, what: str) -> np.ndarray:
        """Input ``i`` of ``node`` as a constant; refused when it is computed at run time."""
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.consts:
            raise self.fail(node, f"its {what} must be a constant (initializer), not a tensor computed at run time")
        return self.consts[name]

    def opt_const(self, node: Any, i: int) -> np.ndarray | None:
        name = node.input[i] if i < len(node.input) else ""
        return self.consts.get(name) if name else None

    def tensor(self, node: Any, name: str) -> str:
        """A tensor input by (aliased) name: a computed tensor or a constant buffer."""
        name = self.alias.get(name, name)
        if name in self.defined:
            return name
        if name in self.consts:
            if self.consts[name].dtype not in _DTYPES:
                raise self.fail(node, f"constant {name!r} of type {self.consts[name].dtype} is not supported")
            self.used[name] = None
            return name
        raise self.fail(node, f"input {name!r} is not produced by any supported node")

    def push(self, node: Any, op: str, inputs: list[str], tensors: dict[str, np.ndarray] | None = None,
             **attrs: Any) -> None:
        """Append a node spec (its module's tensors as ``nodes.n<i>.<name>``)."""
        i = len(self.specs)
        out = node.output[0]
        self.specs.append({"op": op, "name": node.name or out, "inputs": [self.tensor(node, n) for n in inputs],
                           "outputs": [out], **attrs})
        for key, value in (tensors or {}).items():
            self.state[f"nodes.n{i}.{key}"] = torch.from_numpy(np.array(value, dtype=np.float32))
        self.defined.add(out)

    def add(self, node: Any) -> None:
        """Convert one node."""
        handler = _OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handler is None:
            raise self.fail(node, "not supported by the converter; supported: " + ", ".join(sorted(_OPS)))
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        handler(self, node, attrs)

    def spatial_pads(self, node: Any, attrs: dict[str, Any], k: list[int], s: list[int],
                     d: list[int]) -> list[int]:
        """(top, bottom, left, right) from ``pads`` (begin..., end...) or ``auto_pad``."""
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            dims = self.shapes.get(node.input[0], [])
            if len(dims) != 4 or None in dims[2:]:
                raise self.fail(node, f"auto_pad {auto} needs the input's size, which shape inference does not know")
            h, w = (_same_pads(dims[2 + a], k[a], s[a], d[a], auto == "SAME_UPPER") for a in range(2))
            return [*h, *w]
        if auto not in ("NOTSET", "VALID"):
            raise self.fail(node, f"auto_pad {auto!r} is not supported")
        p = list(attrs.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        return [p[0], p[2], p[1], p[3]]

    def geometry(self, node: Any, attrs: dict[str, Any], kernel: list[int]) -> dict[str, Any]:
        """kernel, stride, dilation, pad of a 2-D conv/pool."""
        if len(kernel) != 2:
            raise self.fail(node, f"only 2-D kernels are supported, got {kernel}")
        s = list(attrs.get("strides", [1, 1]))
        d = list(attrs.get("dilations", [1, 1]))
        geo = {"kernel": list(kernel), "stride": s, "dilation": d, "pad": self.spatial_pads(node, attrs, kernel, s, d)}
        dims = self.shapes.get(node.input[0], [])
        if not symmetric(geo["pad"]) and len(dims) == 4 and None not in dims[2:]:
            geo["geometry_ceil"] = geometry_ceil(dims[2:], kernel, s, geo["pad"], d)
        return geo

    def rank(self, name: str) -> int | None:
        dims = self.shapes.get(name)
        return len(dims) if dims is not None else None

    # --- ops -------------------------------------------------------------------------------------

    def conv(self, node: Any, attrs: dict[str, Any]) -> None:
        """Conv -> nn.Conv2d (per-side pads: PaddedConv2d)."""
        weight, bias = self.const(node, 1, "weight"), self.opt_const(node, 2)
        if weight.ndim != 4:
            raise self.fail(node, f"only 2-D convolutions are supported (weight {weight.shape})")
        groups = int(attrs.get("group", 1))
        geo = self.geometry(node, attrs, list(attrs.get("kernel_shape", weight.shape[2:])))
        tensors = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        self.push(node, "conv2d", [node.input[0]], tensors, in_channels=int(weight.shape[1]) * groups,
                  out_channels=int(weight.shape[0]), groups=groups, bias=bias is not None, **geo)

    def gemm(self, node: Any, attrs: dict[str, Any]) -> None:
        """Gemm with constant B (and C) -> nn.Linear (alpha and beta folded into the weights)."""
        if attrs.get("transA", 0):
            raise self.fail(node, "transA=1 is not supported")
        b = self.const(node, 1, "B matrix")
        weight = (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0))  # (out, in)
        c = self.opt_const(node, 2)
        if len(node.input) > 2 and node.input[2] and c is None:
            raise self.fail(node, "its C must be a constant (initializer)")
        tensors = {"weight": weight}
        if c is not None:
            tensors["bias"] = np.broadcast_to(c.reshape(-1) * float(attrs.get("beta", 1.0)), (weight.shape[0],))
        self.push(node, "dense", [node.input[0]], tensors, in_features=int(weight.shape[1]),
                  out_features=int(weight.shape[0]), bias=c is not None)

    def batchnorm(self, node: Any, attrs: dict[str, Any]) -> None:
        """BatchNormalization (inference) -> nn.BatchNorm1d/2d."""
        if attrs.get("training_mode", 0):
            raise self.fail(node, "training_mode=1 is not supported")
        names = ("weight", "bias", "running_mean", "running_var")
        tensors = {n: self.const(node, i + 1, n) for i, n in enumerate(names)}
        i = len(self.specs)
        dims = 1 if self.rank(node.input[0]) in (2, 3) else 2
        self.push(node, "batchnorm", [node.input[0]], tensors, num_features=int(tensors["weight"].shape[0]),
                  eps=float(attrs.get("epsilon", 1e-5)), dims=dims)
        self.state[f"nodes.n{i}.num_batches_tracked"] = torch.tensor(0)

    def pool(self, node: Any, attrs: dict[str, Any]) -> None:
        """MaxPool / AveragePool -> nn.MaxPool2d / nn.AvgPool2d."""
        if len([o for o in node.output if o]) > 1:
            raise self.fail(node, "the Indices output is not supported")
        geo = self.geometry(node, attrs, list(attrs["kernel_shape"]))
        ceil = bool(attrs.get("ceil_mode", 0))
        if node.op_type == "MaxPool":
            self.push(node, "maxpool2d", [node.input[0]], ceil_mode=ceil, **geo)
        else:
            if geo["dilation"] != [1, 1] or not symmetric(geo["pad"]):
                raise self.fail(node, f"average pooling with dilation {geo['dilation']} or per-side pads "
                                      f"{geo['pad']} is not supported")
            self.push(node, "avgpool2d", [node.input[0]], ceil_mode=ceil,
                      count_include_pad=bool(attrs.get("count_include_pad", 0)),
                      **{k: v for k, v in geo.items() if k not in ("dilation", "geometry_ceil")})

    def activation(self, node: Any, attrs: dict[str, Any]) -> None:
        """Relu, Elu, LeakyRelu, Tanh, Sigmoid -> activation modules; Dropout, Identity -> nn.Identity."""
        op = {"Relu": "relu", "Elu": "elu", "LeakyRelu": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
              "Dropout": "identity", "Identity": "identity"}[node.op_type]
        alpha = {"Elu": 1.0, "LeakyRelu": 0.01}.get(node.op_type)
        extra = {"alpha": float(attrs.get("alpha", alpha))} if alpha is not None else {}
        self.push(node, op, [node.input[0]], **extra)

    def binary(self, node: Any, attrs: dict[str, Any]) -> None:
        """Add, Sub, Mul, Div, MatMul with broadcasting."""
        self.push(node, node.op_type.lower(), list(node.input[:2]))

    def flatten(self, node: Any, attrs: dict[str, Any]) -> None:
        """Flatten (axis)."""
        self.push(node, "flatten", [node.input[0]], axis=int(attrs.get("axis", 1)))

    def reshape(self, node: Any, attrs: dict[str, Any]) -> None:
        """Reshape to a constant shape, or to one computed in the graph (Shape -> Gather -> Concat)."""
        shape = self.opt_const(node, 1)
        if shape is None:
            self.push(node, "reshape", list(node.input[:2]), allowzero=int(attrs.get("allowzero", 0)))
        else:
            self.push(node, "reshape", [node.input[0]], shape=[int(v) for v in shape.reshape(-1)],
                      allowzero=int(attrs.get("allowzero", 0)))

    def shape(self, node: Any, attrs: dict[str, Any]) -> None:
        """Shape (start, end): the input's sizes as an int64 tensor."""
        extra = {k: int(attrs[k]) for k in ("start", "end") if k in attrs}
        self.push(node, "shape", [node.input[0]], **extra)

    def gather(self, node: Any, attrs: dict[str, Any]) -> None:
        """Gather (axis) with any indices."""
        self.push(node, "gather", list(node.input[:2]), axis=int(attrs.get("axis", 0)))

    def transpose(self, node: Any, attrs: dict[str, Any]) -> None:
        """Transpose (perm; reversed axes by default)."""
        perm = attrs.get("perm")
        if perm is None:
            rank = self.rank(node.input[0])
            if rank is None:
                raise self.fail(node, "no perm and an input of unknown rank")
            perm = list(range(rank))[::-1]
        self.push(node, "transpose", [node.input[0]], perm=[int(p) for p in perm])

    def constant(self, node: Any, attrs: dict[str, Any]) -> None:
        """Constant -> a constant tensor (a buffer when a node uses it as a tensor)."""
        from onnx import numpy_helper

        if "value" in attrs:
            value = numpy_helper.to_array(attrs["value"])
        elif any(k in attrs for k in ("value_float", "value_floats")):
            value = np.asarray(attrs.get("value_float", attrs.get("value_floats")), dtype=np.float32)
        elif any(k in attrs for k in ("value_int", "value_ints")):
            value = np.asarray(attrs.get("value_int", attrs.get("value_ints")), dtype=np.int64)
        else:
            raise self.fail(node, f"constant attributes {sorted(attrs)} are not supported")
        if value.dtype not in _DTYPES:
            raise self.fail(node, f"constants of type {value.dtype} are not supported")
        self.consts[node.output[0]] = value

    def concat(self, node: Any, attrs: dict[str, Any]) -> None:
        """Concat (axis)."""
        self.push(node, "concat", list(node.input), axis=int(attrs["axis"]))

    def squeeze(self, node: Any, attrs: dict[str, Any]) -> None:
        """Squeeze / Unsqueeze with axes from the attribute (opset < 13) or a constant input."""
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes").reshape(-1).tolist()
        if axes is None and node.op_type == "Unsqueeze":
            raise self.fail(node, "no axes")
        extra = {"axes": [int(a) for a in axes]} if axes is not None else {}
        self.push(node, node.op_type.lower(), [node.input[0]], **extra)

    def softmax(self, node: Any, attrs: dict[str, Any]) -> None:
        """Softmax / LogSoftmax over one axis (before opset 13 only over the last axis)."""
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
        if self.opset < 13:
            rank = self.rank(node.input[0])
            if rank is None or axis % rank != rank - 1:
                raise self.fail(node, f"opset {self.opset} softmax over axis {axis} of a rank-{rank} input "
                                      "(it flattens the trailing axes) is not supported")
        self.push(node, "softmax" if node.op_type == "Softmax" else "log_softmax", [node.input[0]], axis=axis)

    def global_avgpool(self, node: Any, attrs: dict[str, Any]) -> None:
        """GlobalAveragePool."""
        self.push(node, "global_avgpool", [node.input[0]])


_OPS = {
    "Conv": _Converter.conv, "Gemm": _Converter.gemm, "BatchNormalization": _Converter.batchnorm,
    "MaxPool": _Converter.pool, "AveragePool": _Converter.pool, "GlobalAveragePool": _Converter.global_avgpool,
    **dict.fromkeys(("Relu", "Elu", "LeakyRelu", "Tanh", "Sigmoid", "Dropout", "Identity"), _Converter.activation),
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "MatMul"), _Converter.binary),
    "Flatten": _Converter.flatten, "Reshape": _Converter.reshape, "Transpose": _Converter.transpose,
    "Shape": _Converter.shape, "Gather": _Converter.gather,
    "Constant": _Converter.constant, "Concat": _Converter.concat,
    "Squeeze": _Converter.squeeze, "Unsqueeze": _Converter.squeeze,
    "Softmax": _Converter.softmax, "LogSoftmax": _Converter.softmax,
}
