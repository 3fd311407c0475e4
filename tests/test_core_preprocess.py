"""The one crop/grayscale/resize function and the mapping of masks back onto frames."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vbp_live.core.overlay import overlay_mask
from vbp_live.core.preprocess import CROP_PRESETS, CropSpec, mask_to_frame, preprocess_frame


def test_presets_give_the_nets_input_sizes():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert preprocess_frame(frame, CROP_PRESETS["netsvf"]).shape == (125, 640)
    assert preprocess_frame(frame, CROP_PRESETS["nethvf"]).shape == (125, 351)
    svf, hvf = CROP_PRESETS["netsvf"], CROP_PRESETS["nethvf"]
    ratio = (hvf.bottom - hvf.top) / (svf.bottom - svf.top)
    assert 1.7 < ratio < 2.0  # NetHVF: about twice the vertical field of view
    assert svf.box(480, 640) == (264, 389, 0, 640)  # 125 rows at full resolution


def test_crop_takes_the_band_and_grayscale_matches_opencv():
    import cv2

    frame = np.zeros((480, 640, 3), np.uint8)
    frame[264:389, :, 2] = 200  # red band exactly where NetSVF looks
    out = preprocess_frame(frame, CROP_PRESETS["netsvf"])
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(out, gray[264:389])


def test_resolution_independent_and_color_option():
    spec = CropSpec(top=0.5, bottom=1.0, out_height=40, out_width=80, color="bgr")
    for shape in [(160, 320, 3), (540, 960, 3), (480, 640)]:
        out = preprocess_frame(np.full(shape, 77, np.uint8), spec)
        assert out.shape == (40, 80, 3) and (out == 77).all()


def test_mask_maps_back_inside_the_band_only():
    spec = CROP_PRESETS["nethvf"]
    mask = np.ones((125, 351), np.float32)
    full = mask_to_frame(mask, spec, (480, 640, 3))
    y0, y1, x0, x1 = spec.box(480, 640)
    assert full.shape == (480, 640)
    assert np.allclose(full[y0:y1, x0:x1], 1.0) and full[:y0].sum() == 0 and full[y1:].sum() == 0


def test_mask_alignment_roundtrip():
    spec = CROP_PRESETS["nethvf"]
    frame = np.zeros((480, 640), np.uint8)
    frame[300:320, 100:120] = 255  # a bright square
    net_in = preprocess_frame(frame, spec)
    back = mask_to_frame(net_in.astype(np.float32) / 255, spec, frame.shape)
    ys, xs = np.nonzero(back > 0.5)
    assert abs(ys.mean() - 309.5) < 1.5 and abs(xs.mean() - 109.5) < 1.5


@pytest.mark.parametrize("bad", [dict(top=0.6, bottom=0.5), dict(left=0.5, right=0.2), dict(out_height=0),
                                 dict(interpolation="cubic-ish")])
def test_bad_specs_are_clear_errors(bad):
    with pytest.raises(ValueError):
        CropSpec(**{**dict(top=0.5, bottom=1.0, out_height=10, out_width=10), **bad})


def test_dict_roundtrip_and_unknown_keys():
    spec = CROP_PRESETS["netsvf"]
    assert CropSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown crop keys"):
        CropSpec.from_dict({**spec.to_dict(), "zoom": 2})


def test_135_rows_keeps_the_scale():
    spec = CROP_PRESETS["netsvf"].with_height(135)
    assert spec.box(480, 640)[1] - spec.box(480, 640)[0] == 135


def test_non_uint8_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame(np.zeros((10, 10), np.float32), CROP_PRESETS["netsvf"])


def test_overlay_is_red_where_the_mask_is():
    frame = np.full((20, 30), 100, np.uint8)
    mask = np.zeros((20, 30), np.float32)
    mask[5:10, 5:10] = 1.0
    out = overlay_mask(frame, mask, alpha=0.8)
    assert out.shape == (20, 30, 3)
    assert (out[7, 7] == [20, 20, 224]).all()  # 100*0.2 + (0,0,255)*0.8
    assert (out[0, 0] == 100).all()


# --- colour spaces, pixel crops, scaling (issue 16) -------------------------------------------------------------


def _old_preprocess(frame: np.ndarray, top, bottom, oh, ow, left=0.0, right=1.0, grayscale=True, interp="area"):
    """The preprocessing as it was before colour spaces existed (the defaults must stay bit-identical)."""
    import cv2

    h, w = frame.shape[:2]
    band = frame[round(top * h):round(bottom * h), round(left * w):round(right * w)]
    if grayscale and band.ndim == 3:
        band = cv2.cvtColor(band, cv2.COLOR_BGR2GRAY)
    elif not grayscale and band.ndim == 2:
        band = cv2.cvtColor(band, cv2.COLOR_GRAY2BGR)
    flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interp]
    if band.shape[:2] != (oh, ow):
        band = cv2.resize(band, (ow, oh), interpolation=flag)
    return band


@pytest.mark.parametrize("shape", [(480, 640, 3), (160, 320, 3), (540, 960), (97, 131, 3)])
@pytest.mark.parametrize("gray", [True, False])
@pytest.mark.parametrize("interp", ["area", "linear", "nearest"])
def test_defaults_are_bit_identical_to_the_old_function(shape, gray, interp):
    frame = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    for name, p in CROP_PRESETS.items():
        old = dict(top=p.top, bottom=p.bottom, out_height=p.out_height, out_width=p.out_width, left=0.1, right=0.9,
                   grayscale=gray, interpolation=interp)
        spec = CropSpec.from_dict(old)  # an old dict (grayscale, no colour/scaling keys) still loads
        want = _old_preprocess(frame, p.top, p.bottom, p.out_height, p.out_width, 0.1, 0.9, gray, interp)
        np.testing.assert_array_equal(preprocess_frame(frame, spec), want, err_msg=name)
        assert spec.color == ("gray" if gray else "bgr") and spec.scale == (1 / 255,) and spec.layout == "nchw"


def test_default_network_input_is_bit_identical():
    import torch

    from vbp_live.models import frames_to_input

    frames = np.random.default_rng(1).integers(0, 256, (2, 12, 20), dtype=np.uint8)
    want = torch.as_tensor(frames).unsqueeze(1).float().mul_(1.0 / 255.0)  # (2, 1, 12, 20): the old conversion
    assert torch.equal(frames_to_input(frames), want)
    assert torch.equal(frames_to_input(frames, spec=CropSpec(0.0, 1.0, 12, 20)), want)


def test_old_and_new_dicts_round_trip():
    spec = CropSpec(0.1, 0.9, 8, 16, color="yuv", channel_order="vuy", scale=(2.0, 1.0, 0.5), offset=(-1.0,))
    d = spec.to_dict()
    assert d["scale"] == [2.0, 1.0, 0.5] and CropSpec.from_dict(d) == spec
    import yaml

    assert CropSpec.from_dict(yaml.safe_load(yaml.safe_dump(d))) == spec  # dataset manifests are YAML
    assert CropSpec.from_dict({"top": 0.5, "bottom": 1.0, "out_height": 4, "out_width": 4, "left": 0.0,
                               "right": 1.0, "grayscale": True, "interpolation": "area"}) == CropSpec(0.5, 1, 4, 4)
    preset = CROP_PRESETS["netsvf"].to_dict()  # a preset with an old-style override (prep's crop.grayscale)
    assert CropSpec.from_dict({**preset, "grayscale": False}).color == "bgr"
    assert CropSpec.from_dict({**preset, "color": "yuv", "grayscale": False}).color == "yuv"
    assert CropSpec.from_dict({**preset, "color": "yuv", "grayscale": True}).color == "gray"


@pytest.mark.parametrize("color,code", [("rgb", "COLOR_BGR2RGB"), ("yuv", "COLOR_BGR2YUV"), ("hsv", "COLOR_BGR2HSV")])
def test_colour_spaces_match_opencv_after_resize(color, code):
    import cv2

    frame = np.random.default_rng(2).integers(0, 256, (160, 320, 3), dtype=np.uint8)
    spec = CropSpec(60, -25, 66, 200, color=color, units="pixel", interpolation="linear")
    small = cv2.resize(frame[60:-25], (200, 66), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(preprocess_frame(frame, spec), cv2.cvtColor(small, getattr(cv2, code)))
    rev = CropSpec(60, -25, 66, 200, color=color, units="pixel", interpolation="linear", channel_order=color[::-1])
    np.testing.assert_array_equal(preprocess_frame(frame, rev), preprocess_frame(frame, spec)[..., ::-1])


def test_gray_frame_into_a_colour_net():
    out = preprocess_frame(np.full((20, 30), 90, np.uint8), CropSpec(0.0, 1.0, 10, 15, color="rgb"))
    assert out.shape == (10, 15, 3) and (out == 90).all()


def test_pixel_crop_is_a_python_slice_and_maps_masks_back():
    spec = CropSpec(top=60, bottom=-25, out_height=75, out_width=320, units="pixel")
    assert spec.box(160, 320) == (60, 135, 0, 320)
    assert CropSpec(10, 0, 5, 5, units="pixel", left=-40).box(100, 400) == (10, 100, 360, 400)
    assert CropSpec(0, 50, 5, 5, units="pixel", left=20, right=300).box(100, 400) == (0, 50, 20, 300)
    frame = np.random.default_rng(3).integers(0, 256, (160, 320), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess_frame(frame, spec), frame[60:-25])
    full = mask_to_frame(np.ones((75, 320), np.float32), spec, frame.shape)
    assert full[60:135].min() == 1.0 and full[:60].max() == 0 and full[135:].max() == 0
    with pytest.raises(ValueError, match="outside"):
        spec.box(50, 320)  # the band does not fit a smaller frame
    with pytest.raises(ValueError, match="fractions"):
        spec.with_height(80)


@pytest.mark.parametrize("bad", [dict(color="lab"), dict(color="yuv", channel_order="yvv"),
                                 dict(channel_order="bgr"), dict(units="inch"), dict(layout="chwn"),
                                 dict(scale=(1.0, 2.0)), dict(scale=0.0), dict(offset=(float("nan"),)),
                                 dict(units="pixel", top=1.5), dict(units="pixel", top=50, bottom=20)])
def test_bad_colour_and_scaling_are_clear_errors(bad):
    with pytest.raises(ValueError):
        CropSpec(**{**dict(top=0.5, bottom=1.0, out_height=10, out_width=10), **bad})


@pytest.mark.parametrize("expr,scale,offset", [("x/255", 1 / 255, 0.0), ("x/127.5-1", 1 / 127.5, -1.0),
                                               ("(x - 128) / 128", 1 / 128, -1.0), ("2*(x/255-0.5)", 2 / 255, -1.0),
                                               ("-x*0.5+3", -0.5, 3.0), ("x", 1.0, 0.0)])
def test_affine_scaling_expressions(expr, scale, offset):
    from vbp_live.core.preprocess import affine_scaling

    s, o = affine_scaling(expr)
    assert s == pytest.approx((scale,)) and o == pytest.approx((offset,))


@pytest.mark.parametrize("expr", ["x*x", "1/x", "__import__('os')", "x**2", "abs(x)", "255", "x/0", "x +"])
def test_non_affine_scalings_are_refused(expr):
    from vbp_live.core.preprocess import affine_scaling

    with pytest.raises(ValueError, match="affine"):
        affine_scaling(expr)


def test_mean_std_scaling_and_layout_reach_the_network_input():
    import torch

    from vbp_live.core.preprocess import affine_scaling
    from vbp_live.models import frames_to_input

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    scale, offset = affine_scaling("x/255", mean=mean, std=std)
    frames = np.random.default_rng(4).integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)
    spec = CropSpec(0.0, 1.0, 6, 8, color="rgb", scale=scale, offset=offset)
    x = frames_to_input(frames, spec=spec)  # (2, 3, 6, 8)
    ref = (frames.astype(np.float64) / 255 - mean) / std  # (2, 6, 8, 3)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)
    nhwc = frames_to_input(frames, spec=CropSpec(0.0, 1.0, 6, 8, color="rgb", scale=scale, offset=offset,
                                                 layout="nhwc"))
    assert nhwc.shape == (2, 6, 8, 3) and torch.equal(nhwc, x.permute(0, 2, 3, 1))


def test_the_band_follows_the_horizon_at_the_same_distance():
    spec = CropSpec(top=0.38, bottom=0.72, out_height=125, out_width=351, horizon=0.47)
    low = spec.at_horizon(0.597)  # a camera pitched up / mounted high: the horizon lower in the frame
    assert (low.top, low.bottom, low.horizon) == (0.507, 0.847, 0.597)
    assert low.top - low.horizon == pytest.approx(spec.top - spec.horizon)
    assert low.at_horizon(0.47) == spec and CropSpec.from_dict(low.to_dict()) == low
    assert spec.same_band(replace(spec, horizon=None)) and not spec.same_band(low)  # the horizon alone: same band
    frame = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640).astype(np.uint8)
    y0, y1, _, _ = low.box(480, 640)
    assert (y0, y1) == (243, 407)
    whole = replace(low, top=0.0, bottom=1.0, horizon=None)
    np.testing.assert_array_equal(preprocess_frame(frame, low), preprocess_frame(frame[y0:y1], whole))


def test_a_band_at_a_far_horizon_stops_at_the_frame_edge(caplog):
    spec = CropSpec(top=0.52, bottom=0.72, out_height=125, out_width=640, horizon=0.47)
    with caplog.at_level("WARNING"):
        edge = spec.at_horizon(0.9)
    assert (edge.top, edge.bottom) == (0.8, 1.0) and "leave the frame" in caplog.text
    assert replace(spec, top=0.38).at_horizon(0.05).top == 0.0


@pytest.mark.parametrize("kw, message", [
    (dict(horizon=1.2), "horizon must be a fraction"),
    (dict(horizon=0.5, units="pixel", top=10, bottom=-5), "needs a crop band in fractions"),
])
def test_bad_horizons_are_clear_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        CropSpec(**{"top": 0.5, "bottom": 0.8, "out_height": 66, "out_width": 200, **kw})


def test_a_band_without_a_reference_horizon_cannot_follow_one():
    with pytest.raises(ValueError, match="no reference horizon"):
        CROP_PRESETS["netsvf"].at_horizon(0.55)
