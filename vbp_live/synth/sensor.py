"""Camera and sensor effects in image space: what a real dashcam adds between the scene and the file.

:func:`sample_sensor` draws a drive's :class:`SensorParams` from its own random stream
(``np.random.default_rng([seed, 0x5E])``); ``randomize`` in [0, 1] scales every range (0 = no
effect at all). :func:`apply_sensor` then applies, per frame and in this order:

1. geometry: camera roll and barrel lens distortion, as ONE ``cv2.remap`` built once per drive
   (and cached), zoomed just enough that no border pixel is invented; the frame is resampled
   with ``INTER_LINEAR`` and every mask with ``INTER_NEAREST`` through the same map, so masks
   stay exact;
2. motion blur along a line whose length grows with speed;
3. vignetting, white balance (per-channel gains) and exposure, the last two drifting slowly
   within the drive;
4. sensor noise: shot noise (variance grows with the signal) plus read noise, new every frame;
5. JPEG re-compression at a quality between 30 and 95.

Photometric effects never touch the masks. Every random draw of frame ``i`` comes from
``np.random.default_rng([seed, 0x5E, 1, i])`` (numpy pads short seeds with zeros, so a bare
``[seed, 0x5E, i]`` would make frame 0 repeat the per-drive stream); the output is a pure
function of ``(params, frame_index, speed)``, so parallel render workers agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

SENSOR_STREAM = 0x5E
ROLL_MAX_DEG = 3.0
K1_RANGE = (-0.08, 0.0)  # radial distortion in half-image-width units; negative = barrel
K2_MAX = 0.01
BLUR_MAX_PX_PER_MPS = 0.3  # blur length (px) per m/s of speed
BLUR_MAX_PX = 9.0
BLUR_MIN_PX = 1.5  # shorter blurs are skipped
READ_NOISE_RANGE = (0.5, 4.0)  # std in 8-bit levels
SHOT_GAIN_MAX = 0.25  # shot-noise variance per 8-bit level of signal
JPEG_QUALITY_RANGE = (30, 95)
JPEG_JITTER = 3  # per-frame change of the quality
VIGNETTE_MAX = 0.45  # light lost in the corners
WB_LOG_MAX = 0.15  # |log gain| of blue and red relative to green
EXPOSURE_EV_RANGE = (-0.6, 0.4)
DRIFT_EV_MAX = 0.25  # amplitude of the slow exposure drift (EV)
DRIFT_WB_LOG_MAX = 0.05  # amplitude of the slow white-balance drift (log gain)
DRIFT_PERIOD_RANGE = (200.0, 1200.0)  # frames
H264_CRF_RANGE = (18, 35)
_NOISE_PAD = 64  # the per-drive noise bank is this much larger than the frame; frames pick a random window


@dataclass(frozen=True)
class SensorParams:
    """A drive's camera and sensor (defaults: no effect).

    Attributes:
        seed: the drive's seed (per-frame random draws derive from it).
        randomize: the scale these were drawn with (0..1); 0 = identity.
        roll_deg: camera roll (degrees, positive = clockwise image rotation).
        k1, k2: radial distortion ``r_d = r_u (1 + k1 r_u^2 + k2 r_u^4)``, radius in half image widths
            from the image center (OpenCV's sign: ``k1 < 0`` is barrel).
        blur_px_per_mps: motion-blur length per m/s of speed (px).
        blur_angle_deg: blur direction (degrees from the image x axis; jittered per frame).
        read_noise: read-noise std (8-bit levels).
        shot_gain: shot-noise variance per level of signal.
        jpeg_quality: JPEG re-compression quality (jittered per frame by up to ``JPEG_JITTER``; 100 = none).
        vignette: fraction of light lost in the image corners (cos^4-like falloff).
        wb_gains: white-balance gains (B, G, R), G = 1.
        exposure_ev: exposure offset (EV).
        drift_ev, drift_wb: amplitudes of the slow sinusoidal drift of exposure (EV) and of the
            blue/red gains (log gain).
        drift_period: drift period (frames); drift_phase: phases of exposure, blue, red (rad).
        h264_crf: CRF for the optional H.264 round trip of the writers (``vbp_live.io.synth_writers``).
    """

    seed: int = 0
    randomize: float = 0.0
    roll_deg: float = 0.0
    k1: float = 0.0
    k2: float = 0.0
    blur_px_per_mps: float = 0.0
    blur_angle_deg: float = 0.0
    read_noise: float = 0.0
    shot_gain: float = 0.0
    jpeg_quality: int = 100
    vignette: float = 0.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure_ev: float = 0.0
    drift_ev: float = 0.0
    drift_wb: float = 0.0
    drift_period: float = 600.0
    drift_phase: tuple[float, float, float] = (0.0, 0.0, 0.0)
    h264_crf: int = H264_CRF_RANGE[0]

    @property
    def is_identity(self) -> bool:
        """True when :func:`apply_sensor` returns its inputs unchanged."""
        return self.randomize <= 0.0

    @property
    def has_geometry(self) -> bool:
        """True when the frame and masks are warped (roll or distortion)."""
        return not self.is_identity and (self.roll_deg != 0.0 or self.k1 != 0.0 or self.k2 != 0.0)

    def to_dict(self) -> dict:
        """Plain dict (JSON/YAML friendly)."""
        return asdict(self)


def sample_sensor(seed: int, randomize: float) -> SensorParams:
    """Draw a drive's camera and sensor from its own stream; ``randomize`` in [0, 1] scales the ranges.

    Args:
        seed: the drive's seed.
        randomize: 0 = no effect (:class:`SensorParams` defaults), 1 = the full ranges.

    Returns:
        The drive's :class:`SensorParams` (the same for the same arguments).
    """
    if not 0.0 <= randomize <= 1.0:
        raise ValueError(f"randomize must be in 0..1, got {randomize}")
    if randomize == 0.0:
        return SensorParams(seed=seed)
    r = float(randomize)
    rng = np.random.default_rng([seed % 2**64, SENSOR_STREAM])
    q_lo, q_hi = JPEG_QUALITY_RANGE
    crf_lo, crf_hi = H264_CRF_RANGE
    wb_b, wb_r = np.exp(r * rng.uniform(-WB_LOG_MAX, WB_LOG_MAX, 2))
    return SensorParams(
        seed=seed, randomize=r,
        roll_deg=r * rng.uniform(-ROLL_MAX_DEG, ROLL_MAX_DEG),
        k1=r * rng.uniform(*K1_RANGE), k2=r * rng.uniform(-K2_MAX, K2_MAX),
        blur_px_per_mps=r * rng.uniform(0.0, BLUR_MAX_PX_PER_MPS), blur_angle_deg=rng.uniform(0.0, 180.0),
        read_noise=r * rng.uniform(*READ_NOISE_RANGE), shot_gain=r * rng.uniform(0.0, SHOT_GAIN_MAX),
        jpeg_quality=int(rng.integers(round(q_hi - r * (q_hi - q_lo)), q_hi + 1)),
        vignette=r * rng.uniform(0.0, VIGNETTE_MAX),
        wb_gains=(float(wb_b), 1.0, float(wb_r)),
        exposure_ev=r * rng.uniform(*EXPOSURE_EV_RANGE),
        drift_ev=r * rng.uniform(0.0, DRIFT_EV_MAX), drift_wb=r * rng.uniform(0.0, DRIFT_WB_LOG_MAX),
        drift_period=rng.uniform(*DRIFT_PERIOD_RANGE),
        drift_phase=tuple(float(p) for p in rng.uniform(0.0, 2 * math.pi, 3)),  # type: ignore[arg-type]
        h264_crf=int(rng.integers(crf_lo, round(crf_lo + r * (crf_hi - crf_lo)) + 1)),
    )


def frame_gains(params: SensorParams, frame_index: int) -> np.ndarray:
    """Per-channel (B, G, R) gain of frame ``frame_index``: white balance x exposure, with their slow drift."""
    a = 2 * math.pi * frame_index / params.drift_period
    ev = params.exposure_ev + params.drift_ev * math.sin(a + params.drift_phase[0])
    drift = [params.drift_wb * math.sin(a + params.drift_phase[1]), 0.0,
             params.drift_wb * math.sin(a + params.drift_phase[2])]
    return np.asarray(params.wb_gains) * np.exp(drift) * 2.0**ev  # (3,)


def blur_kernel(length_px: float, angle_deg: float) -> np.ndarray:
    """A normalized line kernel (odd square, float32) of ``length_px`` at ``angle_deg`` with sub-pixel weights."""
    half = int(math.ceil(length_px / 2))
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    t = np.linspace(-0.5, 0.5, max(8, int(4 * length_px)))
    x = half + length_px * t * math.cos(math.radians(angle_deg))
    y = half - length_px * t * math.sin(math.radians(angle_deg))
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.minimum(y0 + dy, 2 * half), np.minimum(x0 + dx, 2 * half)), w)
    return k / k.sum()


def _undistort_radius(r_d: np.ndarray, k1: float, k2: float) -> np.ndarray:
    """Solve ``r_d = r_u (1 + k1 r_u^2 + k2 r_u^4)`` for ``r_u`` (fixed-point iteration)."""
    r_u = r_d.copy()
    for _ in range(40):
        r2 = r_u * r_u
        r_u = r_d / (1.0 + k1 * r2 + k2 * r2 * r2)
    return r_u


def source_coords(params: SensorParams, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 (H, W) maps: where each output pixel samples the rendered frame (roll + distortion + zoom).

    Output pixels are distorted coordinates; undistorting them gives the ideal image of the
    rolled camera, rotating back by the roll gives the rendered frame. The result is then
    zoomed about the image center until every output pixel samples inside the frame.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x, y = (u - cx) / cx, (v - cy) / cx
    r_d = np.hypot(x, y)
    scale = _undistort_radius(r_d, params.k1, params.k2) / np.maximum(r_d, 1e-12)
    x, y = x * scale, y * scale
    c, s = math.cos(math.radians(params.roll_deg)), math.sin(math.radians(params.roll_deg))
    xs, ys = c * x - s * y, s * x + c * y
    need = max(np.abs(xs).max(), np.abs(ys).max() * cx / cy, 1.0)  # > 1: some pixels sample outside
    zoom = 1.0 / need
    return (cx + cx * zoom * xs).astype(np.float32), (cy + cx * zoom * ys).astype(np.float32)


def vignette_map(strength: float, height: int, width: int) -> np.ndarray:
    """(H, W, 1) float32 relative illumination: 1 at the center, ``1 - strength`` in the corners."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    u, v = np.meshgrid(np.arange(width) - cx, np.arange(height) - cy)
    rho2 = (u * u + v * v) / (cx * cx + cy * cy)  # 0 center, 1 corners
    fall = 1.0 - (1.0 / (1.0 + rho2)) ** 2  # cos^4-like, 0.75 in the corners
    return (1.0 - strength * fall / 0.75).astype(np.float32)[..., None]


@dataclass(frozen=True)
class _Prepared:
    """Per-drive tables (built once per ``(params, frame size)``)."""

    map_linear: tuple[np.ndarray, np.ndarray] | None  # fixed-point maps for INTER_LINEAR
    map_nearest: np.ndarray | None  # rounded integer map for INTER_NEAREST
    vignette: np.ndarray  # (H, W, 3) uint8, 255 = no loss
    noise: np.ndarray  # (H + pad, W + pad, 3) int16 standard normals x NOISE_ONE
    sigma_lut: np.ndarray  # (256,) int16: noise std x SIGMA_ONE for each 8-bit level


_NOISE_ONE, _SIGMA_ONE = 256, 64  # fixed-point scales of the noise bank and of the noise std
_BIT_LUTS = [((np.arange(256) >> k) & 1).astype(np.uint8) for k in range(8)]


@lru_cache(maxsize=4)
def _prepare(params: SensorParams, height: int, width: int) -> _Prepared:
    map_linear = map_nearest = None
    if params.has_geometry:
        mx, my = source_coords(params, height, width)
        map_linear = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        map_nearest = cv2.convertMaps(mx, my, cv2.CV_16SC2, nninterpolation=True)[0]
    rng = np.random.default_rng([params.seed % 2**64, SENSOR_STREAM, 2])
    normal = rng.standard_normal((height + _NOISE_PAD, width + _NOISE_PAD, 3), dtype=np.float32)
    noise = np.round(np.clip(normal, -4.0, 4.0) * _NOISE_ONE).astype(np.int16)
    sigma = np.sqrt(params.read_noise**2 + params.shot_gain * np.arange(256))
    vignette = np.round(255 * np.repeat(vignette_map(params.vignette, height, width), 3, axis=2)).astype(np.uint8)
    return _Prepared(map_linear, map_nearest, vignette, noise, np.round(sigma * _SIGMA_ONE).astype(np.int16))


def _warp_masks(masks: np.ndarray, map_nearest: np.ndarray) -> np.ndarray:
    """Warp (K, H, W) bool masks with nearest-neighbour sampling, 8 masks per bit-packed plane."""
    out = np.empty(masks.shape, bool)
    for g in range(0, masks.shape[0], 8):
        group = masks[g:g + 8].view(np.uint8)
        packed = group[0].copy()
        for k in range(1, len(group)):
            cv2.scaleAdd(group[k], float(1 << k), packed, dst=packed)  # bit k
        warped = cv2.remap(packed, map_nearest, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        for k in range(len(group)):
            cv2.LUT(warped, _BIT_LUTS[k], dst=out[g + k].view(np.uint8))
    return out  # (K, H, W)


def _photometric(frame: np.ndarray, prep: _Prepared, params: SensorParams, i: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Vignetting, then white balance and exposure, then shot + read noise; (H, W, 3) uint8."""
    h, w = frame.shape[:2]
    lit = cv2.multiply(frame, prep.vignette, scale=1.0 / 255.0) if params.vignette > 0 else frame
    lit = cv2.transform(lit, np.diag(frame_gains(params, i)).astype(np.float32))  # per-channel gain, saturated
    dy, dx = (int(v) for v in rng.integers(0, _NOISE_PAD + 1, 2))
    sigma = cv2.LUT(lit, prep.sigma_lut)  # (H, W, 3) int16
    noise = cv2.multiply(prep.noise[dy:dy + h, dx:dx + w], sigma, scale=1.0 / (_NOISE_ONE * _SIGMA_ONE),
                         dtype=cv2.CV_16S)  # (H, W, 3) levels
    return cv2.add(lit, noise, dtype=cv2.CV_8U)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def apply_sensor(frame_bgr: np.ndarray, masks: np.ndarray, params: SensorParams, frame_index: int,
                 speed_mps: float) -> tuple[np.ndarray, np.ndarray]:
    """Apply the drive's camera and sensor to one rendered frame and its masks.

    Args:
        frame_bgr: (H, W, 3) uint8 rendered frame.
        masks: (K, H, W) bool ground-truth masks aligned with ``frame_bgr``.
        params: from :func:`sample_sensor`.
        frame_index: the frame's index in the drive (selects its random draws and the drift).
        speed_mps: vehicle speed (scales the motion blur).

    Returns:
        ``(frame, masks)``: the camera's (H, W, 3) uint8 frame and the (K, H, W) bool masks warped
        with the same geometry. With ``params.is_identity`` the inputs themselves, unchanged.
    """
    if params.is_identity:
        return frame_bgr, masks
    h, w = frame_bgr.shape[:2]
    prep = _prepare(params, h, w)
    rng = np.random.default_rng([params.seed % 2**64, SENSOR_STREAM, 1, frame_index])
    if prep.map_linear is not None and prep.map_nearest is not None:
        frame_bgr = cv2.remap(frame_bgr, *prep.map_linear, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        masks = _warp_masks(masks, prep.map_nearest)
    length = min(params.blur_px_per_mps * max(speed_mps, 0.0) * rng.uniform(0.7, 1.3), BLUR_MAX_PX)
    angle = params.blur_angle_deg + rng.uniform(-15.0, 15.0)
    if length >= BLUR_MIN_PX:
        frame_bgr = cv2.filter2D(frame_bgr, -1, blur_kernel(length, angle), borderType=cv2.BORDER_REPLICATE)
    frame_bgr = _photometric(frame_bgr, prep, params, frame_index, rng)
    jitter = int(rng.integers(-JPEG_JITTER, JPEG_JITTER + 1))
    if params.jpeg_quality < 100:
        frame_bgr = _jpeg(frame_bgr, int(np.clip(params.jpeg_quality + jitter, *JPEG_QUALITY_RANGE)))
    return frame_bgr, masks
