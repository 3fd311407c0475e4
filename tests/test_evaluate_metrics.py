"""Pure metric math (vbp_live.core.metrics): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vbp_live.core import metrics as M


def test_rankdata_average_ties():
    assert M.rankdata(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert M.rankdata(np.array([[3.0, 1.0], [2.0, 2.0]])).tolist() == [4.0, 1.0, 2.5, 2.5]


def test_rankdata_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    a = np.random.default_rng(0).integers(0, 7, 200)
    np.testing.assert_allclose(M.rankdata(a), stats.rankdata(a))


def test_spearman_known_answers():
    a = np.arange(10.0)
    assert M.spearman(a, a ** 3) == pytest.approx(1.0)
    assert M.spearman(a, -a) == pytest.approx(-1.0)
    # classic example: ranks (1,2,3,4,5) vs (2,1,4,3,5): rho = 1 - 6·4/(5·24) = 0.8
    assert M.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert np.isnan(M.spearman(np.ones(4), a[:4]))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 5, 300) + rng.integers(0, 2, 300)
    assert M.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


def test_top_mask_and_iou():
    a = np.array([[5.0, 1.0], [3.0, 0.0]])
    b = np.array([[0.0, 1.0], [3.0, 5.0]])
    assert M.top_mask(a, 0.5).tolist() == [[True, False], [True, False]]
    assert M.top_mask(np.zeros(4), 0.5).tolist() == [True, True, False, False]  # ties by position
    # top-2 of a = {0, 2}, of b = {3, 2}: IoU = 1/3
    assert M.topk_iou(a, b, 0.5) == pytest.approx(1 / 3)
    assert M.topk_iou(a, a, 0.25) == 1.0
    with pytest.raises(ValueError):
        M.top_mask(a, 0.0)


def test_mass_fraction_and_ratio():
    r = np.array([[1.0, 3.0], [0.0, -4.0]])  # negative relevance is ignored
    m = np.array([[False, True], [False, True]])
    assert M.mass_fraction(r, m) == pytest.approx(0.75)
    assert M.mass_ratio(r, m) == pytest.approx(1.5)  # 75 % of the mass on 50 % of the area
    uniform = np.ones((4, 4))
    assert M.mass_ratio(uniform, np.eye(4, dtype=bool)) == pytest.approx(1.0)
    assert np.isnan(M.mass_ratio(r, np.zeros((2, 2), bool)))
    assert np.isnan(M.mass_fraction(-np.ones((2, 2)), m))


def test_mass_tally_pools_images_and_takes_fractional_coverage():
    r = np.array([[3.0, 1.0], [0.0, 0.0]])
    m = np.array([[True, False], [True, False]])
    assert M.MassTally().add(r, m).ratio() == pytest.approx(M.mass_ratio(r, m))
    # pooled: image 2 has no mass on the region; its weight is its mass, not 1/2 of the verdict
    t = M.MassTally().add(r, m).add(np.array([[0.0, 4.0], [0.0, 0.0]]), m)
    assert t.share() == pytest.approx(3 / 8) and t.area_share() == pytest.approx(0.5)
    assert t.ratio() == pytest.approx(0.75)
    half = M.MassTally().add(np.ones((2, 2)), np.full((2, 2), 0.5))  # every pixel half covered
    assert half.share() == pytest.approx(0.5) and half.ratio() == pytest.approx(1.0)
    assert np.isnan(M.MassTally().add(r, np.zeros((2, 2))).ratio())
    with pytest.raises(ValueError, match="differ in shape"):
        M.MassTally().add(r, np.zeros((3, 2)))


def test_region_scores_and_order():
    a = np.arange(20.0).reshape(4, 5)
    s = M.region_scores(a, 2)
    assert s.shape == (2, 3)
    assert s[0, 0] == 0 + 1 + 5 + 6 and s[1, 2] == 14 + 19  # edge region is 2x1
    assert s.sum() == a.sum()
    assert M.most_relevant_first(np.array([[1.0, 3.0], [3.0, 0.0]])).tolist() == [1, 2, 0, 3]
    tb = np.array([0.0, 0.1, 0.9, 0.5])
    assert M.most_relevant_first(np.array([1.0, 3.0, 3.0, 0.0]), tb).tolist() == [2, 1, 0, 3]


def test_aopc_and_auc():
    assert M.aopc([0.0, 1.0, 2.0, 3.0]) == pytest.approx(1.5)
    assert M.aopc([[0.0, 2.0], [0.0, 4.0]]) == pytest.approx(1.5)
    assert M.curve_auc([0.0, 1.0]) == pytest.approx(0.5)
    assert M.curve_auc([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert M.curve_auc([0.0, 2.0, 2.0], x=[0.0, 0.5, 1.0]) == pytest.approx(1.5)
    assert M.curve_auc([0.0, 2.0], x=[0.0, 0.25]) == pytest.approx(1.0)
