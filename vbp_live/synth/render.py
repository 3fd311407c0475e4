"""Render a :class:`~vbp_live.synth.drive.Drive` into BGR frames with pixel-exact ground-truth masks.

Per frame: sky gradient and skyline, grass, the road surface, lane markings, stop lines and
crosswalks (polygons projected from the road frame and filled with ``cv2.fillPoly``), shadows,
other cars (boxes, far to near), then one multiplicative light map (world-fixed asphalt/grass
texture looked up by inverse perspective per pixel row with ``cv2.remap``, global brightness,
shadow darkening), distance haze and the ego hood. Every polygon is drawn into the frame and
into its mask with the same call, so masks align with the pixels exactly. Last, when the drive's
``randomize > 0``, the camera and sensor effects of :mod:`vbp_live.synth.sensor` (masks warped
with the frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from vbp_live.synth import textures as tx
from vbp_live.synth.camera import Camera, clip_near, world_to_vehicle
from vbp_live.synth.cars import car_polygons
from vbp_live.synth.drive import Drive
from vbp_live.synth.roadside import RoadsidePart, roadside_parts
from vbp_live.synth.sensor import apply_sensor, sample_sensor

MASK_NAMES = ("lane", "hmark", "shadow", "car", "road")
Z_NEAR, FAR_M = 0.5, 160.0
_GRID = np.unique(np.concatenate([np.arange(0.0, 12.0, 1.0), np.geomspace(12.0, FAR_M, 28)]))


@dataclass
class GroundTruthMasks:
    """Per-frame pixel masks (H, W) bool, aligned with the rendered frame.

    Attributes:
        lane: lane markings (solid/dashed, white/yellow), including those under shadows.
        hmark: horizontal markings (stop lines, crosswalk stripes).
        shadow: ground shadows (tree/building shadows and car contact shadows).
        car: other vehicles.
        road: visible road surface (asphalt, markings included).
    """

    lane: np.ndarray
    hmark: np.ndarray
    shadow: np.ndarray
    car: np.ndarray
    road: np.ndarray

    def stack(self) -> np.ndarray:
        """(5, H, W) bool in ``MASK_NAMES`` order."""
        return np.stack([getattr(self, n) for n in MASK_NAMES])

    @classmethod
    def from_stack(cls, arr: np.ndarray) -> GroundTruthMasks:
        """Inverse of :meth:`stack`."""
        return cls(*(arr[k].astype(bool, copy=False) for k in range(len(MASK_NAMES))))


@dataclass
class _View:
    px: float
    py: float
    theta: float
    pitch: float
    s_cam: float


class Renderer:
    """Renders frames of one drive (precomputes texture, sky, skyline, hood and world polygons)."""

    def __init__(self, drive: Drive, camera: Camera | None = None) -> None:
        self.drive = drive
        self.cam = camera or drive.camera
        self._init_images()
        self._init_world()
        self.sensor = sample_sensor(drive.config.seed, drive.config.randomize)

    def _init_images(self) -> None:
        """Texture, sky/grass background, skyline and hood (all fixed for the drive)."""
        cam, sc = self.cam, self.drive.scene
        noise = tx.ground_texture(sc.texture_seed)
        if self.drive.world.texture_gain != 1.0:
            noise *= np.float32(self.drive.world.texture_gain)
        self.tex_near = np.clip(128.0 + noise, 0, 255).astype(np.uint8)
        self.tex_far = np.clip(128.0 + 0.35 * noise, 0, 255).astype(np.uint8)
        sky = tx.sky_column(cam, sc.sky_top, sc.sky_horizon)[: cam.height]  # (H, 1, 3): rows above the horizon
        self.bg = np.empty((2 * cam.height, cam.width, 3), np.uint8)  # sky, then grass; slice per horizon row
        self.bg[: cam.height] = sky
        self.bg[cam.height:] = sc.grass
        self.skyline = tx.skyline_table(sc.texture_seed)
        self.hill_color = tuple(int(0.55 * g + 0.45 * h) for g, h in zip(sc.grass, sc.sky_horizon, strict=True))
        self.hood_r0, self.hood_mask, self.hood_img = tx.hood(cam, self.drive.world) if cam.hood else (
            cam.height, None, None)
        self.not_hood = None if self.hood_mask is None else (~self.hood_mask).astype(np.uint8)
        self.hood_u8 = None if self.hood_mask is None else self.hood_mask.astype(np.uint8)
        self._hood_cache: dict[int, np.ndarray] = {}

    def _init_world(self) -> None:
        """World coordinates of the fixed ground polygons; marking colors."""
        sc, road = self.drive.scene, self.drive.road
        mk = sc.markings
        self.dash = (mk.s1 - mk.s0) <= max(3.0, self.drive.world.marking.dash_m) + 1e-6  # dashes: single quads
        self.colors, self.color_idx = np.unique(mk.color, axis=0, return_inverse=True)
        self.color_idx = self.color_idx.reshape(-1)
        self.hm_world = np.stack(road.frenet_to_world(sc.hmarks[..., 0], sc.hmarks[..., 1]), -1)  # (K, 4, 2)
        self.hm_s = sc.hmarks[..., 0].min(axis=1) if len(sc.hmarks) else np.zeros(0)
        self.shadow_world = [np.stack(road.frenet_to_world(p[:, 0], p[:, 1]), -1) for p in sc.shadows]
        self.shade_value = int(round(255 * sc.shadow_level))
        self.defects = [(np.stack(road.frenet_to_world(q[..., 0], q[..., 1]), -1), q[..., 0].min(axis=1), c)
                        for q, c in ((sc.patches, sc.patch_colors), (sc.cracks, None)) if len(q)]
        self.roadside = roadside_parts(self.drive.world, road.lane_width)

    def render(self, i: int) -> tuple[np.ndarray, GroundTruthMasks]:
        """Frame ``i``: (H, W, 3) uint8 BGR and its :class:`GroundTruthMasks`."""
        cam, d = self.cam, self.drive
        px, py, theta = d.camera_pose(i, cam)
        view = _View(px, py, theta, float(d.pitch[i]) + cam.pitch_rad, float(d.s[i]) + cam.forward_m)
        vh = cam.horizon_row(view.pitch)
        base = self._background(vh, theta)
        masks = np.zeros((len(MASK_NAMES), cam.height, cam.width), np.uint8)
        shade = np.full((cam.height, cam.width), 255, np.uint8)
        self._draw_road(base, masks, view)
        self._draw_hmarks(base, masks, view)
        self._draw_shadows(shade, masks, view)
        self._draw_roadside(base, shade, masks, view)
        self._draw_cars(base, shade, masks, view, i)
        frame = self._light(base, shade, view, vh, float(d.scene.brightness[i]))
        self._haze(frame, vh, masks[3])
        self._hood(frame, masks, float(d.scene.brightness[i]))
        frame, masks = apply_sensor(frame, masks.view(bool), self.sensor, i, float(d.speed[i]))  # identity at 0
        return frame, GroundTruthMasks.from_stack(masks)

    # -- background and light ------------------------------------------------------------
    def _background(self, vh: float, theta: float) -> np.ndarray:
        cam = self.cam
        r = int(np.clip(math.ceil(vh), 0, cam.height))
        base = self.bg[cam.height - r: 2 * cam.height - r].copy()
        tx.fill([(base, self.hill_color)], [tx.skyline_polygon(self.skyline, cam, theta, vh)])
        return base

    def _light(self, base: np.ndarray, shade: np.ndarray, view: _View, vh: float, brightness: float) -> np.ndarray:
        """Multiply the flat-colored frame by texture x brightness x shadows (128 = 1.0)."""
        cam = self.cam
        gain = np.empty((cam.height, cam.width), np.uint8)
        r0 = int(np.clip(math.floor(vh) + 1, 0, cam.height))
        gain[:r0] = min(255, round(128 * brightness))
        if r0 < cam.height:
            gain[r0:] = cv2.convertScaleAbs(self._texture_rows(view, r0), alpha=brightness)
        gain = cv2.multiply(gain, cv2.blur(shade, (3, 3)), scale=1.0 / 255.0)
        return cv2.multiply(base, cv2.cvtColor(gain, cv2.COLOR_GRAY2BGR), scale=1.0 / 128.0)

    def _texture_rows(self, view: _View, r0: int) -> np.ndarray:
        """World-fixed ground texture for rows ``r0..H-1`` (uint8, 128 = 1.0).

        A flat ground seen through a pinhole camera is a homography: each output row is one
        ``cv2.warpPerspective`` of the periodic texture tile. Rows farther than 40 m use a
        low-contrast copy of the texture (less aliasing near the horizon).
        """
        cam = self.cam
        z, _ = cam.ground_rows(np.array([float(r0)]) + np.arange(cam.height - r0), view.pitch)
        n_far = int(np.searchsorted(-z, -40.0))
        half = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])  # half-resolution pixel -> full
        parts = []
        for tex, a, b in ((self.tex_far, 0, n_far), (self.tex_near, n_far, cam.height - r0)):
            if b > a:
                m = self._ground_homography(view, r0 + a) @ half
                size = (cam.width // 2, (b - a + 1) // 2)
                low = cv2.warpPerspective(tex, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                          borderMode=cv2.BORDER_WRAP)
                parts.append(cv2.resize(low, (cam.width, 2 * size[1]), interpolation=cv2.INTER_LINEAR)[: b - a])
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out

    def _ground_homography(self, view: _View, r0: int) -> np.ndarray:
        """3x3 map from output pixel ``(u, v - r0)`` to texture pixel of the ground it sees."""
        cam, res = self.cam, tx.TEXTURE_RES_M
        f, h, cp, sp = cam.focal_px, cam.height_m, math.cos(view.pitch), math.sin(view.pitch)
        row_w = np.array([0.0, cp / f, (r0 - cam.cy) * cp / f + sp])  # ray's downward component
        row_fwd = h * np.array([0.0, -sp / f, cp - (r0 - cam.cy) * sp / f])
        row_left = h * np.array([-1.0 / f, 0.0, cam.cx / f])
        c, s = math.cos(view.theta), math.sin(view.theta)
        tile = tx.TEXTURE_PX * res
        ox, oy = view.px % tile, view.py % tile
        row_x = (ox * row_w + c * row_fwd - s * row_left) / res
        row_y = (oy * row_w + s * row_fwd + c * row_left) / res
        return np.stack([row_x, row_y, row_w])

    def _haze(self, frame: np.ndarray, vh: float, car: np.ndarray) -> None:
        """Distance haze on the rows around the horizon (the ground there is 40 m to infinity away)."""
        r0 = int(np.clip(math.floor(vh) - 2, 0, self.cam.height))
        r1 = int(np.clip(math.floor(vh) + 30, 0, self.cam.height))
        if r1 <= r0:
            return
        a = (0.6 * np.exp(-np.abs(np.arange(r0, r1) - vh) / 7.0)).astype(np.float32)[:, None, None]
        a = a * (1 - car[r0:r1, :, None]).astype(np.float32)  # cars are drawn near, not hazed
        haze = np.array(self.drive.scene.sky_horizon, np.float32)
        band = frame[r0:r1].astype(np.float32)
        frame[r0:r1] = (band * (1 - a) + haze * a).astype(np.uint8)

    def _hood(self, frame: np.ndarray, masks: np.ndarray, brightness: float) -> None:
        if self.hood_mask is None:
            return
        r0, level = self.hood_r0, int(round(brightness * 32))
        img = self._hood_cache.get(level)
        if img is None:
            img = self._hood_cache[level] = cv2.convertScaleAbs(self.hood_img, alpha=level / 32)
        cv2.copyTo(img, self.hood_u8, frame[r0:])
        np.bitwise_and(masks[:, r0:], self.not_hood, out=masks[:, r0:])

    # -- ground polygons -------------------------------------------------------------------
    def _strips(
        self, view: _View, s0: np.ndarray, s1: np.ndarray, d: np.ndarray, width: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Pixel polygons of road-aligned strips clipped to the visible range; returns (polys, piece index)."""
        lo, hi = view.s_cam + 1.0, view.s_cam + FAR_M
        keep = np.nonzero((s1 > lo) & (s0 < hi))[0]
        grid = view.s_cam + _GRID
        ss, dd, spans = [], [], []
        for j in keep:
            a, b = max(s0[j], lo), min(s1[j], hi)
            s = np.concatenate([[a], grid[(grid > a) & (grid < b)], [b]])
            ss += [s, s[::-1]]
            dd += [np.full(len(s), d[j] + 0.5 * width[j]), np.full(len(s), d[j] - 0.5 * width[j])]
            spans.append(len(s))
        if not spans:
            return [], keep
        x, y = self.drive.road.frenet_to_world(np.concatenate(ss), np.concatenate(dd))
        fwd, left = world_to_vehicle(x, y, view.px, view.py, view.theta)
        u, v, _ = self.cam.project(fwd, left, 0.0, view.pitch)
        polys, start = [], 0
        for n in spans:
            f = fwd[start:start + 2 * n]
            ok = np.minimum(f[:n], f[2 * n - 1:n - 1:-1] if n > 0 else f) >= Z_NEAR
            polys.append(self._valid_strip(u[start:start + 2 * n], v[start:start + 2 * n], ok))
            start += 2 * n
        return polys, keep

    @staticmethod
    def _valid_strip(u: np.ndarray, v: np.ndarray, ok: np.ndarray) -> np.ndarray:
        n = len(ok)
        if not ok.any():
            return np.zeros((0, 2))
        first = int(np.argmax(ok))
        bad = np.nonzero(~ok[first:])[0]
        last = first + (int(bad[0]) if len(bad) else n - first)
        left = np.stack([u[first:last], v[first:last]], 1)
        right = np.stack([u[2 * n - last:2 * n - first], v[2 * n - last:2 * n - first]], 1)
        return np.concatenate([left, right])

    def _quads(
        self, view: _View, s0: np.ndarray, s1: np.ndarray, d: np.ndarray, width: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Short strips (dashes) as pixel quads (K, 4, 2), all at once; returns (quads, kept mask)."""
        a = np.maximum(s0, view.s_cam + 1.0)
        b = np.minimum(s1, view.s_cam + FAR_M)
        ss = np.stack([a, b, b, a], 1)
        dd = d[:, None] + 0.5 * width[:, None] * np.array([1.0, 1.0, -1.0, -1.0])
        x, y = self.drive.road.frenet_to_world(ss, dd)
        fwd, left = world_to_vehicle(x, y, view.px, view.py, view.theta)
        u, v, _ = self.cam.project(fwd, left, 0.0, view.pitch)
        ok = (fwd.min(axis=1) >= Z_NEAR) & (b > a)
        return np.stack([u, v], -1)[ok], ok

    def _draw_road(self, base: np.ndarray, masks: np.ndarray, view: _View) -> None:
        w, lanes = self.drive.road.lane_width, self.drive.world.lanes
        inf = np.array([np.inf])
        center, width = (lanes.left - lanes.right) / 2 * w, (lanes.left + lanes.right + 1) * w + 1.2
        polys, _ = self._strips(view, np.array([-np.inf]), inf, np.array([center]), np.array([width]))
        tx.fill([(base, self.drive.scene.asphalt), (masks[4], 1)], polys)
        self._draw_defects(base, view)
        mk = self.drive.scene.markings
        vis = (mk.s1 > view.s_cam + 1.0) & (mk.s0 < view.s_cam + FAR_M)
        dash, solid = np.nonzero(vis & self.dash)[0], np.nonzero(vis & ~self.dash)[0]
        quads, ok = self._quads(view, mk.s0[dash], mk.s1[dash], mk.d[dash], mk.width[dash])
        strips, keep = self._strips(view, mk.s0[solid], mk.s1[solid], mk.d[solid], mk.width[solid])
        q_col, s_col = self.color_idx[dash][ok], self.color_idx[solid][keep]
        for ci in np.unique(np.concatenate([q_col, s_col])):
            sel = [p for p, c in zip(strips, s_col, strict=True) if c == ci] + list(quads[q_col == ci])
            tx.fill([(base, tuple(int(x) for x in self.colors[ci])), (masks[0], 1)], sel)

    def _draw_defects(self, base: np.ndarray, view: _View) -> None:
        """Repair patches (each its own color) and tar snakes on the asphalt, under the paint."""
        for quads, s_min, colors in self.defects:
            sel = np.nonzero((s_min > view.s_cam - 8.0) & (s_min < view.s_cam + FAR_M))[0]
            if not len(sel):
                continue
            fwd, left = world_to_vehicle(quads[sel, :, 0], quads[sel, :, 1], view.px, view.py, view.theta)
            ok = fwd.min(axis=1) >= Z_NEAR
            u, v, _ = self.cam.project(fwd[ok], left[ok], 0.0, view.pitch)
            polys = np.stack([u, v], -1)  # (K, 4, 2)
            if colors is None:
                tx.fill([(base, self.drive.scene.crack_color)], list(polys))
                continue
            for poly, col in zip(polys, colors[sel][ok], strict=True):
                tx.fill([(base, tuple(int(c) for c in col))], [poly])

    def _wall(self, view: _View, d: float, h0: float, h1: float) -> list[np.ndarray]:
        """Pixel polygon of a band along the road at offset ``d`` between heights ``h0`` and ``h1`` (m)."""
        s = view.s_cam + _GRID[_GRID >= 1.0]
        x, y = self.drive.road.frenet_to_world(s, np.full(len(s), d))
        fwd, left = world_to_vehicle(x, y, view.px, view.py, view.theta)
        u1, v1, _ = self.cam.project(fwd, left, h1, view.pitch)
        u0, v0, _ = self.cam.project(fwd, left, h0, view.pitch)
        poly = self._valid_strip(np.concatenate([u1, u0[::-1]]), np.concatenate([v1, v0[::-1]]), fwd >= Z_NEAR)
        return [poly] if len(poly) >= 3 else []

    def _posts(self, view: _View, part: RoadsidePart, reach_m: float = 60.0) -> list[np.ndarray]:
        """Pixel quads of posts at world-fixed arc lengths (multiples of ``part.post_m``), up to ``reach_m`` ahead."""
        s0 = np.arange(math.ceil((view.s_cam + 1.0) / part.post_m), (view.s_cam + reach_m) // part.post_m + 1)
        s = s0[:, None] * part.post_m + np.array([0.0, 0.15, 0.15, 0.0])  # (K, 4)
        x, y = self.drive.road.frenet_to_world(s, np.full(s.shape, part.d))
        fwd, left = world_to_vehicle(x, y, view.px, view.py, view.theta)
        up = np.array([part.h0, part.h0, part.h1, part.h1])
        u, v, _ = self.cam.project(fwd, left, up, view.pitch)
        return list(np.stack([u, v], -1)[fwd.min(axis=1) >= Z_NEAR])

    def _draw_roadside(self, base: np.ndarray, shade: np.ndarray, masks: np.ndarray, view: _View) -> None:
        """Curbs (flat, beside the road) and guard rails / barriers (upright: they hide the ground behind)."""
        if not self.roadside:
            return
        cover = np.zeros(masks.shape[1:], np.uint8)
        for part in self.roadside:
            if part.post_m > 0:
                polys = self._posts(view, part)
            elif part.upright:
                polys = self._wall(view, part.d, part.h0, part.h1)
            else:
                polys, _ = self._strips(view, np.array([-np.inf]), np.array([np.inf]), np.array([part.d]),
                                        np.array([part.width]))
            tx.fill([(base, part.color), (cover, 1 if part.upright else 2)], polys)
        flat, upright = cover == 2, cover == 1
        for k in (0, 1, 4):  # a curb is ground (it can lie in a shadow) but not road or paint
            masks[k][flat] = 0
        if upright.any():
            for k in (0, 1, 2, 4):
                masks[k][upright] = 0
            shade[upright] = 255

    def _ground_polys(self, view: _View, world: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for poly in world:
            fwd, left = world_to_vehicle(poly[:, 0], poly[:, 1], view.px, view.py, view.theta)
            fwd, left = clip_near(fwd, left, Z_NEAR)
            if len(fwd) >= 3:
                u, v, _ = self.cam.project(fwd, left, 0.0, view.pitch)
                out.append(np.stack([u, v], 1))
        return out

    def _draw_hmarks(self, base: np.ndarray, masks: np.ndarray, view: _View) -> None:
        sel = np.nonzero((self.hm_s > view.s_cam - 5.0) & (self.hm_s < view.s_cam + FAR_M))[0]
        polys = self._ground_polys(view, [self.hm_world[j] for j in sel])
        tx.fill([(base, (225, 228, 228)), (masks[1], 1), (masks[0], 0)], polys)

    def _draw_shadows(self, shade: np.ndarray, masks: np.ndarray, view: _View) -> None:
        ss = self.drive.scene.shadow_s
        sel = np.nonzero((ss[:, 1] > view.s_cam) & (ss[:, 0] < view.s_cam + FAR_M))[0]
        polys = self._ground_polys(view, [self.shadow_world[j] for j in sel])
        tx.fill([(shade, self.shade_value), (masks[2], 1)], polys, disjoint=False)

    def _draw_cars(self, base: np.ndarray, shade: np.ndarray, masks: np.ndarray, view: _View, i: int) -> None:
        cars = [c for c in self.drive.scene.cars if np.isfinite(c.s[i]) and -10.0 < c.s[i] - view.s_cam < FAR_M]
        cars.sort(key=lambda c: -abs(c.s[i] - view.s_cam))
        for car in cars:
            drawn = car_polygons(car, float(car.s[i]), self.drive.road, self.cam, view)
            if drawn is None:
                continue
            contact, faces = drawn
            tx.fill([(shade, self.shade_value // 2), (masks[2], 1)], contact)
            for poly, color in faces:
                tx.fill([(base, color), (masks[3], 1)], [poly])
        if cars:  # car bodies hide the ground below them: markings, shadows, road, and are never shaded
            hidden = masks[3] == 0
            for k in (0, 1, 2, 4):
                masks[k] &= hidden
            shade[~hidden] = 255


def render_frames(drive: Drive, camera: Camera | None = None, start: int = 0,
                  stop: int | None = None) -> Iterator[tuple[np.ndarray, GroundTruthMasks]]:
    """Yield ``(frame_bgr, masks)`` for frames ``start..stop-1`` of ``drive``.

    Args:
        drive: from :func:`vbp_live.synth.simulate_drive`.
        camera: another camera on the same vehicle (e.g. a left/right camera); default: the drive's.
        start, stop: frame range (default: all frames).
    """
    r = Renderer(drive, camera)
    for i in range(start, drive.n_frames if stop is None else stop):
        yield r.render(i)
