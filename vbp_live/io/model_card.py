"""Model cards: bring a steering network trained elsewhere, and :func:`open_model`, the one loader.

A model card is a small YAML file next to the weights that says what the file alone cannot: the
format, the architecture, how the network sees a frame (crop, colour, size, scaling: the
:class:`~vbp_live.core.preprocess.CropSpec` of the one preprocessing function) and what its output
means (unit, sign, steering wheel or road-wheel angle). It is read by the one config loader
(:func:`vbp_live.core.config.load`): unknown keys and wrong types fail as ``card.yaml:LINE: ...``.
See docs/models.md for the reference.

:func:`open_model` is what every command that takes ``--checkpoint`` calls: a ``.yaml``/``.yml``
path is a card, anything else a vbp_live checkpoint. Both give a
:class:`~vbp_live.io.checkpoint.Checkpoint`, so the rest of the program cannot tell them apart.

Security: weights are read with torch's weights-only loader. Two things run code, and only when
the user asks by name: ``model.class_path`` imports a class from the user's own code (the card
names it on purpose), and ``format: pickle`` (a whole pickled module) needs ``--trust-pickle``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vbp_live.core import config
from vbp_live.core.config import ConfigValueError
from vbp_live.core.errors import CheckpointError, ConfigError, ModelError
from vbp_live.core.preprocess import CropSpec, affine_scaling
from vbp_live.io.checkpoint import Checkpoint, load_checkpoint, load_weights, read_weights_only, save_checkpoint
from vbp_live.io.keras_h5 import load_keras_h5  # h5py / onnx are imported only when a file is read
from vbp_live.io.onnx_model import load_onnx
from vbp_live.models import create_model, list_models
from vbp_live.models.output import OutputMap, steering_scale
from vbp_live.models.script import script_layer_stack

CARD_SUFFIXES = (".yaml", ".yml")
FORMATS = ("checkpoint", "state_dict", "torchscript", "onnx", "keras_h5", "pickle")
log = logging.getLogger(__name__)


# -- the schema -----------------------------------------------------------------------------------


@dataclass
class CardCrop:
    """``input.crop``: the band of the frame the network sees (default: the whole frame)."""

    top: float = 0.0
    bottom: float | None = None
    left: float = 0.0
    right: float | None = None
    units: Literal["fraction", "pixel"] = "fraction"


@dataclass
class CardInput:
    """``input``: how the network sees a frame (becomes the checkpoint's CropSpec)."""

    height: int
    width: int
    color: Literal["gray", "bgr", "rgb", "yuv", "hsv"]
    crop: CardCrop = field(default_factory=CardCrop)
    channel_order: str = ""
    interpolation: Literal["area", "linear", "nearest", "cubic", "lanczos"] = "area"
    scaling: str = "x/255"
    mean: list[float] | None = None
    std: list[float] | None = None
    layout: Literal["nchw", "nhwc"] = "nchw"

    def crop_spec(self) -> CropSpec:
        """The preprocessing as the one :class:`CropSpec` (raises ValueError on a bad combination)."""
        c = self.crop
        bottom = c.bottom if c.bottom is not None else (1.0 if c.units == "fraction" else 0)  # the bottom edge
        scale, offset = affine_scaling(self.scaling, self.mean, self.std)
        return CropSpec(top=c.top, bottom=bottom, left=c.left, right=c.right, units=c.units,
                        out_height=self.height, out_width=self.width, color=self.color,
                        channel_order=self.channel_order, interpolation=self.interpolation,
                        scale=scale, offset=offset, layout=self.layout)


@dataclass
class CardOutput:
    """``output``: what the network's steering value means."""

    unit: Literal["radians", "degrees", "normalized"]
    positive: Literal["left", "right"]
    angle: Literal["steering_wheel", "road_wheel"] = "steering_wheel"
    full_scale_deg: float | None = None
    steering_ratio: float | None = None
    index: int = 0

    def output_map(self) -> OutputMap:
        """Which column and the factor to rad of steering wheel angle, positive = left."""
        scale = steering_scale(self.unit, self.positive, self.angle, self.full_scale_deg, self.steering_ratio)
        return OutputMap(self.index, scale)


@dataclass
class CardModel:
    """``model``: the architecture the weights belong to."""

    architecture: str = ""
    class_path: str = ""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class KerasLambda:
    """One Keras ``Lambda`` layer as ``y = x * scale + offset`` (it is never executed)."""

    scale: float
    offset: float = 0.0


@dataclass
class CardKeras:
    """``keras``: what a ``.h5`` file cannot say itself."""

    lambdas: dict[str, KerasLambda] = field(default_factory=dict)
    output: str | None = None  # the output layer of a model with several (donkeycar KerasLinear: n_outputs0)


@dataclass
class ModelCard:
    """A model card (see docs/models.md)."""

    format: Literal["checkpoint", "state_dict", "torchscript", "onnx", "keras_h5", "pickle"]
    weights: str
    description: str = ""
    model: CardModel = field(default_factory=CardModel)
    input: CardInput | None = None
    output: CardOutput | None = None
    keras: CardKeras = field(default_factory=CardKeras)

    def validate(self) -> None:
        """What types cannot say: which sections each format needs, valid crop and output."""
        if self.format == "checkpoint":
            for key in ("input", "output"):
                if getattr(self, key) is not None:
                    raise ConfigValueError(key, f"{key}: a vbp_live checkpoint carries its own; remove this section")
        else:
            for key in ("input", "output"):
                if getattr(self, key) is None:
                    raise ConfigValueError("format", f"format {self.format} needs an '{key}' section")
        self._validate_model()
        if (self.keras.lambdas or self.keras.output) and self.format != "keras_h5":
            raise ConfigValueError("keras", "keras: only for format keras_h5")
        if self.input is not None:
            try:
                self.input.crop_spec()
            except ValueError as e:
                raise ConfigValueError("input", f"input: {e}") from None
        if self.output is not None:
            try:
                self.output.output_map()
            except ValueError as e:
                raise ConfigValueError("output", f"output: {e}") from None

    def _validate_model(self) -> None:
        m = self.model
        if m.architecture and m.class_path:
            raise ConfigValueError("model", "model: give architecture or class_path, not both")
        if m.class_path and self.format != "state_dict":
            raise ConfigValueError("model.class_path", "model.class_path: only for format state_dict")
        if m.architecture and self.format not in ("state_dict", "torchscript", "pickle"):
            raise ConfigValueError("model.architecture", f"model.architecture: format {self.format} names its own")
        if m.args and not (m.architecture or m.class_path):
            raise ConfigValueError("model.args", "model.args: without model.architecture or model.class_path")
        if self.format == "state_dict" and not (m.architecture or m.class_path):
            raise ConfigValueError("model", "format state_dict needs model.architecture (a registered net: "
                                   f"{', '.join(list_models())}) or model.class_path (package.module:Class)")
        if m.architecture and m.architecture not in list_models(generic=True):
            raise ConfigValueError("model.architecture", f"model.architecture: unknown {m.architecture!r}; "
                                   f"registered: {', '.join(list_models())}")
        if m.class_path and (m.class_path.count(":") != 1 or not all(m.class_path.split(":"))):
            raise ConfigValueError("model.class_path", f"model.class_path: expected package.module:Class, "
                                   f"got {m.class_path!r}")


# -- loading ----------------------------------------------------------------------------------------


def is_card(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a model card (by its suffix)."""
    return Path(path).suffix.lower() in CARD_SUFFIXES


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and check a model card (unknown keys, wrong types: ``card.yaml:LINE: ...``)."""
    return config.load(ModelCard, Path(path))


def open_model(path: str | os.PathLike[str], trust_pickle: bool = False) -> Checkpoint:
    """THE model loader of every command: a vbp_live checkpoint, or a model card and its weights.

    Args:
        path: a ``.pt`` checkpoint or a ``.yaml``/``.yml`` model card.
        trust_pickle: allow a card's ``format: pickle`` (runs code from the file; warns).

    Raises:
        CheckpointError, ConfigError, ModelError: one line naming the file and what is wrong.
    """
    if is_card(path):
        return load_card_model(path, trust_pickle)
    fmt = foreign_format(path)
    if fmt is not None:
        raise CheckpointError(
            f"{path}: a {_FORMAT_NAMES[fmt]} file, not a vbp_live checkpoint: describe it in a model card "
            f"(format: {fmt}, weights: {Path(path).name}, and how the net sees a frame and what its output "
            "means; docs/models.md#a-model-card) and pass the card.yaml instead"
        )
    return load_checkpoint(path)


_FORMAT_NAMES = {"keras_h5": "Keras .h5", "onnx": "ONNX", "torchscript": "TorchScript"}


def foreign_format(path: str | os.PathLike[str]) -> str | None:
    """The card ``format`` of a model file that is not a vbp_live checkpoint, sniffed from its bytes
    (HDF5 signature: ``keras_h5``; a zip with TorchScript's ``code/``: ``torchscript``; ``.onnx``:
    ``onnx``), else None."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(8)
        if head == b"\x89HDF\r\n\x1a\n":
            return "keras_h5"
        if p.suffix.lower() == ".onnx":
            return "onnx"
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                if any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist()):
                    return "torchscript"
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def load_card_model(path: str | os.PathLike[str], trust_pickle: bool = False) -> Checkpoint:
    """The model a card describes, as a :class:`Checkpoint` (its crop and output map from the card)."""
    card_path = Path(path)
    card = load_card(card_path)
    ctx = _Ctx(card, card_path, trust_pickle)
    if card.format == "checkpoint":
        ck = load_checkpoint(ctx.weights)
        ck.meta = {**ck.meta, "card": str(card_path), "weights": str(ctx.weights)}
        return ck
    loaders = {"state_dict": _state_dict, "torchscript": _torchscript, "pickle": _pickle,
               "onnx": _converted, "keras_h5": _converted}
    ck = loaders[card.format](ctx)
    _check_forward(ctx, ck)
    return ck


def _check_forward(ctx: _Ctx, ck: Checkpoint) -> None:
    """One forward pass on a random input of the card's size: the input fits and ``output.index`` exists."""
    model = ck.module if ck.module is not None else ck.registered_model()
    try:
        with torch.no_grad():
            out = model.eval()(ctx.example())
    except Exception as e:  # noqa: BLE001 - the net refuses the card's input: one line naming the card's key
        raise ConfigError(f"{ctx.at('input')}: input: the model does not take a {ck.crop.channels}x"
                          f"{ck.crop.out_height}x{ck.crop.out_width} input ({_one_line(e)})") from None
    n_out = out.reshape(out.shape[0], -1).shape[1] if isinstance(out, torch.Tensor) else 0
    if ck.output.index >= n_out:
        raise ConfigError(f"{ctx.at('output.index') if 'output.index' in ctx.lines else ctx.at('output')}: "
                          f"output.index {ck.output.index} but the model has {n_out} output(s) per frame")


class _Ctx:
    """A card being loaded: its file, lines (for messages), weights path and checkpoint fields."""

    def __init__(self, card: ModelCard, path: Path, trust_pickle: bool):
        self.card, self.path, self.trust_pickle = card, path, trust_pickle
        self.lines = config.read_yaml(path)[1]
        weights = Path(card.weights).expanduser()
        self.weights = weights if weights.is_absolute() else (path.parent / weights).resolve()
        if not self.weights.is_file():
            raise CheckpointError(f"{self.at('weights')}: weights: no such file {self.weights}")

    def at(self, key: str) -> str:
        """``card.yaml:LINE`` of ``key`` (or of the file)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    def checkpoint(self, name: str, args: dict[str, Any], sd: dict[str, torch.Tensor],
                   module: nn.Module | None = None) -> Checkpoint:
        """A Checkpoint of the card's crop, output map and this model."""
        assert self.card.input is not None and self.card.output is not None  # validate() made sure
        meta = {"card": str(self.path), "format": self.card.format, "weights": str(self.weights),
                "description": self.card.description}
        return Checkpoint(model_name=name, model_args=dict(args), crop=self.card.input.crop_spec(), state_dict=sd,
                          meta=meta, path=str(self.path), output=self.card.output.output_map(), module=module)

    def registered(self, name: str, args: dict[str, Any], sd: dict[str, torch.Tensor]) -> Checkpoint:
        """A registered net with ``sd`` loaded (checked now: a misfit names the keys and shapes)."""
        try:
            model = create_model(name, **args)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{self.at('model')}: cannot build {name}({args}): {e}") from None
        load_weights(model, sd, f"{self.path}: weights {self.weights.name} do not fit {name}({args})")
        return self.checkpoint(name, args, sd, model.eval())

    def example(self) -> torch.Tensor:
        """A random network input of the card's size (B=2), in the card's layout."""
        assert self.card.input is not None
        spec = self.card.input.crop_spec()
        shape = (2, spec.channels, spec.out_height, spec.out_width)
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))  # (2, C, H, W)
        return x.permute(0, 2, 3, 1) if spec.layout == "nhwc" else x


def _state_dict(ctx: _Ctx) -> Checkpoint:
    """``format: state_dict``: weights-only load, then a registered net or the user's class."""
    sd = _read_state_dict(ctx)
    m = ctx.card.model
    if m.architecture:
        return ctx.registered(m.architecture, m.args, sd)
    model = _user_class(ctx)
    load_weights(model, sd, f"{ctx.path}: weights {ctx.weights.name} do not fit {m.class_path}({m.args})")
    return ctx.checkpoint(m.class_path, m.args, sd, model.eval())


def _read_state_dict(ctx: _Ctx) -> dict[str, torch.Tensor]:
    """A state dict from a weights-only file: plain, under ``state_dict``/``model``, ``module.`` prefix dropped."""
    try:
        ck = read_weights_only(ctx.weights)
    except CheckpointError as e:
        if "Python objects" not in str(e):
            raise
        raise CheckpointError(f"{e} (a whole pickled model? then format: pickle and --trust-pickle)") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(ck, Mapping) and isinstance(ck.get(key), Mapping):
            ck = ck[key]
            break
    if not isinstance(ck, Mapping) or not ck or not all(isinstance(v, torch.Tensor) for v in ck.values()):
        kind = f"a dict with keys {sorted(map(str, ck))[:6]}" if isinstance(ck, Mapping) else type(ck).__name__
        raise CheckpointError(f"{ctx.weights}: not a state dict (found {kind})")
    sd = {str(k): v for k, v in ck.items()}
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an exception from the user's code or file, on one line."""
    text = f"{type(e).__name__}: {' '.join(str(e).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _card_dir_on_path(folder: Path) -> Iterator[None]:
    """The card's folder on ``sys.path`` for one import (the user's code usually sits next to the card)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _user_class(ctx: _Ctx) -> nn.Module:
    """Import ``package.module:Class`` from the user's code (on purpose: the card names it) and build it."""
    m = ctx.card.model
    module_name, cls_name = m.class_path.split(":")
    where = f"{ctx.at('model.class_path')}: model.class_path {m.class_path}"
    try:
        with _card_dir_on_path(ctx.path.parent):
            module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say how, one line
        raise ModelError(f"{where}: cannot import {module_name} ({_one_line(e)})") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ModelError(f"{where}: {module_name} has no torch.nn.Module class {cls_name}")
    try:
        return cls(**m.args)
    except Exception as e:  # noqa: BLE001 - the user's constructor refused the card's args
        raise ModelError(f"{where}: {cls_name}(**{m.args}) failed ({_one_line(e)})") from None


def _torchscript(ctx: _Ctx) -> Checkpoint:
    """``format: torchscript``: ``torch.jit.load``; a registered architecture's state dict, or an eager chain."""
    try:
        script = torch.jit.load(str(ctx.weights), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - not a TorchScript archive: one line
        raise CheckpointError(f"{ctx.weights}: not a TorchScript model ({_one_line(e)})") from None
    sd = {k: v.detach().clone() for k, v in script.state_dict().items()}
    m = ctx.card.model
    if m.architecture:
        return ctx.registered(m.architecture, m.args, sd)
    try:
        args, stack_sd = script_layer_stack(script, ctx.example())
    except ModelError as e:
        raise ModelError(f"{ctx.weights}: {e}") from None
    return ctx.registered("layer_stack", args, stack_sd)


def _pickle(ctx: _Ctx) -> Checkpoint:
    """``format: pickle``: a whole pickled module, loaded only with ``--trust-pickle`` (it runs code)."""
    if not ctx.trust_pickle:
        raise CheckpointError(f"{ctx.weights}: a whole pickled model; refused because loading it runs code from "
                              "the file (pass --trust-pickle if you trust it)")
    log.warning("%s: loading a whole pickled model (--trust-pickle): this runs code from the file", ctx.weights)
    try:
        obj = torch.load(ctx.weights, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a missing class, a corrupt file: one line
        raise CheckpointError(f"{ctx.weights}: cannot unpickle ({_one_line(e)})") from None
    if not isinstance(obj, nn.Module):
        raise CheckpointError(f"{ctx.weights}: holds a {type(obj).__name__}, not a whole model (format state_dict?)")
    sd = {k: v.detach().clone() for k, v in obj.state_dict().items()}
    m = ctx.card.model
    if m.architecture:
        return ctx.registered(m.architecture, m.args, sd)
    name, args = getattr(obj, "model_name", None), getattr(obj, "model_args", None)
    if name in list_models(generic=True) and isinstance(args, dict):
        return ctx.registered(name, args, sd)  # a model built by vbp_live's registry
    return ctx.checkpoint(f"pickle:{type(obj).__module__}.{type(obj).__qualname__}", {}, sd, obj.float().eval())


def _converted(ctx: _Ctx) -> Checkpoint:
    """``format: onnx`` / ``keras_h5``: the converters give a registered net, its args and weights."""
    if ctx.card.format == "onnx":
        name, args, sd = load_onnx(ctx.weights)
    else:
        lambdas = {k: (v.scale, v.offset) for k, v in ctx.card.keras.lambdas.items()}
        name, args, sd = load_keras_h5(ctx.weights, lambdas, ctx.card.keras.output)
    return ctx.registered(name, args, sd)


# -- import-model ---------------------------------------------------------------------------------


def import_checkpoint(card_path: str | os.PathLike[str], out: str | os.PathLike[str],
                      trust_pickle: bool = False) -> tuple[Path, Checkpoint]:
    """Convert a card's model into one vbp_live checkpoint (weights only, atomic); nothing is written on error.

    A checkpoint rebuilds a *registered* architecture, so the card must lead to one: a state dict
    with ``model.architecture``, a TorchScript file (its architecture, or its layer chain as a
    ``layer_stack``), an ONNX or Keras file (the converters give one), a pickle with
    ``model.architecture`` or of a registry-built model, or a vbp_live checkpoint.

    Returns:
        The written path and the checkpoint as it was loaded from the card.

    Raises:
        CheckpointError: the card's model has no registered architecture (says what to do instead).
    """
    ck = load_card_model(card_path, trust_pickle)
    net = ck.module if ck.module is not None else ck.registered_model()
    if getattr(net, "model_name", None) not in list_models(generic=True):
        raise CheckpointError(f"{card_path}: {_not_importable(ck)}")
    meta = {**ck.meta, "imported_from": str(card_path)}
    path = save_checkpoint(out, net, ck.crop, config=ck.config, meta=meta, output=ck.output)
    return path, ck


def _not_importable(ck: Checkpoint) -> str:
    why = {
        "state_dict": "model.class_path names your own class; a checkpoint never imports code, so name a registered "
                      "architecture (model.architecture) that fits the weights",
        "pickle": "this pickled model is not a registered architecture: set model.architecture to one whose "
                  "weights it holds",
    }.get(str(ck.meta.get("format")), "no registered architecture")
    return f"cannot import: {why}; or use --checkpoint CARD.yaml directly (registered: {', '.join(list_models())})"
