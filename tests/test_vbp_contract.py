"""VisualBackProp's contract: shapes, range, dtype, no side effects, clear errors, no leaks."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
import torch.nn.functional as F
from method_nets import hooks_left
from torch import nn

from vbp_live.attribution import (
    AttributionResult,
    UnsupportedModelError,
    VBPMaps,
    VisualBackProp,
    VisualBackPropReference,
)


def tiny(inplace: bool = False, dropout: bool = False) -> nn.Module:
    layers = [nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(inplace=inplace)]
    if dropout:
        layers.append(nn.Dropout2d(0.5))
    layers += [nn.BatchNorm2d(4), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(inplace=inplace)]
    layers += [nn.Flatten(), nn.LazyLinear(1)]
    model = nn.Sequential(*layers)
    model(torch.zeros(2, 1, 17, 23))
    return model


def no_hooks_left(model: nn.Module) -> bool:
    """No hooks of any kind remain (see :func:`method_nets.hooks_left`)."""
    return hooks_left(model) == 0


@pytest.mark.parametrize("batch", [1, 5])
def test_shape_range_device_dtype(batch):
    model = tiny().eval()
    x = torch.rand(batch, 1, 17, 23)
    mask = VisualBackProp(model).attribute(x)
    assert mask.shape == (batch, 1, 17, 23) and mask.dtype == torch.float32 and mask.device == x.device
    assert mask.min() >= 0 and mask.max() <= 1 and torch.allclose(mask.amax(dim=(1, 2, 3)), torch.ones(batch))
    assert VisualBackProp(model.double()).attribute(x.double()).dtype == torch.float64


def test_each_image_is_its_own_batch_of_one():
    model = tiny().eval()
    x = torch.rand(4, 1, 17, 23)
    vbp = VisualBackProp(model)
    batched = vbp.attribute(x)
    singles = torch.cat([vbp.attribute(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(batched, singles, atol=1e-6)


def test_inference_mode_and_no_grad_needed():
    model = tiny().eval()
    x = torch.rand(2, 1, 17, 23, requires_grad=True)
    with torch.inference_mode():
        a = VisualBackProp(model).attribute(x.detach())
    b = VisualBackProp(model).attribute(x)
    assert torch.allclose(a, b) and not b.requires_grad


@pytest.mark.parametrize("cls", [VisualBackProp, VisualBackPropReference])
def test_no_side_effects_in_train_mode(cls):
    model = tiny(dropout=True).train()
    state = copy.deepcopy(model.state_dict())
    x = torch.rand(3, 1, 17, 23)
    rng = torch.get_rng_state()
    cls(model).attribute(x)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # weights and BatchNorm statistics untouched
    assert no_hooks_left(model)


def test_eval_mode_kept_and_no_hooks_even_on_error():
    model = tiny().eval()
    vbp = VisualBackProp(model)
    vbp.attribute(torch.rand(1, 1, 17, 23))
    with pytest.raises(RuntimeError):
        vbp.attribute(torch.rand(1, 3, 17, 23))  # wrong channel count: the forward fails
    assert not model.training and no_hooks_left(model)


def test_inplace_relu_gives_the_same_mask():
    torch.manual_seed(0)
    a = tiny(inplace=False).eval()
    b = tiny(inplace=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 17, 23)
    assert torch.equal(VisualBackProp(a).attribute(x), VisualBackProp(b).attribute(x))
    assert torch.allclose(VisualBackPropReference(b).attribute(x), VisualBackProp(b).attribute(x), atol=1e-5)


def test_all_zero_map_gives_zero_mask_not_nan():
    model = tiny().eval()
    with torch.no_grad():
        model[1].bias.fill_(-100.0)  # first ReLU outputs all zeros
    for cls in (VisualBackProp, VisualBackPropReference):
        mask = cls(model).attribute(torch.rand(2, 1, 17, 23))
        assert torch.isfinite(mask).all() and (mask == 0).all()


@pytest.mark.parametrize("cls", [VisualBackProp, VisualBackPropReference])
def test_raw_and_maps(cls):
    model = tiny().eval()
    x = torch.rand(2, 1, 17, 23)
    res = cls(model).explain(x, raw=True)
    assert isinstance(res, VBPMaps)
    assert [tuple(m.shape) for m in res.maps] == [(2, 1, 15, 21), (2, 1, 7, 10)]
    assert [tuple(m.shape) for m in res.masks] == [(2, 1, 15, 21), (2, 1, 7, 10)]
    assert torch.allclose(res.masks[1], res.maps[1]) and res.output.shape == (2, 1)
    assert res.mask.amax() > 1 or res.mask.amax() < 1  # raw: not min-max normalized
    assert torch.allclose(res.mask, cls(model).attribute(x, raw=True))


@pytest.mark.parametrize("cls", [VisualBackProp, VisualBackPropReference])
def test_run_gives_output_and_mask_of_one_forward(cls):
    model = tiny().eval()
    x = torch.rand(3, 1, 17, 23)
    res = cls(model).run(x)
    assert type(res) is AttributionResult
    assert torch.equal(res.output, model(x).detach()) and torch.equal(res.mask, cls(model).attribute(x))
    assert no_hooks_left(model)


def test_no_conv_activation_pair_is_a_clear_error():
    with pytest.raises(UnsupportedModelError, match="no usable conv -> activation"):
        VisualBackProp(nn.Sequential(nn.Flatten(), nn.Linear(4, 1), nn.ReLU())).attribute(torch.rand(1, 1, 2, 2))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 2, 3)
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        h = self.r1(self.c1(x))
        h = self.r2(self.c2(h)) + h  # residual add
        return self.r3(self.c3(h)).mean()


def test_residual_add_is_refused_not_guessed():
    with pytest.raises(UnsupportedModelError, match="residual add"):
        VisualBackProp(Residual()).attribute(torch.rand(1, 1, 9, 9))


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3)
        self.ra, self.rb, self.rs = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        s = self.rs(self.stem(x))
        return self.ra(self.a(s)).sum() + self.rb(self.b(s)).sum()


def test_parallel_branches_are_refused():
    with pytest.raises(UnsupportedModelError, match="branches"):
        VisualBackProp(Branches()).attribute(torch.rand(1, 1, 9, 9))


class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 3, 3, stride=2)

    def forward(self, x):
        return F.relu(self.c2(F.relu(self.c1(x / 2))))


def test_explicit_layers_override():
    torch.manual_seed(0)
    func = FunctionalRelu()
    with pytest.raises(UnsupportedModelError):
        VisualBackProp(func).attribute(torch.rand(1, 1, 11, 11))
    mod = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3, stride=2), nn.ReLU())
    mod[0].load_state_dict(func.c1.state_dict())
    mod[2].load_state_dict(func.c2.state_dict())
    x = torch.rand(2, 1, 11, 11)
    explicit = VisualBackProp(func, layers=["c1", "c2"]).attribute(x)
    assert torch.allclose(explicit, VisualBackProp(mod).attribute(x / 2), atol=1e-6)
    # choosing only the deeper map: the mask goes through both convs' geometry without a product
    only_deep = VisualBackProp(mod, layers=[mod[3]]).attribute(x, raw=True)
    assert only_deep.shape == (2, 1, 11, 11)


def test_reused_activation_module():
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Conv2d(1, 3, 3), relu, nn.Conv2d(3, 3, 3), relu)
    separate = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3), nn.ReLU())
    separate.load_state_dict(shared.state_dict())
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(VisualBackProp(shared).attribute(x), VisualBackProp(separate).attribute(x))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_flat_over_1000_batches():
    model = tiny().eval()
    vbp = VisualBackProp(model)
    x = torch.rand(8, 1, 17, 23)
    for _ in range(100):  # warm up allocator caches
        vbp.attribute(x)
    gc.collect()
    before = _rss_bytes()
    for _ in range(1000):
        vbp.attribute(x)
    gc.collect()
    assert _rss_bytes() - before < 8 * 2**20  # < 8 MB drift over 1000 batches
    assert no_hooks_left(model)
