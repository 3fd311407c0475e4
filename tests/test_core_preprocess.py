"""The one crop/grayscale/resize function and the mapping of masks back onto frames."""

from __future__ import annotations

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
    spec = CropSpec(top=0.5, bottom=1.0, out_height=40, out_width=80, grayscale=False)
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
