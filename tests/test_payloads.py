"""Image payloads of recordings: strict JPEG/PNG decoding, header size caps, QOI, raw byte order, file safety.

Real encoders write every input (OpenCV's libjpeg/libpng, the ``qoi`` package, zlib), and the
two real ROS bags of ctu-vras/qoi_image_transport hold the same picture as QOI and as raw
``rgb8`` with ``is_bigendian=1``, so each decodes against the other.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import qoi
from fuzzing.image_mutators import mutate_image
from fuzzing.reader_cases import outcome

from vbp_live.io.video import ImageFolderSource
from vbp_live.recordings.bagscan import BagScanner
from vbp_live.recordings.images import (
    CompressedImage,
    ImageError,
    RawImage,
    decode_payload,
    image_payload,
    image_size,
    read_image_file,
)
from vbp_live.recordings.rosmsg import MessageTypes


def scene(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth textured BGR frame (compresses like a camera image, not like noise)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 4)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(img.astype(int) + (xx * 255 // w)[..., None] // 2 - 60, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 90, progressive: bool = False) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE,
                                         int(progressive)])
    assert ok
    return buf.tobytes()


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def with_crc(chunk_type: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))


def reason(payload, **kw) -> str:
    with pytest.raises(ImageError) as e:
        decode_payload(payload, gray=False, **kw)
    assert "\n" not in str(e.value)
    return e.value.reason


# ---------------------------------------------------------------- JPEG

@pytest.mark.parametrize("progressive", [False, True])
def test_clean_jpeg_decodes_like_opencv(progressive):
    data = jpeg(scene(), progressive=progressive)
    buf = np.frombuffer(data, np.uint8)
    np.testing.assert_array_equal(decode_payload(data, gray=False), cv2.imdecode(buf, cv2.IMREAD_COLOR))
    np.testing.assert_array_equal(decode_payload(data, gray=True), cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))


def test_jpeg_with_zeroed_block_is_corrupt_not_smeared():
    data = bytearray(jpeg(scene()))
    sos = data.index(b"\xff\xda")
    data[sos + 2000 : sos + 2000 + 4096] = bytes(4096)
    guessed = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    assert guessed is not None  # OpenCV fills in what it could not read; we must not keep that frame
    assert reason(bytes(data)) == "corrupt_image"


def test_cut_jpeg_is_corrupt():
    data = jpeg(scene())
    with pytest.raises(ImageError, match="cut short"):
        decode_payload(data[: len(data) // 2], gray=True)


def _sof_patched(data: bytes, w: int, h: int) -> bytes:
    b = bytearray(data)
    sof = b.index(b"\xff\xc0")
    b[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def test_huge_jpeg_header_is_refused_before_decoding():
    data = _sof_patched(jpeg(scene(48, 64)), 16000, 16000)
    assert image_size(data) == ("jpeg", 16000, 16000)
    assert reason(data) == "image_too_large"
    small = jpeg(scene(48, 64))
    assert reason(small, max_pixels=64 * 48 - 1) == "image_too_large"
    assert decode_payload(small, gray=True, max_pixels=64 * 48).shape == (48, 64)


def test_jpeg_with_thousands_of_scans_is_refused():
    data = jpeg(scene(48, 64))
    bomb = data[:-2] + b"\xff\xda\x00\x02" * 300 + data[-2:]
    assert reason(bomb) == "corrupt_image"


# ---------------------------------------------------------------- PNG

def test_png_round_trip_and_damage():
    img = scene(60, 80)
    data = png(img)
    np.testing.assert_array_equal(decode_payload(data, gray=False), img)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    assert reason(bytes(flipped)) == "corrupt_image"  # CRC
    assert reason(data[: len(data) - 20]) == "corrupt_image"  # no IEND


def test_png_with_valid_crcs_but_short_image_data_is_corrupt():
    img = scene(60, 80)
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(30))  # half the rows, filter 0
    ihdr = struct.pack(">IIBBBBB", 80, 60, 8, 2, 0, 0, 0)
    chunks = with_crc(b"IHDR", ihdr) + with_crc(b"IDAT", zlib.compress(raw)) + with_crc(b"IEND", b"")
    data = b"\x89PNG\r\n\x1a\n" + chunks
    assert reason(data) == "corrupt_image"


def test_png_header_claiming_huge_size_is_refused():
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + with_crc(b"IHDR", ihdr) + with_crc(b"IDAT", zlib.compress(b"\x00" * 100))
    assert image_size(data) == ("png", 20000, 20000)
    assert reason(data) == "image_too_large"


# ---------------------------------------------------------------- raw sensor_msgs/Image

def test_raw_image_size_must_match_header():
    img = scene(20, 30)
    ok = RawImage(20, 30, "bgr8", 90, img.reshape(-1))
    np.testing.assert_array_equal(decode_payload(ok, gray=False), img)
    assert reason(RawImage(20, 30, "bgr8", 90, img.reshape(-1)[:-1])) == "corrupt_image"
    assert reason(RawImage(20, 30, "bgr8", 80, img.reshape(-1))) == "corrupt_image"
    assert reason(RawImage(16000, 16000, "bgr8", 48000, img.reshape(-1))) == "image_too_large"
    assert reason(RawImage(20, 30, "32FC1", 120, np.zeros(2400, np.uint8))) == "unsupported_image"


def test_raw_16bit_byte_order_and_8bit_unaffected():
    rng = np.random.default_rng(1)
    px = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    want = (px >> 8).astype(np.uint8)
    for big in (0, 1):
        data = np.frombuffer(px.astype(">u2" if big else "<u2").tobytes(), np.uint8)
        got = decode_payload(RawImage(6, 5, "mono16", 10, data, is_bigendian=big), gray=True)
        np.testing.assert_array_equal(got, want)
    rgb = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    data = np.frombuffer(rgb.astype(">u2").tobytes(), np.uint8)
    got = decode_payload(RawImage(6, 5, "rgb16", 30, data, is_bigendian=1), gray=False)
    np.testing.assert_array_equal(got, (rgb >> 8).astype(np.uint8)[..., ::-1])
    img8 = scene(6, 5)
    for big in (0, 1):
        got = decode_payload(RawImage(6, 5, "rgb8", 15, img8.reshape(-1), is_bigendian=big), gray=False)
        np.testing.assert_array_equal(got, img8[..., ::-1])


# ---------------------------------------------------------------- QOI and the real qoi_image_transport bags

def _bag_payload(path: Path):
    types = MessageTypes()
    for conn, _, raw in BagScanner(path).messages(lambda c: True):
        return image_payload(conn.msgtype, types.deserialize(conn, raw))
    raise AssertionError(f"{path}: no message")


def test_real_qoi_bags_decode_to_the_same_pixels(shared_data):
    comp = _bag_payload(shared_data / "rosbag1" / "qoi_compressed.bag")
    raw = _bag_payload(shared_data / "rosbag1" / "qoi_raw.bag")
    assert isinstance(comp, CompressedImage) and comp.format == "qoi; rgb8"
    assert isinstance(raw, RawImage) and raw.is_bigendian == 1 and raw.encoding == "rgb8"
    a, b = decode_payload(comp, gray=False), decode_payload(raw, gray=False)
    assert a.shape == (480, 640, 3)
    np.testing.assert_array_equal(a, b)
    rgb = np.asarray(raw.data).reshape(480, 640, 3)  # independent of our code: the recorded rgb8 bytes
    np.testing.assert_array_equal(a, rgb[..., ::-1])
    np.testing.assert_array_equal(decode_payload(comp, gray=True), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_qoi_we_encode_decodes_exactly(encoding):
    img = scene(30, 40, seed=3)
    ch = 4 if "a" in encoding[:4] else 3
    px = np.dstack([img, np.full((30, 40), 200, np.uint8)]) if ch == 4 else img  # BGR(A)
    stored = px[..., [2, 1, 0, 3][:ch]] if encoding.startswith("rgb") else px
    data = qoi.encode(np.ascontiguousarray(stored))
    np.testing.assert_array_equal(decode_payload(CompressedImage(f"qoi; {encoding}", data), gray=False), img)


def test_damaged_qoi_is_counted():
    data = qoi.encode(np.ascontiguousarray(scene(30, 40)))
    assert reason(CompressedImage("qoi; rgb8", data[: len(data) - 30])) == "corrupt_image"
    header = b"qoif" + struct.pack(">IIBB", 20000, 20000, 3, 0)
    assert reason(CompressedImage("qoi; rgb8", header + b"\x00" * 7 + b"\x01")) == "image_too_large"
    assert reason(CompressedImage("qoi; mono8", data)) in ("corrupt_image", "unsupported_image")


def test_qoi_without_the_package_is_unsupported_with_format_named(monkeypatch, shared_data):
    comp = _bag_payload(shared_data / "rosbag1" / "qoi_compressed.bag")
    monkeypatch.setitem(sys.modules, "qoi", None)  # as if the optional extra were not installed
    with pytest.raises(ImageError, match=r"qoi; rgb8.*'qoi' package") as e:
        decode_payload(comp, gray=False)
    assert e.value.reason == "unsupported_image"


def test_unknown_compressed_format_is_unsupported_not_a_crash():
    assert reason(CompressedImage("h265", b"\x00\x00\x00\x01" + bytes(60))) == "unsupported_image"
    assert reason(CompressedImage("jpeg", b"garbage!" * 10)) == "corrupt_image"


# ---------------------------------------------------------------- files

def test_files_that_are_not_regular_are_never_read(tmp_path):
    good = tmp_path / "a.jpg"
    good.write_bytes(jpeg(scene(48, 64)))
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "link.jpg"
    link.symlink_to(good)
    assert reason(fifo) == "not_regular_file"  # returns at once: opened non-blocking, never read
    assert reason(Path("/dev/zero")) == "not_regular_file"
    assert reason(link) == "not_regular_file"
    assert reason(tmp_path / "nope.jpg") == "missing_image"
    assert decode_payload(link, gray=True, follow_symlinks=True).shape == (48, 64)
    with pytest.raises(ImageError, match="more than"):
        read_image_file(good, max_bytes=100)


def test_image_folder_skips_and_counts_damaged_images(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg(scene(48, 64, seed=i)))
    bad = bytearray((tmp_path / "2.jpg").read_bytes())
    bad[len(bad) // 2 : len(bad) // 2 + 400] = bytes(400)
    (tmp_path / "2.jpg").write_bytes(bytes(bad))
    os.mkfifo(tmp_path / "5.jpg")
    src = ImageFolderSource(tmp_path)
    assert [r.index for r in src.frames()] == [0, 1, 3]
    assert src.corrupt == 2


# ---------------------------------------------------------------- seeded mutants (fuzz)

@pytest.mark.parametrize("kind", ["jpeg", "png", "qoi"])
def test_seeded_image_mutants_decode_or_are_refused_with_a_reason(kind):
    img = scene(120, 160, seed=7)
    base = {"jpeg": jpeg, "png": png, "qoi": lambda im: qoi.encode(im[..., ::-1].copy())}[kind](img)
    fmt = "qoi; rgb8" if kind == "qoi" else kind
    outcomes: Counter[str] = Counter()
    for seed in range(100):
        data, what = mutate_image(base, random.Random(seed))
        res = outcome(lambda data=data: decode_payload(CompressedImage(fmt, data), gray=False), timeout_s=10)
        if res == "read":
            out = decode_payload(CompressedImage(fmt, data), gray=False)
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            outcomes["decoded"] += 1
        else:
            with pytest.raises(ImageError) as e:
                decode_payload(CompressedImage(fmt, data), gray=False)
            outcomes[e.value.reason] += 1
    print(kind, dict(sorted(outcomes.items())))
    assert sum(outcomes.values()) == 100 and outcomes["decoded"] < 100
