"""Keras ``.h5`` models without TensorFlow: ``model_config`` and ``model_weights`` read with h5py.

:func:`load_keras_h5` rebuilds a sequential Keras model (Keras 1.x and 2.x ``model.save`` files,
``dim_ordering`` tf/th, ``data_format`` channels_last/channels_first) as a registered
``layer_stack`` (:mod:`vbp_live.models.layer_stack`): name, JSON-able args and a state dict, so
our one checkpoint format stores it and ``create_model`` + ``load_state_dict`` rebuild it.

* The converted net takes NCHW input; Keras' channels-last tensors become NCHW tensors, kernels
  are transposed to PyTorch's (out, in, kh, kw), Dense matrices to (out, in), and the first
  Dense layer after a channels-last ``Flatten`` gets its input rows reordered from (h, w, c) to
  (c, h, w) flattening (a BatchNormalization in between gets the same reordering).
* ``same`` padding is TensorFlow's (the extra row/column at the bottom/right). Files saved with
  the Theano backend (``backend`` attribute) have their kernels flipped back into correlations;
  Keras 1 files do not record the backend and are taken as TensorFlow-trained.
* A ``Lambda`` layer is never executed (its marshalled bytecode is never unmarshalled): it becomes
  the affine ``x * scale + offset`` the caller states for it in ``lambdas`` (from the model card).
* A functional model must be one chain of layers up to its output; with several output layers
  (donkeycar's ``KerasLinear``: angle and throttle heads) the caller names the one to keep.

Supported layers: InputLayer, Lambda, Conv2D/Convolution2D, Dense, Flatten, Dropout (and the other
layers that are the identity at inference), Cropping2D, ZeroPadding2D, MaxPooling2D,
AveragePooling2D, BatchNormalization, Activation, ELU, ReLU, LeakyReLU; activations inside layers.
Anything else is refused with one line naming the layer and its config.

Importing this module needs no optional package: h5py (the ``keras`` extra) is imported when a
file is read, and its absence is then a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vbp_live.core.errors import CheckpointError, ModelError
from vbp_live.models import create_model
from vbp_live.models.blocks import geometry_ceil, symmetric

log = logging.getLogger(__name__)
IDENTITY_LAYERS = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout")
_ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "elu": "elu", "selu": "selu", "tanh": "tanh",
                "sigmoid": "sigmoid", "softmax": "softmax", "softplus": "softplus", "softsign": "softsign",
                "leaky_relu": "leaky_relu", "linear": None}


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:  # optional extra
        raise CheckpointError("reading Keras .h5 files needs h5py: pip install 'vbp-live[keras]'") from e
    return h5py


def load_keras_h5(
    path: str | os.PathLike[str], lambdas: Mapping[str, tuple[float, float]], output: str | None = None
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Convert a Keras ``model.save`` HDF5 file into a ``layer_stack`` network.

    Args:
        path: the ``.h5`` file.
        lambdas: per Lambda layer name, the ``(scale, offset)`` of its arithmetic
            (``x / 127.5 - 1`` is ``(1 / 127.5, -1.0)``).
        output: for a functional model with several output layers (donkeycar's ``KerasLinear``:
            ``n_outputs0`` = angle, ``n_outputs1`` = throttle), the one to convert; the chain from the
            input to it is kept and the other heads are dropped. None: the model must have one output.

    Returns:
        ``("layer_stack", args, state_dict)``: ``create_model("layer_stack", **args)`` then
        ``load_state_dict(state_dict)`` rebuild the network (NCHW input of shape ``args["in_shape"]``).

    Raises:
        CheckpointError: not an HDF5 file, no model config (a ``save_weights`` file), missing weights.
        ModelError: a Lambda not in ``lambdas``, an unsupported layer or layout (one line naming it).
    """
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        layers = _layer_configs(_model_config(f, path), path, output)
        weights = f.get("model_weights", f)
        conv = _Converter(str(path), dict(lambdas), _backend(f), _data_format(layers, path))
        conv.set_input(_input_shape(layers, path))
        for cls, cfg in layers:
            conv.add(cls, cfg, _layer_weights(weights, cfg, path))
    args = {"in_shape": list(conv.in_shape), "layers": conv.specs}
    try:
        create_model("layer_stack", **args).load_state_dict(conv.state)  # the specs build and the weights fit
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    except RuntimeError as e:  # a file whose shapes contradict each other (e.g. kernel_shape vs. weights)
        raise ModelError(f"{path}: the converted weights do not fit: {str(e).splitlines()[0]}") from e
    log.info("converted %s: %d Keras layers -> %d layer_stack layers", path, len(layers), len(conv.specs))
    return "layer_stack", args, conv.state


def _attr_str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _model_config(f: Any, path: Any) -> dict[str, Any]:
    if "model_config" not in f.attrs:
        raise CheckpointError(
            f"{path}: no model_config attribute (a save_weights file without the architecture); "
            "save the model with model.save(), or describe the architecture in the model card"
        )
    try:
        return json.loads(_attr_str(f.attrs["model_config"]))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: model_config is not valid JSON ({e})") from e


def _backend(f: Any) -> str:
    return _attr_str(f.attrs.get("backend", "tensorflow"))


def _layer_configs(config: dict[str, Any], path: Any, output: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(class_name, config)`` per layer, in order, of a Sequential model or of the chain of a functional
    model that leads to its (chosen) output layer."""
    kind, body = config.get("class_name"), config.get("config")
    raw = body if isinstance(body, list) else (body or {}).get("layers")
    if kind not in ("Sequential", "Model", "Functional") or not isinstance(raw, list):
        raise ModelError(f"{path}: model_config is a {kind!r}; only Sequential models and single chains convert")
    if output is not None and kind == "Sequential":
        raise ModelError(f"{path}: a Sequential model has one output; keras.output {output!r} is for functional ones")
    try:
        if kind != "Sequential":
            raw = _output_chain(raw, _output_names(body), output, path)
        layers = [(str(e["class_name"]), dict(e["config"], name=_name(e))) for e in raw]
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ModelError(f"{path}: model_config layer list not understood ({e!r})") from e
    return layers


def _name(entry: dict[str, Any]) -> str:
    return entry.get("name", entry["config"].get("name"))


def _output_names(body: Any) -> list[str]:
    """The functional model's output layers (``output_layers``: ``[[name, 0, 0], ...]``; Keras 3 may
    write one as ``[name, 0, 0]``); empty when the file does not record them."""
    outs = body.get("output_layers") if isinstance(body, dict) else None
    if not outs:
        return []
    if isinstance(outs[0], str):
        outs = [outs]
    return [str(o[0]) for o in outs]


def _output_chain(raw: list[dict[str, Any]], outputs: list[str], output: str | None, path: Any) -> list[dict[str, Any]]:
    """The layers from the input to ``output`` (or the only output), in order; the other heads are dropped.

    Walking back along single inbound links makes the result one chain by construction."""
    if output is not None and output not in outputs:
        raise ModelError(f"{path}: no output layer {output!r}; the model's outputs are {outputs}")
    if output is None and len(outputs) > 1:
        raise ModelError(f"{path}: the model has {len(outputs)} outputs {outputs}; name the steering one "
                         "(model card: keras.output: NAME)")
    target = output or (outputs[0] if outputs else None)
    if target is None:  # no output_layers recorded: the whole layer list must be the chain
        _check_chain(raw, path)
        return raw
    by_name = {_name(e): e for e in raw}
    chain, name = [], target
    while name is not None:
        if name not in by_name or len(chain) > len(raw):
            raise ModelError(f"{path}: layer {name!r}, on the way to output {target!r}, is not in the layer list")
        entry = by_name[name]
        chain.append(entry)
        sources = _inbound_names(entry)
        if len(sources) > 1:
            raise ModelError(f"{path}: layer {name!r} does not simply follow one layer (it takes {sources}): "
                             "only models that are one chain of layers convert")
        name = sources[0] if sources else None
    return chain[::-1]


def _inbound_names(entry: dict[str, Any]) -> list[str]:
    names = []
    for node in entry.get("inbound_nodes") or []:
        if isinstance(node, dict):  # Keras 3: {"args": [{"config": {"keras_history": [name, 0, 0]}}]}
            names += [a["config"]["keras_history"][0] for a in node.get("args", []) if isinstance(a, dict)]
        else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
            names += [item[0] for item in node]
    return names


def _check_chain(raw: list[dict[str, Any]], path: Any) -> None:
    for prev, entry in zip(raw, raw[1:], strict=False):
        if _inbound_names(entry) != [prev.get("name", prev["config"].get("name"))]:
            raise ModelError(
                f"{path}: layer {entry.get('name')!r} does not simply follow {prev.get('name')!r}: "
                "only models that are one chain of layers convert"
            )


def _data_format(layers: list[tuple[str, dict[str, Any]]], path: Any) -> bool:
    """True for channels-last (tf), False for channels-first (th); one format for the whole model."""
    found = {}
    for _, cfg in layers:
        fmt = cfg.get("data_format") or cfg.get("dim_ordering")
        if fmt in ("channels_last", "tf", "default"):
            found[True] = cfg["name"]
        elif fmt in ("channels_first", "th"):
            found[False] = cfg["name"]
    if len(found) > 1:
        raise ModelError(f"{path}: layers {found[True]!r} and {found[False]!r} use different data formats")
    return next(iter(found), True)


def _input_shape(layers: list[tuple[str, dict[str, Any]]], path: Any) -> list[int]:
    for _, cfg in layers:
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        if shape:
            if len(shape) != 4 or any(v is None for v in shape[1:]):
                raise ModelError(f"{path}: input shape {shape} is not one fixed-size image (batch, 3 axes)")
            return [int(v) for v in shape[1:]]
    raise ModelError(f"{path}: no layer states the input shape (batch_input_shape)")


def _layer_weights(root: Any, cfg: dict[str, Any], path: Any) -> list[np.ndarray]:
    name = cfg["name"]
    if name not in root:
        return []
    group = root[name]
    names = [_attr_str(n) for n in group.attrs.get("weight_names", [])]
    try:
        return [np.asarray(group[n], dtype=np.float64) for n in names]
    except (KeyError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: weights of layer {name!r} cannot be read ({e})") from e


def _pair(v: Any, default: tuple[int, int] | None = None) -> tuple[int, int]:
    if v is None:
        if default is None:
            raise KeyError("missing size")
        return default
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's ``same`` padding of one axis: (before, after), the extra one after."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _ceil(pad: tuple[int, int, int, int], hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
          d: tuple[int, int] = (1, 1)) -> dict[str, bool]:
    """``geometry_ceil`` for a layer padded per side (nothing for symmetric padding)."""
    return {} if symmetric(pad) else {"geometry_ceil": geometry_ceil(hw, k, s, pad, d)}


def _out_size(size: int, k: int, s: int, before: int, after: int, d: int = 1) -> int:
    return (size + before + after - (k - 1) * d - 1) // s + 1


@dataclass
class _Converter:
    """Keras layers -> layer_stack specs + state dict, tracking the tensor shape (C, H, W) or (N,)."""

    path: str
    lambdas: dict[str, tuple[float, float]]
    backend: str
    channels_last: bool
    specs: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    in_shape: tuple[int, ...] = ()
    perm: np.ndarray | None = None  # flat (c, h, w) position -> Keras' flat position, until the next Dense
    warned: bool = False

    def set_input(self, keras_shape: list[int]) -> None:
        """The Keras input shape (without batch) in the model's data format."""
        h_w_c = keras_shape if self.channels_last else [keras_shape[1], keras_shape[2], keras_shape[0]]
        self.shape = self.in_shape = (h_w_c[2], h_w_c[0], h_w_c[1])

    def fail(self, cfg: dict[str, Any], what: str) -> ModelError:
        """A one-line error naming the layer."""
        return ModelError(f"{self.path}: layer {cfg.get('name')!r}: {what}")

    def add(self, cls: str, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Convert one Keras layer."""
        handler = _HANDLERS.get(cls)
        if cls in IDENTITY_LAYERS:
            handler = _Converter.identity
        if handler is None:
            raise ModelError(f"{self.path}: unsupported Keras layer {cls} {cfg.get('name')!r}: {_short(cfg)}")
        try:
            handler(self, cfg, weights)
        except ModelError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as e:
            what = f"{cls} config or weights not understood ({e!r}): {_short(cfg)}"
            raise self.fail(cfg, what) from e

    def push(self, spec: dict[str, Any], **tensors: np.ndarray) -> None:
        """Append a layer spec and its tensors (``layers.<i>.<name>``)."""
        i = len(self.specs)
        self.specs.append(spec)
        for name, value in tensors.items():
            self.state[f"layers.{i}.{name}"] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def push_activation(self, cfg: dict[str, Any], name: Any) -> None:
        """The activation a layer applies (``activation`` key) or an Activation layer's."""
        if isinstance(name, dict):  # Keras 3 serializes functions as {"class_name": "function", "config": "relu"}
            name = name.get("config")
        if name not in _ACTIVATIONS:
            raise self.fail(cfg, f"unsupported activation {name!r}")
        kind = _ACTIVATIONS[name]
        if kind == "softmax" and len(self.shape) == 3 and not self.channels_last:
            raise self.fail(cfg, "softmax over the last axis of a channels_first image is not supported")
        if kind is not None:
            self.push({"type": kind})

    def spatial(self, cfg: dict[str, Any]) -> tuple[int, int, int]:
        """The current (C, H, W); a layer needing an image after Flatten is refused."""
        if len(self.shape) != 3:
            raise self.fail(cfg, f"needs an image input, got a flat tensor of {self.shape}")
        return self.shape  # type: ignore[return-value]

    # --- handlers -------------------------------------------------------------------------------

    def input_layer(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """InputLayer: the shape was read already."""

    def identity(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Dropout and the other layers that do nothing at inference."""
        self.push({"type": "dropout", "p": float(cfg.get("rate", cfg.get("p", 0.0)))})

    def lambda_layer(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Lambda: the affine the caller states; its code is never run."""
        if cfg["name"] not in self.lambdas:
            raise self.fail(cfg, "a Lambda layer is never executed (its code is marshalled Python bytecode); "
                                 "state its arithmetic as scale and offset (x * scale + offset) in the model card")
        scale, offset = self.lambdas[cfg["name"]]
        self.push({"type": "affine", "scale": float(scale), "offset": float(offset)})

    def conv(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Conv2D / Convolution2D (Keras 1 and 2 keys)."""
        c, h, w = self.spatial(cfg)
        out_ch = int(cfg.get("filters", cfg.get("nb_filter")))
        k = _pair(cfg.get("kernel_size")) if "kernel_size" in cfg else (int(cfg["nb_row"]), int(cfg["nb_col"]))
        s = _pair(cfg.get("strides", cfg.get("subsample")), (1, 1))
        d = _pair(cfg.get("dilation_rate", cfg.get("atrous_rate")), (1, 1))
        pad = self.pads(cfg, cfg.get("padding", cfg.get("border_mode", "valid")), (h, w), k, s, d)
        kernel = self.conv_kernel(cfg, weights[0], (out_ch, c, *k))
        use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
        spec = {"type": "conv2d", "in_channels": c, "out_channels": out_ch, "kernel": list(k), "stride": list(s),
                "dilation": list(d), "pad": list(pad), "bias": use_bias} | _ceil(pad, (h, w), k, s, d)
        self.push(spec, weight=kernel, **({"bias": weights[1]} if use_bias else {}))
        self.shape = (out_ch, _out_size(h, k[0], s[0], pad[0], pad[1], d[0]),
                      _out_size(w, k[1], s[1], pad[2], pad[3], d[1]))
        self.push_activation(cfg, cfg.get("activation", "linear"))

    def conv_kernel(self, cfg: dict[str, Any], kernel: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
        """The stored kernel as (out, in, kh, kw): Keras 1 th files store it so, all others (kh, kw, in, out)."""
        th_layout = "nb_filter" in cfg and cfg.get("dim_ordering") == "th"
        torch_kernel = kernel if th_layout else kernel.transpose(3, 2, 0, 1)
        if torch_kernel.shape != want:
            raise self.fail(cfg, f"kernel of shape {kernel.shape} does not fit {want} (out, in, kh, kw)")
        if self.backend == "theano":  # Theano convolves (flipped kernels); PyTorch correlates
            torch_kernel = torch_kernel[:, :, ::-1, ::-1]
        elif th_layout and not self.warned:
            self.warned = True
            log.warning("%s: Keras 1 file with dim_ordering 'th' does not record its backend; "
                        "taking its kernels as TensorFlow's (a Theano-trained file needs them flipped)", self.path)
        return torch_kernel

    def pads(self, cfg: dict[str, Any], mode: str, hw: tuple[int, int], k: tuple[int, int],
             s: tuple[int, int], d: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding for ``valid`` / ``same``; checks that the kernel fits."""
        if mode == "same":
            return (*_same_pads(hw[0], k[0], s[0], d[0]), *_same_pads(hw[1], k[1], s[1], d[1]))
        if mode != "valid":
            raise self.fail(cfg, f"padding {mode!r} is not supported (valid, same)")
        if any(n < (kk - 1) * dd + 1 for n, kk, dd in zip(hw, k, d, strict=True)):
            raise self.fail(cfg, f"kernel {k} does not fit the {hw[0]}x{hw[1]} input")
        return (0, 0, 0, 0)

    def dense(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Dense: (in, out) matrix transposed; rows reordered after a channels-last Flatten."""
        if len(self.shape) != 1:
            raise self.fail(cfg, f"Dense on a {len(self.shape)}-axis tensor (only after Flatten) is not supported")
        matrix = weights[0].T  # (out, in)
        if matrix.shape[1] != self.shape[0]:
            raise self.fail(cfg, f"weights of shape {weights[0].shape} do not fit {self.shape[0]} inputs")
        if self.perm is not None:
            matrix, self.perm = matrix[:, self.perm], None
        use_bias = bool(cfg.get("use_bias", cfg.get("bias", True)))
        spec = {"type": "dense", "in_features": int(matrix.shape[1]), "out_features": int(matrix.shape[0]),
                "bias": use_bias}
        self.push(spec, weight=matrix, **({"bias": weights[1]} if use_bias else {}))
        self.shape = (int(matrix.shape[0]),)
        self.push_activation(cfg, cfg.get("activation", "linear"))

    def flatten(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Flatten: NCHW flattening here; Keras' (h, w, c) order is restored at the next Dense."""
        if len(self.shape) == 1:
            return
        c, h, w = self.shape
        if self.channels_last:
            self.perm = np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).ravel()
        self.push({"type": "flatten"})
        self.shape = (c * h * w,)

    def cropping(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Cropping2D ((top, bottom), (left, right))."""
        c, h, w = self.spatial(cfg)
        crop = _four(cfg.get("cropping", 0))
        if crop[0] + crop[1] >= h or crop[2] + crop[3] >= w:
            raise self.fail(cfg, f"cropping {crop} leaves nothing of the {h}x{w} input")
        self.push({"type": "crop", "crop": list(crop)})
        self.shape = (c, h - crop[0] - crop[1], w - crop[2] - crop[3])

    def zero_padding(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """ZeroPadding2D."""
        c, h, w = self.spatial(cfg)
        pad = _four(cfg.get("padding", 1))
        self.push({"type": "zero_pad", "pad": list(pad)})
        self.shape = (c, h + pad[0] + pad[1], w + pad[2] + pad[3])

    def pooling(self, cfg: dict[str, Any], kind: str) -> None:
        """MaxPooling2D / AveragePooling2D (``same`` pads are ignored, as TensorFlow does)."""
        c, h, w = self.spatial(cfg)
        k = _pair(cfg.get("pool_size"), (2, 2))
        s = _pair(cfg.get("strides"), k)
        pad = self.pads(cfg, cfg.get("padding", cfg.get("border_mode", "valid")), (h, w), k, s)
        spec = {"type": kind, "kernel": list(k), "stride": list(s), "pad": list(pad)} | _ceil(pad, (h, w), k, s)
        if kind == "avgpool2d":
            if not symmetric(pad):
                raise self.fail(cfg, f"average pooling padded per side {pad} (TF 'same' here) is not supported")
            spec["count_include_pad"] = False
        self.push(spec)
        self.shape = (c, _out_size(h, k[0], s[0], pad[0], pad[1]), _out_size(w, k[1], s[1], pad[2], pad[3]))

    def batchnorm(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """BatchNormalization on the channel axis (images) or the features (flat), inference statistics."""
        if int(cfg.get("mode", 0)) != 0:
            raise self.fail(cfg, f"BatchNormalization mode {cfg['mode']} (only feature-wise mode 0) is not supported")
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        n = self.shape[0]
        ok = {3: (-1, 3) if self.channels_last else (1, -3), 1: (-1, 1)}[len(self.shape)]
        if axis not in ok:
            raise self.fail(cfg, f"BatchNormalization over axis {axis} (not the channel axis) is not supported")
        params = _bn_params(cfg, weights, n)
        if self.perm is not None:
            params = {k: v[self.perm] for k, v in params.items()}
        eps = float(cfg.get("epsilon", 1e-3))
        self.push({"type": "batchnorm", "num_features": n, "eps": eps, "dims": 2 if len(self.shape) == 3 else 1},
                  **params)
        self.state[f"layers.{len(self.specs) - 1}.num_batches_tracked"] = torch.tensor(0)

    def activation_layer(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """Activation."""
        self.push_activation(cfg, cfg["activation"])

    def elu(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """ELU (alpha)."""
        self.push({"type": "elu", "alpha": float(cfg.get("alpha", 1.0))})

    def leaky_relu(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """LeakyReLU (alpha, or Keras 3's negative_slope)."""
        self.push({"type": "leaky_relu", "alpha": float(cfg.get("alpha", cfg.get("negative_slope", 0.3)))})

    def relu(self, cfg: dict[str, Any], weights: list[np.ndarray]) -> None:
        """ReLU layer: plain, capped at 6 or leaky; other thresholds are refused."""
        cap, slope = cfg.get("max_value"), float(cfg.get("negative_slope") or 0.0)
        if float(cfg.get("threshold") or 0.0) != 0.0 or cap not in (None, 6, 6.0) or (cap and slope):
            raise self.fail(cfg, f"ReLU with threshold/max_value/negative_slope is not supported: {_short(cfg)}")
        self.push({"type": "relu6"} if cap else {"type": "leaky_relu", "alpha": slope} if slope else {"type": "relu"})


def _short(cfg: dict[str, Any], limit: int = 400) -> str:
    """A layer config as one line of JSON, cut at ``limit`` characters."""
    text = json.dumps(cfg, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _four(v: Any) -> tuple[int, int, int, int]:
    """Keras 2-D crop/pad sizes (int, (h, w), ((t, b), (l, r)) or Keras 1's (t, b, l, r)) as (t, b, l, r)."""
    if isinstance(v, dict):  # Keras 1 ZeroPadding2D dict form
        return (int(v["top_pad"]), int(v["bottom_pad"]), int(v["left_pad"]), int(v["right_pad"]))
    if isinstance(v, int):
        return (v, v, v, v)
    if len(v) == 4:
        return tuple(int(x) for x in v)  # type: ignore[return-value]
    return (*_pair(v[0]), *_pair(v[1]))


def _bn_params(cfg: dict[str, Any], weights: list[np.ndarray], n: int) -> dict[str, np.ndarray]:
    """gamma / beta / moving mean / moving variance by weight name order, defaults where absent."""
    names = ["gamma"] * bool(cfg.get("scale", True)) + ["beta"] * bool(cfg.get("center", True)) + ["mean", "var"]
    if len(weights) != len(names):
        raise ValueError(f"expected {len(names)} weight arrays ({', '.join(names)}), got {len(weights)}")
    got = dict(zip(names, weights, strict=True))
    out = {"weight": got.get("gamma", np.ones(n)), "bias": got.get("beta", np.zeros(n)),
           "running_mean": got["mean"], "running_var": got["var"]}  # Keras 1's "running_std" holds the variance
    if any(v.shape != (n,) for v in out.values()):
        raise ValueError(f"parameter shapes {[v.shape for v in out.values()]} do not fit {n} features")
    return out


_HANDLERS = {
    "InputLayer": _Converter.input_layer,
    "Lambda": _Converter.lambda_layer,
    "Conv2D": _Converter.conv, "Convolution2D": _Converter.conv, "AtrousConvolution2D": _Converter.conv,
    "Dense": _Converter.dense,
    "Flatten": _Converter.flatten,
    "Cropping2D": _Converter.cropping,
    "ZeroPadding2D": _Converter.zero_padding,
    "MaxPooling2D": lambda self, cfg, w: self.pooling(cfg, "maxpool2d"),
    "MaxPool2D": lambda self, cfg, w: self.pooling(cfg, "maxpool2d"),
    "AveragePooling2D": lambda self, cfg, w: self.pooling(cfg, "avgpool2d"),
    "AvgPool2D": lambda self, cfg, w: self.pooling(cfg, "avgpool2d"),
    "BatchNormalization": _Converter.batchnorm,
    "Activation": _Converter.activation_layer,
    "ELU": _Converter.elu,
    "LeakyReLU": _Converter.leaky_relu,
    "ReLU": _Converter.relu,
}
