"""Turn recorded image payloads into uint8 arrays: JPEG/PNG/QOI bytes, raw ROS images, files.

The one place where an image of a recording is decoded, and it decodes strictly:

* JPEG goes through libjpeg-turbo (``simplejpeg``) with ``strict=True``, so a corrupt-data warning
  (the decoder filled in what it could not read) is an error, never a smeared frame.
* PNG chunks are checked (CRC of every chunk, IHDR first, IEND last) and the image data is
  inflated to exactly the size the header states before OpenCV decodes it.
* QOI (``sensor_msgs/CompressedImage`` with ``format: "qoi; rgb8"``) needs the optional ``qoi``
  package; without it such frames are counted as ``unsupported_image`` with the format named.
* Raw ``sensor_msgs/Image``: width, height and step must match the data length exactly;
  16-bit encodings honour ``is_bigendian`` and are reduced to their high byte.

Every size comes from a header and is checked against a pixel cap before anything is
allocated. Every failure raises :class:`ImageError` with a reason (``corrupt_image``,
``image_too_large``, ``unsupported_image``, ``missing_image``, ``not_regular_file``), so the
caller skips the frame, counts it and reports it. Decoding runs in worker threads (the
decoders release the GIL).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import simplejpeg

from vbp_live.core.errors import InputError

MAX_PIXELS = 64_000_000  # default cap on width x height from any header (an 8K frame is 33 MP)
MAX_FILE_BYTES = 256 * 1024 * 1024  # image files larger than this are refused unread
MAX_JPEG_SCANS = 256  # progressive JPEGs need ~10; thousands of scans only burn CPU

CORRUPT, TOO_LARGE, UNSUPPORTED = "corrupt_image", "image_too_large", "unsupported_image"
MISSING, NOT_REGULAR = "missing_image", "not_regular_file"


class ImageError(InputError):
    """An image could not be decoded (reason in the message)."""

    def __init__(self, message: str, reason: str = CORRUPT):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawImage:
    """A ``sensor_msgs/Image``: pixels as recorded, with ROS's encoding name and byte order."""

    height: int
    width: int
    encoding: str
    step: int
    data: np.ndarray  # (step * height,) uint8
    is_bigendian: int = 0


@dataclass(frozen=True)
class CompressedImage:
    """A ``sensor_msgs/CompressedImage``: encoded bytes and the ``format`` string that came with them."""

    format: str
    data: bytes | memoryview | np.ndarray


Payload = bytes | memoryview | np.ndarray | RawImage | CompressedImage | Path

# ROS encoding -> (channels, bytes per channel, cv2 conversion to gray, to BGR); None = as is.
# Bayer names follow cv_bridge (ROS "rggb" is OpenCV's "BayerBG").
_RAW: dict[str, tuple[int, int, int | None, int | None]] = {
    "mono8": (1, 1, None, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, 1, None, cv2.COLOR_GRAY2BGR),
    "bgr8": (3, 1, cv2.COLOR_BGR2GRAY, None),
    "8UC3": (3, 1, cv2.COLOR_BGR2GRAY, None),
    "rgb8": (3, 1, cv2.COLOR_RGB2GRAY, cv2.COLOR_RGB2BGR),
    "bgra8": (4, 1, cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, 1, cv2.COLOR_RGBA2GRAY, cv2.COLOR_RGBA2BGR),
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2GRAY, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2GRAY, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2GRAY, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2GRAY, cv2.COLOR_BayerGB2BGR),
    "mono16": (1, 2, None, cv2.COLOR_GRAY2BGR),
    "16UC1": (1, 2, None, cv2.COLOR_GRAY2BGR),
    "bgr16": (3, 2, cv2.COLOR_BGR2GRAY, None),
    "rgb16": (3, 2, cv2.COLOR_RGB2GRAY, cv2.COLOR_RGB2BGR),
    "bgra16": (4, 2, cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2BGR),
    "rgba16": (4, 2, cv2.COLOR_RGBA2GRAY, cv2.COLOR_RGBA2BGR),
}

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_QOI_END = b"\x00" * 7 + b"\x01"


def image_payload(msgtype: str, msg: Any) -> Payload:
    """The payload of a deserialized ``sensor_msgs/CompressedImage`` or ``sensor_msgs/Image`` message."""
    if msgtype.endswith("CompressedImage"):
        return CompressedImage(str(getattr(msg, "format", "") or ""), msg.data)
    return RawImage(int(msg.height), int(msg.width), str(msg.encoding), int(msg.step), msg.data,
                    int(getattr(msg, "is_bigendian", 0) or 0))


def decode_payload(payload: Payload, gray: bool, max_pixels: int = MAX_PIXELS,
                   follow_symlinks: bool = False) -> np.ndarray:
    """Decode one payload to (H, W) gray or (H, W, 3) BGR uint8.

    Args:
        payload: encoded bytes (JPEG, PNG, QOI), a :class:`CompressedImage`, a :class:`RawImage`,
            or an image file path.
        gray: decode to one gray channel (for JPEG: the luma plane, no colour conversion).
        max_pixels: refuse images whose header states more pixels than this (before decoding).
        follow_symlinks: for a path: read a symbolic link's target (recordings: no, only
            regular files; a folder of images the user names: yes).

    Raises:
        ImageError: the payload cannot be decoded; ``reason`` says why.
    """
    if isinstance(payload, RawImage):
        return raw_to_array(payload, gray, max_pixels)
    fmt = ""
    if isinstance(payload, CompressedImage):
        fmt, payload = payload.format, payload.data
    if isinstance(payload, Path):
        payload = read_image_file(payload, follow_symlinks=follow_symlinks)
    return decode_bytes(np.frombuffer(payload, np.uint8), gray, max_pixels, fmt)


def read_image_file(path: Path, follow_symlinks: bool = False, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular image file; never blocks on a FIFO nor reads a device.

    Raises:
        ImageError: missing or unreadable (``missing_image``), a symbolic link (unless
            ``follow_symlinks``), FIFO, device or folder (``not_regular_file``), or too large.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError(f"{path}: image file missing", MISSING) from None
    except OSError as e:
        if not follow_symlinks and os.path.islink(path):
            raise ImageError(f"{path}: is a symbolic link; only regular files are read", NOT_REGULAR) from None
        raise ImageError(f"{path}: cannot read ({e.strerror})", MISSING) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path}: not a regular file (a FIFO, device or folder); not read", NOT_REGULAR)
        if st.st_size > max_bytes:
            raise ImageError(f"{path}: {st.st_size} bytes, more than the {max_bytes} an image may have", TOO_LARGE)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})", MISSING) from None
    finally:
        os.close(fd)


def image_size(buf: np.ndarray | bytes) -> tuple[str, int, int] | None:
    """``(kind, width, height)`` from a JPEG, PNG or QOI header alone; None for other data.

    Raises:
        ImageError: the data starts like one of these formats but its header is damaged.
    """
    head = bytes(buf[:32])
    if head[:3] == b"\xff\xd8\xff":
        if not _has_jpeg_end(bytes(buf[-32:])):
            raise ImageError("JPEG cut short (no end-of-image marker)")
        try:
            w, h, _, _ = _jpeg_header(buf)
        except ValueError as e:
            raise ImageError(f"JPEG header damaged ({e})") from None
        return "jpeg", w, h
    if head[:8] == _PNG_SIG:
        w, h = struct.unpack(">II", head[16:24]) if head[12:16] == b"IHDR" else (0, 0)
        return "png", w, h
    if head[:4] == b"qoif" and len(head) >= 14:
        w, h = struct.unpack(">II", head[4:12])
        return "qoi", w, h
    return None


def _jpeg_header(buf: np.ndarray | bytes) -> tuple[int, int, str, str]:
    return simplejpeg.decode_jpeg_header(buf)


def _check_pixels(kind: str, w: int, h: int, max_pixels: int) -> None:
    if w < 1 or h < 1:
        raise ImageError(f"{kind} header states a {w}x{h} image")
    if w * h > max_pixels:
        raise ImageError(f"{kind} header states {w}x{h} = {w * h} pixels, more than the cap of {max_pixels}; "
                         "not decoded", TOO_LARGE)


def decode_bytes(buf: np.ndarray, gray: bool, max_pixels: int = MAX_PIXELS, fmt: str = "") -> np.ndarray:
    """Decode JPEG, PNG or QOI bytes strictly; other formats OpenCV reads (BMP, WebP, ...) as OpenCV does.

    Args:
        buf: (N,) uint8 encoded image.
        gray: decode to one gray channel.
        max_pixels: pixel cap checked on the header before decoding.
        fmt: ``CompressedImage.format`` when known (names QOI's channel order; quoted in errors).
    """
    named = f" (format {fmt!r})" if fmt else ""
    if buf.size < 8:
        raise ImageError(f"image data too short ({buf.size} bytes){named}")
    size = image_size(buf)
    if size is None:
        return _decode_other(buf, gray, fmt)
    kind, w, h = size
    _check_pixels(kind.upper(), w, h, max_pixels)
    if kind == "jpeg":
        return _decode_jpeg(buf, gray)
    if kind == "png":
        return _decode_png(buf, gray)
    return _decode_qoi(buf, gray, fmt, max_pixels)


def _decode_jpeg(buf: np.ndarray, gray: bool) -> np.ndarray:
    data = bytes(buf)
    if data.count(b"\xff\xda") > MAX_JPEG_SCANS:  # entropy data stuffs 0xFF as FF 00: every FF DA is a scan
        raise ImageError(f"JPEG with more than {MAX_JPEG_SCANS} scans; not decoded")
    try:
        _, _, colorspace, _ = _jpeg_header(data)
        if colorspace in ("CMYK", "YCCK"):  # turbojpeg does not convert these: check strictly, then OpenCV
            simplejpeg.decode_jpeg(data, "CMYK", strict=True)
            return _decode_other(buf, gray, "jpeg")
        img = simplejpeg.decode_jpeg(data, "GRAY" if gray else "BGR", strict=True)
    except ValueError as e:
        raise ImageError(f"corrupt JPEG ({len(data)} bytes): {str(e).strip()}") from None
    return img[:, :, 0] if gray else img  # (H, W) or (H, W, 3)


def _has_jpeg_end(data: bytes) -> bool:
    return data[-32:].rstrip(b"\x00").endswith(b"\xff\xd9")  # some encoders pad after the marker


def _decode_png(buf: np.ndarray, gray: bool) -> np.ndarray:
    data = bytes(buf)
    ihdr, idat = _png_chunks(data)
    w, h, depth, ctype, method, filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or interlace > 1 or method or filt:
        raise ImageError(f"PNG header invalid (bit depth {depth}, colour type {ctype}, compression {method}, "
                         f"filter {filt}, interlace {interlace})")
    expected = _png_raw_size(w, h, _PNG_CHANNELS[ctype] * depth, interlace)
    z = zlib.decompressobj()
    try:
        raw = z.decompress(idat, expected + 1)
    except zlib.error as e:
        raise ImageError(f"corrupt PNG image data: {e}") from None
    if len(raw) != expected or not z.eof or z.unconsumed_tail or z.unused_data:
        raise ImageError(f"corrupt PNG image data: {len(raw)} bytes inflated, the header states {expected}")
    return _decode_other(buf, gray, "png")


def _png_chunks(data: bytes) -> tuple[bytes, bytes]:
    """(IHDR payload, concatenated IDAT payloads); every chunk's CRC checked, IEND required."""
    pos, ihdr, idat = 8, b"", []
    while pos + 12 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data):
            break
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        if zlib.crc32(data[pos + 4 : pos + 8 + n]) != crc:
            raise ImageError(f"corrupt PNG: CRC mismatch in chunk {kind!r} at byte {pos}")
        if pos == 8 and (kind != b"IHDR" or n != 13):
            raise ImageError("corrupt PNG: the first chunk is not a 13-byte IHDR")
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            return ihdr, b"".join(idat)
        pos += 12 + n
    raise ImageError(f"PNG cut short (no IEND chunk; {len(data)} bytes)")


def _png_raw_size(w: int, h: int, bits_per_pixel: int, interlace: int) -> int:
    """Bytes of filtered scanlines the IDAT stream must inflate to."""
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
        if pw > 0 and ph > 0:
            total += ph * (1 + (pw * bits_per_pixel + 7) // 8)
    return total


def _decode_qoi(buf: np.ndarray, gray: bool, fmt: str, max_pixels: int) -> np.ndarray:
    encoding = _qoi_encoding(fmt)
    data = bytes(buf)
    if not data.endswith(_QOI_END):
        raise ImageError(f"QOI image{_quoted(fmt)} cut short (no end marker)")
    channels = data[12]
    if channels not in (3, 4) or _RAW.get(encoding, (0,))[0] != channels:
        raise ImageError(f"QOI image{_quoted(fmt)} has {channels} channels; its encoding {encoding!r} does not fit",
                         UNSUPPORTED if encoding not in _RAW else CORRUPT)
    try:
        import qoi  # optional extra: a frame that needs it and finds none is counted, not a crash
    except ImportError:
        raise ImageError(f"QOI image{_quoted(fmt)}: install the optional 'qoi' package to decode it",
                         UNSUPPORTED) from None
    try:
        px = qoi.decode(data)
    except (ValueError, RuntimeError) as e:
        raise ImageError(f"corrupt QOI image{_quoted(fmt)}: {e}") from None
    h, w = px.shape[:2]  # (H, W, C)
    raw = RawImage(h, w, encoding, w * channels, np.ascontiguousarray(px, np.uint8).reshape(-1))
    return raw_to_array(raw, gray, max_pixels)


def _qoi_encoding(fmt: str) -> str:
    """The channel order of a QOI payload: ``"qoi; rgb8"`` -> ``rgb8`` (qoi_image_transport: bgr8 when empty)."""
    parts = [p.strip() for p in fmt.split(";", 1)]
    return parts[1] if len(parts) == 2 and parts[0].lower() == "qoi" and parts[1] else "bgr8"


def _quoted(fmt: str) -> str:
    return f" (format {fmt!r})" if fmt else ""


def _decode_other(buf: np.ndarray, gray: bool, fmt: str) -> np.ndarray:
    """OpenCV for data the strict decoders above already checked, or formats they do not cover."""
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ImageError(f"undecodable image data{_quoted(fmt)} ({buf.size} bytes): "
                         f"{str(e).strip().splitlines()[-1]}") from None
    if img is None:
        known = not fmt or any(k in fmt.lower() for k in ("jpeg", "jpg", "png"))
        raise ImageError(f"undecodable image data{_quoted(fmt)} ({buf.size} bytes, starts {bytes(buf[:4]).hex()})",
                         CORRUPT if known else UNSUPPORTED)
    return img


def raw_to_array(img: RawImage, gray: bool, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Convert a raw ROS image (8-bit encodings incl. Bayer, 16-bit ones by their high byte) to gray or BGR.

    The data length must equal ``step * height`` and ``step`` must hold a row; 16-bit samples are
    read in the byte order ``is_bigendian`` states.
    """
    if img.encoding not in _RAW:
        raise ImageError(f"unsupported raw image encoding {img.encoding!r}; supported: {sorted(_RAW)}", UNSUPPORTED)
    ch, nbytes, to_gray, to_bgr = _RAW[img.encoding]
    _check_pixels(f"raw {img.encoding}", img.width, img.height, max_pixels)
    need = img.step * img.height
    size = int(np.asarray(img.data).size)
    if img.step < img.width * ch * nbytes or size != need:
        raise ImageError(f"raw {img.encoding} image {img.width}x{img.height} step {img.step}: {size} bytes, "
                         f"the header states {need}")
    rows = np.asarray(img.data, np.uint8).reshape(img.height, img.step)[:, : img.width * ch * nbytes]
    if nbytes == 2:
        rows = np.ascontiguousarray(rows).view(">u2" if img.is_bigendian else "<u2")  # (H, W * ch)
        rows = (rows >> 8).astype(np.uint8)
    arr = rows.reshape(img.height, img.width, ch) if ch > 1 else rows  # (H, W[, ch])
    code = to_gray if gray else to_bgr
    try:
        out = cv2.cvtColor(np.ascontiguousarray(arr), code) if code is not None else arr
    except cv2.error as e:
        raise ImageError(f"cannot convert raw {img.encoding} image: {str(e).strip().splitlines()[-1]}") from None
    return np.ascontiguousarray(out)
