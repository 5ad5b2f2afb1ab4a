"""Generated bad input files for the fuzz test and scripts/fuzz_inputs.py: broken and hostile images (truncated,
headers that claim huge sizes, random bytes, odd shapes and pixel types) and broken recipe and settings JSON.

Every file is small on disk: a header that claims 100000 x 100000 pixels costs a few bytes, a PNG of
9000 x 9000 zeros under 100 KB. `bad_images(n, seed)` gives `n` (name, bytes) pairs, deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator

import cv2
import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, colour: int = 0, depth: int = 8) -> bytes:
    """A PNG whose valid IHDR claims `width` x `height` and whose image data is a few bytes of nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) \
        + _chunk(b"IEND", b"")


def png_of_zeros(width: int, height: int) -> bytes:
    """A real, complete grey PNG of `width` x `height` zeros: tiny on disk, huge once decoded."""
    row = b"\x00" * (width + 1)  # filter byte + pixels
    z = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 20) // len(row))
    block = z.compress(row * rows_per_block)
    parts, done = [block], rows_per_block
    while done + rows_per_block <= height:
        parts.append(z.compress(row * rows_per_block))
        done += rows_per_block
    parts.append(z.compress(row * (height - done)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def jpeg_header_lie(width: int, height: int, rng: random.Random) -> bytes:
    """A small valid JPEG whose frame header (SOF0) is rewritten to claim `width` x `height`."""
    ok, enc = cv2.imencode(".jpg", np.full((64, 64, 3), rng.randrange(256), np.uint8))
    data = bytearray(enc.tobytes())
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    return bytes(data)


def bmp_header_lie(width: int, height: int) -> bytes:
    """A BMP whose info header claims `width` x `height` at 24 bits, with 54 bytes of pixels."""
    pixels = b"\x00" * 54
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def tiff_header_lie(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose IFD claims `width` x `height` grey pixels in one 16-byte strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 else struct.pack("<HHIHH", tag, kind,
                                                                                           count, value, 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 16


def webp_header_lie(width: int, height: int) -> bytes:
    """A WebP (VP8X extended header) whose canvas claims `width` x `height` (each at most 2**24)."""
    w, h = min(width, 1 << 24) - 1, min(height, 1 << 24) - 1
    vp8x = b"\x00\x00\x00\x00" + w.to_bytes(3, "little") + h.to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, enc = cv2.imencode(suffix, image)
    if not ok:
        raise ValueError(f"cannot encode {image.shape} {image.dtype} as {suffix}")
    return enc.tobytes()


def _random_image(rng: random.Random, size: int = 64) -> np.ndarray:
    return np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _two_channel_png(rng: random.Random) -> bytes:
    """Grey + alpha: PNG colour type 4, which OpenCV reads as 4 channels and Pillow as LA."""
    w = h = 32
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(2 * w)) for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


# -- the kinds of bad image, each a function of a seeded generator ---------------------------------------------

def _kinds() -> list[tuple[str, str, Callable[[random.Random], bytes]]]:
    return [
        ("empty", ".png", lambda r: b""),
        ("random", "", lambda r: r.randbytes(r.choice((1, 7, 64, 600, 5000)))),
        ("png-magic-random", ".png", lambda r: b"\x89PNG\r\n\x1a\n" + r.randbytes(r.randrange(8, 400))),
        ("jpeg-magic-random", ".jpg", lambda r: b"\xff\xd8\xff\xe0" + r.randbytes(r.randrange(8, 400))),
        ("truncated-png", ".png", lambda r: (lambda d: d[:r.randrange(8, len(d) - 1)])(
            encoded(_random_image(r), ".png"))),
        ("truncated-jpeg", ".jpg", lambda r: (lambda d: d[:r.randrange(4, len(d) - 1)])(
            encoded(_random_image(r), ".jpg"))),
        ("flipped-bytes-png", ".png", lambda r: _flip(encoded(_random_image(r), ".png"), r)),
        ("flipped-bytes-jpeg", ".jpg", lambda r: _flip(encoded(_random_image(r), ".jpg"), r)),
        ("png-claims-30000", ".png", lambda r: png_header_only(30000, 30000)),
        ("png-claims-100000", ".png", lambda r: png_header_only(100000, 100000)),
        ("png-claims-wide", ".png", lambda r: png_header_only(r.choice((40000, 2_000_000)), 16)),
        ("jpeg-claims-30000", ".jpg", lambda r: jpeg_header_lie(30000, 30000, r)),
        ("jpeg-claims-65535", ".jpg", lambda r: jpeg_header_lie(65535, 65535, r)),
        ("bmp-claims-30000", ".bmp", lambda r: bmp_header_lie(30000, 30000)),
        ("bmp-claims-100000", ".bmp", lambda r: bmp_header_lie(100000, -100000)),
        ("tiff-claims-30000", ".tif", lambda r: tiff_header_lie(30000, 30000)),
        ("tiff-claims-100000", ".tiff", lambda r: tiff_header_lie(100000, 100000)),
        ("webp-claims-huge", ".webp", lambda r: webp_header_lie(r.choice((30000, 100000)), 30000)),
        ("png-zeros-9000", ".png", lambda r: _zeros_9000()),
        ("one-by-thousand", ".png", lambda r: encoded(np.zeros((1, 1000, 3), np.uint8), ".png")),
        ("thousand-by-one", ".png", lambda r: encoded(np.zeros((1000, 1), np.uint8), ".png")),
        ("tiny", ".png", lambda r: encoded(np.zeros((r.randrange(1, 16), r.randrange(1, 16)), np.uint8), ".png")),
        ("two-channel", ".png", _two_channel_png),
        ("int16-tiff", ".tif", lambda r: encoded(np.random.default_rng(r.randrange(99)).integers(
            -32768, 32767, (40, 40), dtype=np.int16), ".tiff")),
        ("float32-tiff", ".tif", lambda r: encoded(np.random.default_rng(r.randrange(99)).normal(
            0, 1e6, (40, 40)).astype(np.float32), ".tiff")),
        ("wrong-suffix", ".png", lambda r: encoded(_random_image(r), ".jpg")),
        ("text-as-image", ".jpg", lambda r: b"this is not an image\n" * r.randrange(1, 50)),
    ]


_ZEROS: dict[str, bytes] = {}


def _zeros_9000() -> bytes:
    if "9000" not in _ZEROS:  # 81 megapixels of zeros: about 80 KB, made once
        _ZEROS["9000"] = png_of_zeros(9000, 9000)
    return _ZEROS["9000"]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 12)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def bad_images(n: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """`n` bad image files as (file name, content): every kind in turn, each with its own seeded variation."""
    rng = random.Random(seed)
    kinds = _kinds()
    for i in range(n):
        kind, suffix, make = kinds[i % len(kinds)]
        suffix = suffix or rng.choice(SUFFIXES)
        yield f"{i:04d}-{kind}{suffix}", make(rng)


KIND_COUNT = len(_kinds())


# -- bad JSON documents (settings, recipes) -----------------------------------------------------------------

def bad_json_texts(seed: int = 0) -> list[tuple[str, str]]:
    """(kind, text) of JSON a person or a broken disk could leave in a settings or recipe file."""
    rng = random.Random(seed)
    deep = rng.choice((5000, 100000))
    return [
        ("nested-lists", "[" * deep + "]" * deep),
        ("nested-objects", '{"a":' * 3000 + "1" + "}" * 3000),
        ("unclosed-nesting", "[" * 200000),
        ("not-json", "not json"),
        ("nan", '{"version": NaN, "demo_fps": NaN}'),
        ("infinity", '{"demo_fps": Infinity, "overlay_opacity": -Infinity}'),
        ("wrong-types", '{"version": "one", "source": 7, "demo_fps": [1], "recent_results": {"a": 1}}'),
        ("huge-number", '{"version": 1' + "0" * 5000 + "}"),
        ("array", "[1, 2, 3]"),
        ("null", "null"),
        ("empty", ""),
        ("truncated", '{"version": 1, "source": "de'),
        ("binary", rng.randbytes(300).decode("latin-1")),
        ("long-string", json.dumps({"source": "x" * 200000})),
    ]
