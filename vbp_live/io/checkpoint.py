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
from vbp_live.models import create_model, resolved_args
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
        """The registered ``model_name`` with ``state_dict`` loaded (float32), as it was trained or converted."""
        try:
            model = create_model(self.model_name, **self.model_args)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.path}: cannot build {self.model_name}({self.model_args}): {e}") from e
        load_weights(model, self.state_dict, f"{self.path}: weights do not fit {self.model_name}({self.model_args})")
        return model

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
        return Checkpoint(
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
