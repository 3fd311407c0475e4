"""Model-parameter randomization sanity check (Adebayo et al., arXiv 1810.03292), cascading top-down.

On a copy of the model (the caller's model is never touched), the weighted layers (``Conv2d``,
``Linear``) are re-initialized one at a time from the output towards the input, cumulatively,
with seeded Kaiming-uniform weights (PyTorch's default initialization) and zero biases.
After each step every method's maps are recomputed and compared with the maps of the trained
model by Spearman rank correlation, per frame, then averaged. A method whose maps stay the same
while the layers that produce the output are destroyed does not explain the output.
BatchNorm statistics are kept (randomizing them would change the input scale of every layer,
not the learned function alone).

VisualBackProp uses only the forward activations of the conv layers, so randomizing the fully
connected head cannot change it: that is what this check measures, and the report says so
with the measured numbers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vbp_live.core.metrics import spearman
from vbp_live.evaluate.figures import build_methods, compute_maps


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN if none: e.g. every randomized map was constant)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d / Linear, in registration order (the forward order for chains)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def randomize_layer(m: nn.Module, seed: int) -> None:
    """Seeded re-initialization: Kaiming-uniform weights (a = √5, PyTorch's default), zero bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
        m.weight.copy_(w)
        if getattr(m, "bias", None) is not None:
            m.bias.zero_()


def cascading_randomization(
    model: nn.Module, names: Sequence[str], x: torch.Tensor, base_maps: dict[str, np.ndarray], seed: int = 0,
    batch: int = 8, options: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None, fit_images: torch.Tensor | None = None,
) -> tuple[list[str], dict[str, list[float]]]:
    """Randomize layers top-down; per step, mean Spearman ρ between each method's maps and ``base_maps``.

    Args:
        model: the trained model (copied, never modified).
        names: attribution methods.
        x: frames (N, C, H, W); ``base_maps[name]`` are the trained model's maps for them (N, H, W).
        seed: seeds step k's weights with ``seed + k``.
        fit_images: the image set methods with ``fit`` (PDA) were fitted on for ``base_maps``
            (default: ``x``), so only the weights differ.

    Returns:
        the randomized layer names in order (top first) and ``{method: [ρ after step 1, 2, ...]}``.
    """
    rand = copy.deepcopy(model)
    layers = list(reversed(weighted_layers(rand)))
    methods = build_methods(rand, names, options, fit_images=x if fit_images is None else fit_images)
    rhos: dict[str, list[float]] = {n: [] for n in names}
    for k, (lname, layer) in enumerate(layers):
        randomize_layer(layer, seed + k)
        for name, method in methods.items():
            maps, _ = compute_maps(method, x, batch, warmup=False)
            rhos[name].append(finite_mean([spearman(a, b) for a, b in zip(maps, base_maps[name], strict=True)]))
        if progress:
            progress(lname)
    return [f"{n} ({type(m).__name__})" for n, m in layers], rhos
