"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` (timm-style)."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model factory under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    The returned module has ``model_name`` and ``model_args`` attributes, so a checkpoint can
    rebuild it with ``create_model(model.model_name, **model.model_args)``.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
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
