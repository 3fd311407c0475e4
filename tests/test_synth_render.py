"""Renderer: frame layout, and masks that align exactly with what was drawn (pixel checks)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vbp_live.synth import MASK_NAMES, Camera, DriveConfig, Renderer, simulate_drive
from vbp_live.synth.scene import MarkingPieces

FRAMES = (20, 90, 160, 230)


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(DriveConfig(seed=4, frames=240))


@pytest.fixture(scope="module")
def rendered(drive):
    r = Renderer(drive)
    return {i: r.render(i) for i in FRAMES}


def _without(drive, **scene_changes):
    return Renderer(dataclasses.replace(drive, scene=dataclasses.replace(drive.scene, **scene_changes)))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=2)


def test_frame_layout(rendered, drive):
    frame, masks = rendered[FRAMES[0]]
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert masks.stack().shape == (len(MASK_NAMES), 480, 640)
    r = Renderer(drive)
    assert r.hood_r0 > 0.85 * 480  # the hood stays below the NetSVF band
    assert not masks.stack()[:, r.hood_r0:][:, r.hood_mask].any()  # nothing is visible through the hood


def test_lane_mask_is_exactly_the_drawn_markings(drive, rendered):
    empty = MarkingPieces(*(np.zeros(0) for _ in range(4)), np.zeros((0, 3), np.uint8))
    bare = _without(drive, markings=empty)
    seen = 0
    for i, (frame, masks) in rendered.items():
        changed = _diff(frame, bare.render(i)[0])
        assert not (changed & ~masks.lane).any(), "pixels changed outside the lane mask"
        assert changed[masks.lane].mean() > 0.97
        seen += int(masks.lane.sum())
    assert seen > 2000


def test_hmark_mask_is_exactly_the_stop_lines_and_crosswalks(drive, rendered):
    bare = _without(drive, hmarks=np.zeros((0, 4, 2)))
    frame, masks = rendered[FRAMES[0]]  # the drive starts at a stop line with a crosswalk ahead
    assert masks.hmark.sum() > 3000
    changed = _diff(frame, bare.render(FRAMES[0])[0])
    assert not (changed & ~masks.hmark).any()
    assert changed[masks.hmark].mean() > 0.97


def test_car_mask_covers_the_cars(drive, rendered):
    bare = _without(drive, cars=[])
    kernel = np.ones((3, 3), np.uint8)
    total = 0
    for i, (frame, masks) in rendered.items():
        bare_frame, bare_masks = bare.render(i)
        changed = _diff(frame, bare_frame)
        shadows = (masks.shadow | bare_masks.shadow).astype(np.uint8)  # contact shadows; soft shadow edges
        near_shadow = cv2.dilate(shadows, kernel).astype(bool)
        assert not (changed & ~masks.car & ~near_shadow).any()
        if masks.car.any():
            assert changed[masks.car].mean() > 0.9
        total += int(masks.car.sum())
    assert total > 500


def test_shadow_mask_is_where_the_ground_got_darker(drive, rendered):
    bare = _without(drive, shadows=[], shadow_s=np.zeros((0, 2)), cars=[])
    no_cars = _without(drive, cars=[])
    kernel = np.ones((3, 3), np.uint8)
    found = 0
    for i in FRAMES:
        frame, masks = no_cars.render(i)
        lit = bare.render(i)[0]
        inner = cv2.erode(masks.shadow.astype(np.uint8), kernel).astype(bool)
        outer = cv2.dilate(masks.shadow.astype(np.uint8), kernel).astype(bool)
        darker = frame.astype(int).sum(axis=2) < lit.astype(int).sum(axis=2)
        assert not (_diff(frame, lit) & ~outer).any()
        if inner.any():
            assert darker[inner].mean() > 0.95
            ratio = frame[inner].astype(float).mean() / lit[inner].astype(float).mean()
            assert ratio == pytest.approx(drive.scene.shadow_level, abs=0.08)
        found += int(inner.sum())
    assert found > 1000


def test_markings_are_bright_and_masks_are_consistent(rendered):
    for frame, m in rendered.values():
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(float)
        asphalt = m.road & ~m.lane & ~m.hmark & ~m.shadow
        paint = (m.lane | m.hmark) & ~m.shadow
        if paint.sum() > 200:
            assert gray[paint].mean() > gray[asphalt].mean() + 40
        assert not (m.lane & m.hmark).any() and not (m.car & (m.lane | m.road | m.hmark)).any()
        assert not (m.lane & ~m.road).any()  # markings lie on the road surface


def test_side_camera_sees_the_road_shifted(drive):
    left = Renderer(drive, dataclasses.replace(drive.config.camera, lateral_m=0.5))
    f_c, m_c = Renderer(drive).render(100)
    f_l, m_l = left.render(100)
    assert isinstance(left.cam, Camera) and not np.array_equal(m_c.lane, m_l.lane)
    cols_c, cols_l = np.nonzero(m_c.lane[300])[0], np.nonzero(m_l.lane[300])[0]
    if len(cols_c) and len(cols_l):  # a camera further left sees the markings further right
        assert cols_l.mean() > cols_c.mean()
