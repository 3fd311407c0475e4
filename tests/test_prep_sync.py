"""vbp_live.core.sync: interpolation, zero-order hold, gaps and drop reasons, with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbp_live.core.sync import (
    AFTER_LAST,
    BEFORE_FIRST,
    GAP,
    OK,
    clean_samples,
    drop_counts,
    sync_channel,
    sync_frames,
)

S = clean_samples(np.array([100, 200, 300, 600]), np.array([1.0, 3.0, 2.0, 8.0]))
F = np.array([50, 100, 150, 250, 300, 450, 600, 650])


def test_linear_known_answers():
    vals, why = sync_channel(F, S, "linear", max_gap_ns=None)
    np.testing.assert_array_equal(why, [BEFORE_FIRST, OK, OK, OK, OK, OK, OK, AFTER_LAST])
    np.testing.assert_allclose(vals[1:7], [1.0, 2.0, 2.5, 2.0, 5.0, 8.0])
    assert np.isnan(vals[0]) and np.isnan(vals[7])  # dropped, never filled with 0


def test_zoh_known_answers():
    vals, why = sync_channel(F, S, "zoh", max_gap_ns=None)
    np.testing.assert_array_equal(why, [BEFORE_FIRST, OK, OK, OK, OK, OK, OK, AFTER_LAST])
    np.testing.assert_allclose(vals[1:7], [1.0, 1.0, 3.0, 2.0, 2.0, 8.0])


def test_gap_linear_uses_bracket_width_and_exact_hits_pass():
    # samples 300 -> 600 are 300 ns apart: frames strictly inside are dropped with gap 250
    vals, why = sync_channel(F, S, "linear", max_gap_ns=250)
    np.testing.assert_array_equal(why, [BEFORE_FIRST, OK, OK, OK, OK, GAP, OK, AFTER_LAST])
    assert np.isnan(vals[5]) and vals[6] == 8.0


def test_gap_zoh_uses_age_of_held_sample():
    frames = np.array([300, 500, 550, 600])
    _, why = sync_channel(frames, S, "zoh", max_gap_ns=200)
    np.testing.assert_array_equal(why, [OK, OK, GAP, OK])  # ages 0, 200, 250, 0


def test_clean_samples_sorts_dedups_and_drops_nonfinite():
    s = clean_samples(np.array([30, 10, 20, 20, 40]), np.array([3.0, 1.0, 2.0, 9.0, np.nan]))
    np.testing.assert_array_equal(s.t, [10, 20, 30])
    np.testing.assert_array_equal(s.v, [1.0, 2.0, 3.0])  # the first of the two t=20 samples (in input order) wins
    assert (s.reordered, s.duplicates, s.non_finite) == (1, 1, 1)


def test_clean_samples_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        clean_samples(np.arange(3), np.arange(4.0))


def test_sync_frames_orders_dedups_and_names_first_failing_channel():
    steer = clean_samples(np.array([0, 1000]), np.array([0.0, 1.0]))
    speed = clean_samples(np.array([500, 2000]), np.array([10.0, 20.0]))
    fs = sync_frames(np.array([900, 100, 600, 600, 1500]), {"steering": steer, "speed": speed})
    np.testing.assert_array_equal(fs.t, [100, 600, 600, 900, 1500])
    np.testing.assert_array_equal(fs.order, [1, 2, 3, 0, 4])
    assert list(fs.reason) == ["speed_before_first", "", "duplicate_timestamp", "", "steering_after_last"]
    np.testing.assert_allclose(fs.values["steering"][[1, 3]], [0.6, 0.9])
    np.testing.assert_allclose(fs.values["speed"][[1, 3]], [10 + 10 * 100 / 1500, 10 + 10 * 400 / 1500])
    assert fs.reordered == 1
    assert drop_counts(fs.reason) == {"duplicate_timestamp": 1, "speed_before_first": 1, "steering_after_last": 1}


def test_no_samples_drops_everything():
    empty = clean_samples(np.array([], np.int64), np.array([]))
    vals, why = sync_channel(np.array([1, 2]), empty)
    assert (why == BEFORE_FIRST).all() and np.isnan(vals).all()


def test_unknown_method():
    with pytest.raises(ValueError, match="linear"):
        sync_channel(F, S, "cubic")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**12), min_size=2, max_size=40, unique=True),
    st.floats(-5, 5), st.floats(-3, 3),
    st.lists(st.integers(-10**11, 11 * 10**11), min_size=1, max_size=30),
)
def test_linear_is_exact_on_linear_signals_and_zoh_holds(times, a, b, frames):
    t = np.array(sorted(times), np.int64)
    s = clean_samples(t, a + b * t / 1e12)
    f = np.array(frames, np.int64)
    lin, why = sync_channel(f, s, "linear")
    inside = (f >= t[0]) & (f <= t[-1])
    assert ((why == OK) == inside).all()
    np.testing.assert_allclose(lin[inside], a + b * f[inside] / 1e12, atol=1e-9)
    zoh, _ = sync_channel(f, s, "zoh")
    idx = np.searchsorted(t, f[inside], side="right") - 1
    np.testing.assert_array_equal(zoh[inside], s.v[idx])
