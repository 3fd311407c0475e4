"""Fused Triton VisualBackProp == the paper-style reference, kernel by kernel and net by net.

Triton decides at import time whether kernels are compiled or interpreted, from
``TRITON_INTERPRET``. So the device list is built per process: the main pytest process collects
only the ``cuda`` cases (compiled, marked ``gpu``: they run on a GPU machine) and
:func:`test_fused_cases_under_triton_interpreter`, which re-runs this very file in a subprocess
with ``TRITON_INTERPRET=1``, where only the ``cpu`` cases (Triton's interpreter) are collected.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vbp_live.attribution import VisualBackPropReference, create_method
from vbp_live.attribution.capture import SpatialOp
from vbp_live.attribution.vbp_reference import ones_deconv
from vbp_live.core.geometry import Geometry2d
from vbp_live.models import create_model, list_models

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not HAS_TRITON, reason="Triton is not installed (pip install triton): fused kernels untested")

# The interpreter run takes the CPU cases, the main process the compiled CUDA ones: neither collects the other's.
DEVICES = ["cpu"] if INTERPRETING else [pytest.param("cuda", marks=pytest.mark.gpu)]
ACTIVATIONS = [nn.ReLU, lambda: nn.ReLU(inplace=True), nn.ReLU6, nn.ELU, lambda: nn.LeakyReLU(0.1)]


@pytest.mark.skipif(INTERPRETING, reason="already inside the interpreter run")
def test_fused_cases_under_triton_interpreter():
    """Run this file's CPU cases through Triton's interpreter in a fresh process."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    r = subprocess.run(cmd, env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
    tail = r.stdout[-6000:] + r.stderr[-3000:]
    assert r.returncode == 0, f"interpreter run failed:\n{tail}"
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) >= 20, f"too few interpreter cases ran:\n{tail}"


def _kernels():
    from vbp_live.attribution import triton_kernels

    return triton_kernels


def _random_geometry(rng: random.Random, pool: bool = False) -> Geometry2d:
    k = (rng.randint(1, 4), rng.randint(1, 4))
    s = (rng.randint(1, 3), rng.randint(1, 3))
    d = (1, 1) if pool and rng.random() < 0.5 else (rng.randint(1, 3), rng.randint(1, 3))
    p = tuple(rng.randint(0, kk // 2) if pool else rng.randint(0, 2) for kk in k)
    return Geometry2d(k, s, p, d, ceil_mode=pool and rng.random() < 0.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(12))
def test_ones_gather_equals_ones_deconv(device, seed):
    """Gather form == an all-ones ConvTranspose2d (float64), incl. non-square, dilation, ceil mode."""
    rng = random.Random(seed)
    g = _random_geometry(rng, pool=seed % 3 == 2)
    target = tuple(rng.randint(g.dilation[i] * (g.kernel[i] - 1) + 1, 30) for i in range(2))
    n = g.out_size(*target)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 1, *n, generator=gen)  # (2, 1, h, w)
    mul = torch.rand(2, 1, *target, generator=gen) if seed % 2 else None
    got = _kernels().ones_gather(mask.to(device), g, target, None if mul is None else mul.to(device))
    deconv = ones_deconv(SpatialOp("op", "conv", g), n, target)
    want = deconv(mask.double())[:, :, : target[0], : target[1]]  # (2, 1, *target)
    want = want if mul is None else want * mul.double()
    assert got.shape == (2, 1, *target) and got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced", "float16", "float64"])
def test_channel_mean_any_layout_and_dtype(device, layout):
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(3, 37, 9, 13, generator=gen)  # (B, C, h, w), C not a power of two
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        t = t[:, 2:30:3, 1:, ::2]  # non-contiguous view
    elif layout != "contiguous":
        t = t.to(getattr(torch, layout))
    got = _kernels().channel_mean(t.to(device))
    want = t.double().mean(dim=1, keepdim=True)  # (B, 1, h, w)
    tol = 1e-3 if layout == "float16" else 1e-6
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.cpu().double(), want, rtol=tol, atol=tol)


def _random_chain(rng: random.Random) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A small conv -> activation chain (pools between some), geometry drawn at random."""
    c_in, size = rng.randint(1, 3), [rng.randint(14, 40), rng.randint(14, 40)]
    layers: list[nn.Module] = []
    c, added = c_in, 0
    for _ in range(rng.randint(1, 4)):
        for pool in ([True] if rng.random() < 0.3 else []) + [False]:
            g = _random_geometry(rng, pool=pool)
            try:
                out = g.out_size(*size)
            except ValueError:
                continue
            if pool:
                cls = nn.MaxPool2d if rng.random() < 0.5 or g.dilation != (1, 1) else nn.AvgPool2d
                extra = {"dilation": g.dilation} if cls is nn.MaxPool2d else {}
                layers.append(cls(g.kernel, g.stride, g.padding, ceil_mode=g.ceil_mode, **extra))
            else:
                c_out = rng.randint(1, 5)
                layers += [nn.Conv2d(c, c_out, g.kernel, g.stride, g.padding, g.dilation), rng.choice(ACTIVATIONS)()]
                c, added = c_out, added + 1
            size = list(out)
    if not added:
        layers += [nn.Conv2d(c, 2, (2, 3), (1, 2), (1, 0)), nn.ReLU()]
    return nn.Sequential(*layers), (c_in, rng.randint(14, 40), rng.randint(14, 40))


def _check_against_reference(model: nn.Module, x: torch.Tensor, device: str) -> None:
    model = model.to(device).eval()
    ref = VisualBackPropReference(model)
    fused = create_method("vbp_fused", model)
    x = x.to(device)
    got_raw, want_raw = fused.attribute(x, raw=True).double(), ref.attribute(x, raw=True).double()
    scale = want_raw.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
    torch.testing.assert_close((got_raw / scale).cpu(), (want_raw / scale).cpu(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.attribute(x).double().cpu(), ref.attribute(x).double().cpu(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(16))
def test_fused_equals_reference_on_random_geometries(device, seed):
    rng = random.Random(1000 + seed)
    for _ in range(50):  # redraw until the input fits the drawn chain
        model, shape = _random_chain(rng)
        try:
            with torch.no_grad():
                model(torch.zeros(1, *shape))
            break
        except RuntimeError:
            continue
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, -0.2, 0.6)  # mostly positive: deep masks stay non-zero
    _check_against_reference(model, torch.rand(2, *shape), device)


def _small_size(name: str) -> dict[str, int]:
    """A reduced input size the model accepts (height and width of its factory, if it has them)."""
    from vbp_live.models.registry import _REGISTRY

    params = inspect.signature(_REGISTRY[name]).parameters
    if not {"height", "width"} <= set(params):
        return {}
    for h, w in [(61, 61), (125, 125), (125, 160)]:
        try:
            create_model(name, height=h, width=w)
            return {"height": h, "width": w}
        except (RuntimeError, ValueError):
            continue
    return {}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list_models())
def test_fused_equals_reference_on_every_registered_net(device, name):
    torch.manual_seed(0)
    model = create_model(name, **_small_size(name))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial eval statistics
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    _check_against_reference(model, torch.rand(2, *model.in_shape), device)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_follows_a_crop_of_the_input(device):
    from vbp_live.models.blocks import Crop2d

    torch.manual_seed(4)
    model = nn.Sequential(Crop2d((3, 2, 1, 4)), nn.Conv2d(3, 4, 3, 2), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU())
    _check_against_reference(model, torch.rand(2, 3, 23, 30), device)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_positive_maps_of_an_elu_net(device):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2), nn.ELU(), nn.Conv2d(4, 5, 3), nn.ELU()).to(device).eval()
    x = torch.rand(2, 3, 19, 23, device=device)
    got = create_method("vbp_fused", model, positive=True).attribute(x).double().cpu()
    want = VisualBackPropReference(model, positive=True).attribute(x).double().cpu()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, VisualBackPropReference(model).attribute(x).double().cpu(), atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_maps_and_masks_match_reference(device):
    torch.manual_seed(3)
    model = create_model("signnet", height=61, width=61).to(device).eval()
    x = torch.rand(2, *model.in_shape, device=device)
    got = create_method("vbp_fused", model).explain(x, raw=True)
    want = VisualBackPropReference(model).explain(x, raw=True)
    assert len(got.maps) == len(want.maps) == 8 and len(got.masks) == len(want.masks) == 8
    for a, b in zip(got.maps + got.masks, want.maps + want.masks, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a.double().cpu(), b.double().cpu(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.output.cpu(), model(x).cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_fused_leaves_the_model_unchanged(device):
    model = create_model("signnet", height=61, width=61).to(device).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, *model.in_shape, device=device)
    create_method("vbp_fused", model).attribute(x)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())
