"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` (timm-style).

Models registered for a while only (tests, experiments) use :func:`registered_models`, which
takes them out again on exit.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_GENERIC: set[str] = set()  # architectures built only from explicit args (converted Keras / ONNX nets)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model factory under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def register_generic_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a generic architecture, one that needs its args to describe a network
    (e.g. ``layer_stack``, ``op_graph``: converted Keras and ONNX nets). ``create_model`` builds it
    like any model; :func:`list_models` lists it only when asked (it has no default network)."""
    _GENERIC.add(fn.__name__)
    return register_model(fn)


def unregister_model(name: str) -> None:
    """Remove the model registered as ``name`` (a no-op if there is none)."""
    _REGISTRY.pop(name, None)
    _GENERIC.discard(name)


@contextlib.contextmanager
def registered_models(*factories: Callable[..., nn.Module]) -> Iterator[list[str]]:
    """Register ``factories`` for the duration of a ``with`` block; yields their names.

    On exit the registry is as before: names that were not registered are removed, and a
    factory that a name had before is put back.
    """
    before = {f.__name__: _REGISTRY.get(f.__name__) for f in factories}
    for fn in factories:
        register_model(fn)
    try:
        yield [f.__name__ for f in factories]
    finally:
        for name, old in before.items():
            if old is None:
                unregister_model(name)
            else:
                _REGISTRY[name] = old


def list_models(generic: bool = False) -> list[str]:
    """Names of the registered models, sorted; generic architectures only if ``generic``."""
    return sorted(n for n in _REGISTRY if generic or n not in _GENERIC)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    The returned module has ``model_name`` and ``model_args`` attributes, so a checkpoint can
    rebuild it with ``create_model(model.model_name, **model.model_args)``.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models(generic=True))}")
    model = _REGISTRY[name](**kwargs)
    model.model_name = name
    model.model_args = dict(kwargs)
    return model


def resolved_args(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The factory's full arguments: its defaults overridden by ``kwargs`` (to compare configs)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    params = inspect.signature(_REGISTRY[name]).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty} | dict(kwargs)


def model_arg_types(name: str) -> dict[str, type | None]:
    """Each argument of model ``name``'s factory and its annotated plain type (int, float, bool, str; else None)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    hints = typing.get_type_hints(fn)
    plain = (int, float, bool, str)
    return {k: (hints.get(k) if hints.get(k) in plain else None) for k in inspect.signature(fn).parameters}


def args_problem(name: str, args: dict[str, Any]) -> str | None:
    """What is wrong with ``args`` for model ``name`` (an unknown argument or a wrong type), or None.

    The text names the key as ``args.<key>``, for the caller to prefix with where the args came from.
    """
    types = model_arg_types(name)
    for key, value in args.items():
        if key not in types:
            return f"args.{key} is not an argument of {name} (its arguments: {', '.join(types) or 'none'})"
        want = types[key]
        if want is None:
            continue
        ok = isinstance(value, int | float) if want is float else isinstance(value, want)
        if not ok or (isinstance(value, bool) and want is not bool):
            return f"args.{key} is {value!r} ({type(value).__name__}), {name} needs {want.__name__}"
    return None
