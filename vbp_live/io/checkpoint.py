"""The one checkpoint format: it rebuilds the model *and* its preprocessing alone.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with torch's weights-only
loader (``torch.load(..., weights_only=True)``), so loading one can never run code (a file that
holds Python objects is refused as such, a file torch cannot read is "not a checkpoint")::

    {"format": "vbp_live/checkpoint-v1",
     "model": {"name": "netsvf", "args": {...}},
     "crop": {...CropSpec fields...},
     "config": {...resolved training config or {}...},
     "state_dict": {...},            # fp32, or fp16 for shipped models
     "train_state": {...} | None,    # optimizer, epoch, step, RNG: what --resume needs
     "meta": {...},                  # free-form: metrics, versions, dataset
     "output": {"index": 0, "scale": 1.0}}  # which output is steering, factor to rad SWA (optional)

The model's output is the steering wheel angle in radians, positive = left. A model imported from
elsewhere (see :mod:`vbp_live.io.model_card`) may output another unit or several values: the
``output`` entry (:class:`~vbp_live.models.output.OutputMap`) says which column to take and the
factor to apply; checkpoints without it are in the project's unit.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import pickletools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import CheckpointError
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.atomic import atomic_path
from vbp_live.models import args_problem, create_model, list_models, resolved_args
from vbp_live.models.output import OutputMap, SteeringOutput

FORMAT = "vbp_live/checkpoint-v1"
_SCAN_LIMIT = 64 << 20  # bytes of a non-zip file scanned for the Python objects it names
log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``build_model()`` returns the network with its weights, in eval mode.

    ``module`` is a network already built (a model card's TorchScript, user class or pickle); else
    ``build_model`` creates the registered ``model_name`` and loads ``state_dict``.
    """

    model_name: str
    model_args: dict[str, Any]
    crop: CropSpec
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    output: OutputMap = field(default_factory=OutputMap)
    module: nn.Module | None = None

    def build_model(self, device: torch.device | str = "cpu") -> nn.Module:
        """Rebuild the model, load the weights (as float32), map its output to steering, eval mode."""
        model = self.module if self.module is not None else self.registered_model()
        if not self.output.identity:
            model = SteeringOutput(model, self.output)
        return model.to(device).eval()

    def registered_model(self) -> nn.Module:
        """The registered ``model_name`` with ``state_dict`` loaded (float32), as it was trained or converted.

        The model is first built without memory (on the ``meta`` device) and its parameter shapes
        are compared with the weights present, so model args that would make a model larger than
        the file's weights are refused before anything is allocated.
        """
        self.check_weights_fit()
        model = self._create()
        load_weights(model, self.state_dict, f"{self.path}: weights do not fit {self.model_name}({self.model_args})")
        return model

    def _create(self) -> nn.Module:
        try:
            return create_model(self.model_name, **self.model_args)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # the args come from the file
            raise CheckpointError(f"{self.path}: cannot build {self.model_name}({self.model_args}): {e}") from e

    def check_weights_fit(self) -> None:
        """Raise a clear error unless the weights present are exactly what the model args build.

        Builds the model on the ``meta`` device (shapes only, no memory) and compares names and shapes.
        """
        with torch.device("meta"):
            skeleton = self._create()
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in self.state_dict.items()}
        model = f"{self.model_name}({self.model_args})"
        missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
        if missing or extra:
            what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise CheckpointError(f"{self.path}: weights do not fit {model}: state_dict {what}")
        for k, shape in want.items():
            if have[k] != shape:
                n_want = sum(math.prod(v) for v in want.values())
                raise CheckpointError(
                    f"{self.path}: weights do not fit {model}: state_dict.{k} is {list(have[k])}, the args make "
                    f"{list(shape)} ({n_want:,} parameters in all, the file holds "
                    f"{sum(math.prod(v) for v in have.values()):,})"
                )

    def check_model(self, name: str, args: dict[str, Any]) -> None:
        """Raise a clear error if this checkpoint is not for model ``name`` with ``args``."""
        try:
            same = name == self.model_name and resolved_args(name, args) == resolved_args(name, self.model_args)
        except KeyError as e:
            raise CheckpointError(f"{self.path}: {e.args[0]}") from e
        if not same:
            raise CheckpointError(
                f"{self.path}: checkpoint is for {self.model_name}({self.model_args}), "
                f"but {name}({args}) was asked for"
            )


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state_dict`` (floats as float32) into ``model``; a misfit names the keys and shapes.

    Raises:
        CheckpointError: ``"{what}: missing ...; unexpected ...; shape ..."`` (one line).
    """
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in state_dict.items()}
    problems = weight_misfits(model.state_dict(), sd)
    if problems:
        raise CheckpointError(f"{what}: {problems}")
    model.load_state_dict(sd)


def weight_misfits(want: dict[str, torch.Tensor], got: dict[str, Any], limit: int = 4) -> str:
    """Missing keys, unexpected keys and shape mismatches between two state dicts, in one line ('' if none)."""
    def listed(label: str, items: list[str]) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{label} {', '.join(items[:limit])}{more}" if items else ""

    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k} {tuple(getattr(got[k], 'shape', ()))} in the file vs {tuple(v.shape)} in the model"
              for k, v in want.items() if k in got and tuple(getattr(got[k], "shape", ())) != tuple(v.shape)]
    parts = [listed("missing", missing), listed("unexpected", unexpected), listed("shape", shapes)]
    return "; ".join(p for p in parts if p)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    crop: CropSpec,
    config: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = False,
    output: OutputMap | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the previous file intact).

    Args:
        model: a model built by :func:`~vbp_live.models.create_model` (DDP/compiled wrappers unwrapped).
        crop: the preprocessing the model was trained with.
        config, train_state, meta: plain data (dicts, lists, numbers, strings, tensors).
        half: store floating weights as fp16 (compact shipped models).
        output: which output is the steering and its factor to rad SWA (imported models); None: as is.
    """
    model = getattr(model, "module", model)
    name, args = getattr(model, "model_name", None), getattr(model, "model_args", None)
    if name is None or args is None:
        raise CheckpointError("model has no model_name/model_args: build it with vbp_live.models.create_model")
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    payload = {
        "format": FORMAT,
        "model": {"name": name, "args": dict(args)},
        "crop": crop.to_dict(),
        "config": dict(config or {}),
        "state_dict": sd,
        "train_state": train_state,
        "meta": dict(meta or {}),
    }
    if output is not None and not output.identity:
        payload["output"] = output.to_dict()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.info("saved checkpoint %s", path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint with the weights-only loader; errors name the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    raw = read_weights_only(p, map_location)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{p}: not a vbp_live checkpoint (format {found!r}, expected {FORMAT!r})")
    try:
        ckpt = Checkpoint(
            model_name=raw["model"]["name"],
            model_args=dict(raw["model"]["args"]),
            crop=CropSpec.from_dict(raw["crop"]),
            state_dict=raw["state_dict"],
            config=dict(raw.get("config") or {}),
            train_state=raw.get("train_state"),
            meta=dict(raw.get("meta") or {}),
            path=str(p),
            output=OutputMap(**(raw.get("output") or {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{p}: malformed vbp_live checkpoint: {e}") from e
    validate(ckpt)
    return ckpt


# What ``--resume`` reads from ``train_state`` (written by vbp_live.train.loop.Trainer.train_state).
TRAIN_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "step_in_epoch": int, "global_step": int, "steps_per_epoch": int, "world": int,
    "epoch_sums": list, "optimizer": dict, "scaler": dict, "rng": dict,
}


def validate(ckpt: Checkpoint) -> None:
    """Check a loaded checkpoint's structure before any work: one clear line naming the file and key.

    Model name and args (known arguments of the registered factory, of the annotated types),
    weights (a dict of tensors, every floating value finite) and, where present, ``train_state``
    (the keys ``--resume`` reads, of the right types). Whether the weights fit the args is
    checked by :meth:`Checkpoint.check_weights_fit` (no memory is allocated for it).
    """
    _check_args(ckpt)
    if not isinstance(ckpt.state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt.state_dict.items()):
        raise CheckpointError(f"{ckpt.path}: state_dict is not a mapping of names to tensors")
    for k, v in ckpt.state_dict.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = "NaN" if bool(torch.isnan(v).any()) else "infinite"
            raise CheckpointError(f"{ckpt.path}: state_dict.{k} holds {bad} values (a diverged or damaged model)")
    if ckpt.train_state is not None:
        _check_train_state(ckpt)


def _check_args(ckpt: Checkpoint) -> None:
    """``model.name`` is registered; every ``model.args`` key is an argument of its factory, of its type."""
    if not isinstance(ckpt.model_name, str) or ckpt.model_name not in list_models():
        raise CheckpointError(f"{ckpt.path}: model.name {ckpt.model_name!r} is not a registered model "
                              f"({', '.join(list_models())})")
    problem = args_problem(ckpt.model_name, ckpt.model_args)
    if problem:
        raise CheckpointError(f"{ckpt.path}: model.{problem}")


def _check_train_state(ckpt: Checkpoint) -> None:
    st = ckpt.train_state
    if not isinstance(st, dict):
        raise CheckpointError(f"{ckpt.path}: train_state is {type(st).__name__}, not a mapping")
    for key, want in TRAIN_STATE_KEYS.items():
        if key not in st:
            raise CheckpointError(f"{ckpt.path}: train_state.{key} is missing (a damaged checkpoint; cannot resume)")
        value = st[key]
        if not isinstance(value, want) or isinstance(value, bool):
            raise CheckpointError(f"{ckpt.path}: train_state.{key} is {type(value).__name__}, expected "
                                  f"{getattr(want, '__name__', want)}")
        if want is int and value < 0:
            raise CheckpointError(f"{ckpt.path}: train_state.{key} is {value}, expected a count (>= 0)")
    if not isinstance(st["rng"].get("torch"), torch.Tensor):
        raise CheckpointError(f"{ckpt.path}: train_state.rng.torch is missing (cannot resume the random state)")


def read_weights_only(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with the weights-only loader; why it failed in one line (a CheckpointError)."""
    try:
        with warnings.catch_warnings():  # a plain pickle of protocol > 2 is refused below; no warning first
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # refused objects, truncated zip, not a torch file, empty file, ...
        raise _load_error(path, e) from e


def _load_error(path: Path, err: Exception) -> CheckpointError:
    """Why the weights-only loader failed, in one line (never torch's advice to load unsafely)."""
    names = sorted(_python_objects(path), key=lambda n: (n.startswith("torch."), n))  # the file's own classes first
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return CheckpointError(f"{path}: contains Python objects ({shown}); refused because loading it could run code")
    log.debug("%s: torch.load failed: %s: %s", path, type(err).__name__, err)
    return CheckpointError(f"{path}: not a checkpoint (corrupt or not written by torch.save)")


def _python_objects(path: Path) -> list[str]:
    """The classes and functions a pickle in ``path`` names beyond what the weights-only loader allows.

    Read without unpickling: torch's own scan for a ``torch.save`` (zip) file, else the opcodes
    of a plain pickle (only a complete one that starts as pickles do counts, so random bytes name nothing).
    """
    try:
        return [str(n) for n in torch.serialization.get_unsafe_globals_in_checkpoint(path)]
    except Exception:  # noqa: BLE001 - not a zip file (or a corrupt one): try a plain pickle
        pass
    with open(path, "rb") as f:
        data = f.read(_SCAN_LIMIT)
    if len(data) < 2 or data[0] != pickle.PROTO[0] or data[1] > pickle.HIGHEST_PROTOCOL:
        return []  # not a pickle of protocol 2 or later (what pickle and torch.save write)
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - not a complete pickle
        return []
    return list(dict.fromkeys(found))
