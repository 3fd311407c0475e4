"""The road's curvature profile and its ``sharp_curves`` share (the CLI option: test_synth_randomized.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vbp_live.synth import DriveConfig, simulate_drive
from vbp_live.synth.road import DS, SHARP_CURVES, curvature_profile

SHARP_KAPPA = 1.0 / 90.0  # sharp curves have radius 35-90 m; gentle ones 250-1000 m


def _sharp_share(share: float, seeds: range = range(30), length: float = 3000.0) -> float:
    """The share of road length (after the lead straight) that lies in sharp curves."""
    lead = int(80.0 / DS)
    kappas = [curvature_profile(np.random.default_rng(s), length, sharp_curves=share)[lead:] for s in seeds]
    k = np.abs(np.concatenate(kappas))
    return float(np.mean(k >= SHARP_KAPPA - 1e-9))


def test_default_share_is_the_earlier_roads():
    """The default reproduces the profile of the fixed probabilities 0.35 / 0.35 / 0.30, sample for sample."""
    assert SHARP_CURVES == 0.30 and DriveConfig().sharp_curves == SHARP_CURVES
    for seed in range(5):
        a = curvature_profile(np.random.default_rng(seed), 2000.0)
        b = curvature_profile(np.random.default_rng(seed), 2000.0, sharp_curves=0.30)
        np.testing.assert_array_equal(a, b)


def test_share_controls_how_much_of_the_road_turns_sharply():
    none, low, high, every = (_sharp_share(p) for p in (0.0, 0.3, 0.7, 1.0))
    assert none == 0.0
    assert 0.05 < low < high < every
    assert every > 0.5  # only the 15-40 m ramps between sharp sections are below radius 90 m


def test_a_drive_with_more_sharp_curves_steers_more():
    """Same seed, same length: the steering labels follow the road (more sharp sections, larger angles)."""
    def p90(share: float) -> float:
        swa = [simulate_drive(DriveConfig(seed=s, frames=1200, sharp_curves=share, start_stopped=False)).steering
               for s in range(4)]
        return float(np.percentile(np.abs(np.concatenate(swa)), 90))
    assert p90(0.9) > 1.5 * p90(0.1)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_out_of_range_share_is_refused(bad):
    with pytest.raises(ValueError, match="sharp_curves"):
        curvature_profile(np.random.default_rng(0), 100.0, sharp_curves=bad)
    with pytest.raises(ValueError, match="sharp_curves"):
        DriveConfig(sharp_curves=bad)


def test_ground_truth_written_before_the_option_loads_with_the_default():
    old = DriveConfig(seed=3).to_dict()
    del old["sharp_curves"]
    assert DriveConfig.from_dict(old).sharp_curves == SHARP_CURVES
