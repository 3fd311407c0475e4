"""The HUD (layer 1): text content and sign conventions, glyph direction, drawing on any frame size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vbp_live.core.hud import Hud, HudInfo, HudStyle, error_color, hud_lines, wheel_tip


def test_error_is_actual_minus_predicted_in_degrees():
    info = HudInfo(index=3, time_s=0.15, pred_rad=math.radians(10.0), true_rad=math.radians(4.0), fps=29.7)
    assert info.error_deg == pytest.approx(-6.0)
    texts = [t for t, _ in hud_lines(info, HudStyle())]
    assert texts[0] == "pred  10.0° L"  # positive = left
    assert texts[1] == "true  4.0° L"
    assert texts[2] == "error 6.0° R"  # the driver steered 6° further right than predicted
    assert "#3" in texts[3] and "0.15 s" in texts[3] and "29.7 fps" in texts[3]


def test_without_truth_there_is_no_error_line():
    info = HudInfo(index=0, time_s=0.0, pred_rad=-0.2)
    assert info.error_deg is None
    texts = [t for t, _ in hud_lines(info, HudStyle())]
    assert len(texts) == 2 and not any(t.startswith(("true", "error")) for t in texts)


def test_error_colour_thresholds():
    style = HudStyle(error_warn_deg=1.0, error_bad_deg=5.0)
    assert error_color(0.5, style) != error_color(2.0, style) != error_color(-7.0, style)
    assert error_color(2.0, style) == error_color(-2.0, style)


def test_wheel_turns_left_for_positive_angles():
    c = (100, 100)
    assert wheel_tip(c, 50, 0.0) == (100, 50)  # straight ahead: marker at the top
    left, right = wheel_tip(c, 50, 0.5), wheel_tip(c, 50, -0.5)
    assert left[0] < 100 < right[0]  # positive = left turn = counter-clockwise on screen
    assert wheel_tip(c, 50, math.pi / 2) == (50, 100)


@pytest.mark.parametrize("shape", [(480, 640, 3), (125, 640, 3), (126, 160, 3), (40, 40, 3), (1080, 1920, 3)])
def test_hud_draws_on_any_frame_size(shape):
    frame = np.full(shape, 128, np.uint8)
    out = Hud().annotate(frame, HudInfo(7, 0.35, 0.1, 0.12, 30.0, note="test"))
    assert out is frame and out.shape == shape
    assert (out != 128).any()


def test_glyph_and_panel_can_be_turned_off():
    a = Hud(HudStyle(glyph=False)).annotate(np.full((240, 320, 3), 128, np.uint8), HudInfo(0, 0.0, 0.3, 0.1))
    b = Hud(HudStyle(glyph=True)).annotate(np.full((240, 320, 3), 128, np.uint8), HudInfo(0, 0.0, 0.3, 0.1))
    assert (a[:, 240:] == 128).all() and (b[:, 240:] != 128).any()  # the glyph sits top right


def test_hud_refuses_non_bgr_frames():
    with pytest.raises(ValueError, match="BGR"):
        Hud().annotate(np.zeros((10, 10), np.uint8), HudInfo(0, 0.0, 0.0))
