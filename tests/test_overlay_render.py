"""The overlay's look: paper vs the visible default, temporal normalization and flicker, colour maps,
the crop band outline, the HUD's L/R text and glyph, the timeline strip, sizes, and the CLI summary."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from stream_util import CROP, H, W, coded_frame, tiny_checkpoint

from vbp_live.cli.main import main
from vbp_live.cli.options import COLOR_CHOICES, RENDER_CHOICES
from vbp_live.core.colormaps import COLOR_NAMES, colormap_lut
from vbp_live.core.hud import Hud, HudInfo, angle_text, draw_wheel, put_text
from vbp_live.core.overlay import RENDER_MODES, VISIBLE_TINT, MaskStyle, tint_weights, visibility
from vbp_live.core.timeline import Timeline
from vbp_live.io.frames import FrameRecord
from vbp_live.stream.engine import Prediction
from vbp_live.stream.normalize import MaskNormalizer, OverlayMeter
from vbp_live.stream.render import OverlayRenderer, raw_mask


def heavy_tailed_mask(seed: int = 0, shape: tuple[int, int] = (125, 160)) -> np.ndarray:
    """A raw mask shaped like VisualBackProp's on real video: a few strong lines over a weak field."""
    rng = np.random.default_rng(seed)
    m = rng.exponential(1.0, shape).astype(np.float32)  # (h, w) weak field
    m[40:44, 20:140] += 300.0  # a "lane marking"
    m[80:83, 30:90] += 120.0
    m[60:100, 100:150] += 25.0  # a broad, weaker area
    return m


def redness(img: np.ndarray) -> np.ndarray:
    return img[..., 2].astype(int) - img[..., :2].max(axis=2)


def test_cli_choices_match_the_library():
    assert RENDER_CHOICES == RENDER_MODES and COLOR_CHOICES == COLOR_NAMES


def test_paper_mode_is_the_papers_min_max_red_blend():
    m = heavy_tailed_mask()
    frame = np.full((H, W, 3), 100, np.uint8)
    r = OverlayRenderer(CROP, None, mask_style=MaskStyle(mode="paper"), outline=False)
    out = r.overlay(FrameRecord(0, 0.0, frame), m)
    y0, y1, x0, x1 = CROP.box(H, W)
    a = cv2.resize((m - m.min()) / (m.max() - m.min()), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) * 0.7
    want = np.clip(100 * (1 - a[..., None]) + np.array([0, 0, 255]) * a[..., None] + 0.5, 0, 255)
    assert np.abs(out[y0:y1].astype(float) - want).max() <= 1.0
    assert (out[:y0] == 100).all()


def test_default_shows_most_of_the_mask_mass_but_not_the_whole_band():
    m = heavy_tailed_mask()
    paper = visibility(m, tint_weights(np.clip(m / m.max(), 0, 1), MaskStyle(mode="paper")))
    _, weights = MaskNormalizer(MaskStyle())(m)
    default = visibility(m, weights)
    assert paper.mass_visible < 0.8 and paper.band_tinted < 0.05  # the faint paper look
    assert default.mass_visible > 0.9  # nearly all of what the network weighs is seen
    assert 0.05 < default.band_tinted < 0.5  # but the band is not painted over
    assert weights[weights > 0].min() >= MaskStyle().min_tint >= VISIBLE_TINT  # whatever is drawn is visible


def test_temporal_scale_shows_a_dim_frame_dim_and_reset_forgets():
    bright = heavy_tailed_mask()
    frame_mode, temporal = MaskNormalizer(MaskStyle(mode="frame")), MaskNormalizer(MaskStyle(halflife_s=1.0))
    for i in range(20):
        frame_mode(bright, i / 20)
        temporal(bright, i / 20)
    dim = bright * 0.3
    _, w_frame = frame_mode(dim, 1.0)
    _, w_temp = temporal(dim, 1.0)
    _, w_ref = MaskNormalizer(MaskStyle(mode="frame"))(bright)
    assert np.allclose(w_frame, w_ref, atol=1e-5), "per frame, a dim frame looks as confident as a bright one"
    assert w_temp.mean() < 0.8 * w_ref.mean(), "smoothed over time, the dim frame is drawn dimmer"
    temporal.reset()
    _, w_reset = temporal(dim, 1.05)
    assert np.allclose(w_reset, w_ref, atol=1e-5), "after reset the first frame sets the scale afresh"


def test_temporal_normalization_flickers_less_than_per_frame_scaling():
    base = heavy_tailed_mask()
    rng = np.random.default_rng(1)
    frames = []
    for i in range(40):  # a static scene where a strong object comes and goes (a passing car)
        m = base * rng.uniform(0.95, 1.05) + rng.exponential(0.2, base.shape).astype(np.float32)
        if i % 3 == 0:
            m[5:30, 5:60] += 2000.0
        frames.append(m)
    flicker = {}
    for mode in RENDER_MODES:
        norm, meter = MaskNormalizer(MaskStyle(mode=mode, halflife_s=1.0)), OverlayMeter()
        for i, m in enumerate(frames):
            meter.add(m, norm(m, i / 30)[1])
        flicker[mode] = meter.summary()
    assert flicker["temporal"]["flicker"] < 0.75 * flicker["frame"]["flicker"], flicker
    assert flicker["temporal"]["relative_flicker"] < flicker["paper"]["relative_flicker"], flicker


def test_raw_mask_undoes_the_engine_min_max():
    m = heavy_tailed_mask() + 2.0
    lo, hi = float(m.min()), float(m.max())
    pred = Prediction(0.0, (m - lo) / (hi - lo), (lo, hi))
    np.testing.assert_allclose(raw_mask(pred), m, rtol=1e-5)


@pytest.mark.parametrize("name", COLOR_NAMES)
def test_colour_maps_paint_strong_values_visibly(name):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    assert lut[255].astype(int).sum() > 150, "strong values are bright, not black"
    m = heavy_tailed_mask()
    r = OverlayRenderer(CROP, None, mask_style=MaskStyle(color=name), outline=False)
    out = r.overlay(FrameRecord(0, 0.0, np.full((H, W, 3), 128, np.uint8)), m)
    y0 = CROP.box(H, W)[0]
    assert (out[y0 + 41, 60].astype(int) - 128).__abs__().max() > 40  # the lane line is tinted


def test_crop_band_outline_is_thin_and_only_at_the_band():
    frame = np.full((H, W, 3), 60, np.uint8)
    zero = np.zeros((125, 160), np.float32)
    out = OverlayRenderer(CROP, None).overlay(FrameRecord(0, 0.0, frame), zero)
    y0, y1, x0, x1 = CROP.box(H, W)
    changed = (out != 60).any(axis=2)
    assert changed[y0].all() and changed[y1 - 1].all() and changed[y0:y1, x0].all()
    assert changed.sum() == 2 * W + 2 * (y1 - y0) - 4  # one pixel wide at 240 rows
    assert (out[changed] > 60).all() and (out[changed] < 200).all()  # lighter, not white


def test_hud_says_left_and_right_with_degrees():
    assert angle_text(10.24) == "10.2° L" and angle_text(-3.0) == "3.0° R" and angle_text(0.01) == "0.0°"
    a, b = np.zeros((40, 200, 3), np.uint8), np.zeros((40, 200, 3), np.uint8)
    put_text(a, "10.2° L", (5, 30), 0.8, (255, 255, 255), 1)
    put_text(b, "10.2 L", (5, 30), 0.8, (255, 255, 255), 1)
    assert (a != b).any() and "?" not in "10.2° L".encode("ascii", "replace").decode()[:4]


def test_glyph_shows_actual_and_predicted_apart_even_when_equal():
    frame = np.zeros((540, 960, 3), np.uint8)
    draw_wheel(frame, 0.0, 0.0)
    green = (frame[..., 1] > 150) & (frame[..., 0] < 120) & (frame[..., 2] < 120)
    blue = (frame[..., 0] > 200) & (frame[..., 1] > 150) & (frame[..., 2] < 80)
    assert green.sum() > 50 and blue.sum() > 50, "both positions are visible where they coincide"
    ys, xs = np.nonzero(green | blue)
    assert xs.max() - xs.min() > 0.15 * 540, "the glyph is large (was ~60 px)"


def test_timeline_shades_the_error_in_a_bottom_strip():
    tl = Timeline(seconds=2.0)
    for i in range(40):
        tl.add(i / 20, 5.0 * math.sin(i / 5), 5.0 * math.sin(i / 5) + 3.0)
    frame = np.full((360, 480, 3), 128, np.uint8)
    tl.draw(frame)
    y0 = tl.box(frame)[0]
    assert (frame[:y0] == 128).all() and y0 > 0.75 * 360
    strip = frame[y0:]
    orange = (strip[..., 2] > strip[..., 0] + 40) & (strip[..., 1] > 50)
    assert orange.sum() > 100, "the error between predicted and actual is shaded"
    assert len(tl.points) <= 41 and tl.points[0][0] >= 1.95 - 2.0


@pytest.mark.parametrize(("shape", "want"), [((120, 160, 3), (360, 480)), ((1080, 1920, 3), (1080, 1920))])
def test_small_frames_are_enlarged_and_the_hud_scales(shape, want):
    img = np.full(shape, 90, np.uint8)
    r = OverlayRenderer(CROP, None, min_height=360)
    out = r.overlay(FrameRecord(0, 0.0, img), heavy_tailed_mask())
    assert out.shape[:2] == want
    hud = Hud().annotate(out.copy(), HudInfo(1, 0.05, 0.2, 0.1, 20.0))
    rows = np.flatnonzero((hud != out).any(axis=(1, 2)))
    assert rows.max() > 0.12 * want[0], "text and glyph grow with the frame"


def test_run_prints_and_stores_flicker_and_visibility(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:03d}.png"), coded_frame(i))
    stats = tmp_path / "s.json"
    code = main(["run", str(folder), "-c", str(ckpt), "--frames-dir", str(tmp_path / "out"), "--quiet",
                 "--threads", "1", "--stats-json", str(stats), "--render", "frame", "--color", "cividis",
                 "--timeline", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "overlay: --render frame --color cividis: flicker" in text
    o = json.loads(stats.read_text())["overlay"]
    assert o["render"] == "frame" and o["frames"] == 6 and 0 <= o["flicker"] <= 1 and 0 < o["mass_visible"] <= 1
    assert cv2.imread(str(tmp_path / "out" / "000000.png")).shape == (H * 2, W * 2, 3)  # 240 rows -> 480


def test_bad_styles_are_refused():
    with pytest.raises(ValueError, match="render mode"):
        MaskStyle(mode="pretty")
    with pytest.raises(ValueError, match="colour"):
        MaskStyle(color="rainbow")
    with pytest.raises(ValueError, match="min_tint"):
        MaskStyle(alpha=0.1, min_tint=0.25)
