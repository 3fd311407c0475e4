"""Efficient prediction difference analysis (Algorithms 2 and 3): conditional means, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from method_nets import tiny_steering
from torch import nn

from vbp_live.attribution import PredictionDifference, PredictionDifferenceGrad
from vbp_live.attribution.pda import PatchGaussian, plan_windows, window_starts


def test_window_starts_cover_the_axis():
    assert window_starts(10, 3, 3) == [0, 3, 6, 7]
    assert window_starts(9, 3, 3) == [0, 3, 6]
    assert window_starts(640, 10, 10)[-1] == 630 and len(window_starts(125, 10, 10)) == 13
    with pytest.raises(ValueError, match="larger"):
        window_starts(4, 5, 1)


def test_patches_stay_inside_and_contain_their_window():
    for w in plan_windows((12, 16), (3, 3), (7, 7), (2, 2)):
        assert 0 <= w.pr <= w.r and w.r + 3 <= w.pr + 7 <= 12
        assert 0 <= w.pc <= w.c and w.c + 3 <= w.pc + 7 <= 16
    assert len(plan_windows((125, 640), (10, 10), (18, 18), (10, 10))) == 13 * 64


def test_conditional_mean_is_the_gaussian_formula():
    """E[x_w | x_s] = μ_w + Σ_ws Σ_ss⁻¹ (x_s − μ_s), checked against numpy on the same patches."""
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(6, 2, 9, 9, generator=g).double()
    stats = PatchGaussian.fit(imgs, (4, 4), ridge=0.0)
    patches = torch.nn.functional.unfold(imgs, (4, 4)).permute(0, 2, 1).reshape(-1, 32).numpy()
    mu, cov = patches.mean(0), np.cov(patches, rowvar=False)
    inside = np.zeros((2, 4, 4), bool)
    inside[:, 1:3, 2:4] = True
    wi, si = np.flatnonzero(inside), np.flatnonzero(~inside)
    probe = patches[7]
    expected = mu[wi] + cov[np.ix_(wi, si)] @ np.linalg.solve(cov[np.ix_(si, si)], probe[si] - mu[si])
    w_idx, s_idx, a, b = stats.conditional((1, 2), (2, 2))
    assert w_idx.tolist() == wi.tolist() and s_idx.tolist() == si.tolist()
    np.testing.assert_allclose((b + a @ torch.from_numpy(probe[si])).numpy(), expected, rtol=1e-8, atol=1e-10)


def test_patch_equal_to_window_is_the_marginal_mean():
    imgs = torch.rand(3, 1, 8, 8).double()
    stats = PatchGaussian.fit(imgs, (3, 3))
    _, _, a, b = stats.conditional((0, 0), (3, 3))
    assert a.shape == (9, 0)
    torch.testing.assert_close(b, stats.mean)


def test_predictable_windows_carry_no_evidence():
    """Images that are constant up to tiny noise: the conditional mean restores each window, evidence ≈ 0."""
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(20, 1, 1, 1, generator=g).expand(20, 1, 12, 16) + 1e-4 * torch.rand(20, 1, 12, 16, generator=g)
    net = tiny_steering()
    pda = PredictionDifference(net, window=3, patch=7, sign="raw").fit(imgs)
    x = imgs[:2].contiguous()
    evidence = pda.attribute(x)
    scale = net(x).detach().abs().max()
    assert float(evidence.abs().max()) < 1e-3 * float(scale)


def test_model_looking_at_one_pixel():
    """y = 5·x[0, 0, 6, 9]: only windows covering that pixel carry evidence, equal to 5·(x − x')."""
    class OnePixel(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 5.0 * x[:, 0, 6, 9:10]

    x = torch.rand(2, 1, 12, 16)
    pda = PredictionDifference(OnePixel(), window=3, patch=5, sign="raw").fit(torch.rand(8, 1, 12, 16))
    ev = pda.attribute(x)
    windows, cond = pda.conditional_means(x)
    j = next(i for i, w in enumerate(windows) if w.r <= 6 < w.r + 3 and w.c <= 9 < w.c + 3)
    w = windows[j]
    expected = 5.0 * (x[:, 0, 6, 9] - cond[:, j, 0, 6 - w.r, 9 - w.c])
    torch.testing.assert_close(ev[:, 0, 6, 9], expected)
    outside = ev.clone()
    outside[:, :, w.r:w.r + 3, w.c:w.c + 3] = 0
    assert outside.abs().max() == 0


def test_algorithm3_equals_algorithm2_for_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 12 * 14, 1)).double().eval()
    x = torch.rand(3, 2, 12, 14, dtype=torch.float64)
    imgs = torch.rand(5, 2, 12, 14, dtype=torch.float64)
    a2 = PredictionDifference(lin, window=3, patch=5, stride=2, sign="raw").fit(imgs).attribute(x)
    a3 = PredictionDifferenceGrad(lin, window=3, patch=5, stride=2, sign="raw").fit(imgs).attribute(x)
    torch.testing.assert_close(a2, a3)
    assert a2.abs().max() > 0


def test_batch_size_does_not_change_the_result():
    net = tiny_steering()
    x = torch.rand(2, 1, 12, 16)
    imgs = torch.rand(4, 1, 12, 16)
    one = PredictionDifference(net, window=3, patch=5, batch_size=1).fit(imgs).attribute(x)
    many = PredictionDifference(net, window=3, patch=5, batch_size=50).fit(imgs).attribute(x)
    torch.testing.assert_close(one, many)


def test_classifier_keeps_the_predicted_class_for_perturbed_copies():
    net = tiny_steering(outputs=4)
    x = torch.rand(2, 1, 12, 16)
    imgs = torch.rand(4, 1, 12, 16)
    pred = net(x).argmax(1).tolist()
    pda = PredictionDifference(net, window=3, patch=5).fit(imgs)
    torch.testing.assert_close(pda.attribute(x), pda.attribute(x, target=pred))


def test_fitted_shape_mismatch_is_a_clear_error():
    pda = PredictionDifference(tiny_steering(), window=3, patch=5).fit(torch.rand(2, 1, 12, 16))
    with pytest.raises(ValueError, match="fitted for patches"):
        pda.attribute(torch.rand(1, 2, 12, 16))
    with pytest.raises(ValueError, match="window <= patch"):
        PredictionDifference(tiny_steering(), window=5, patch=3)
