"""What a frame must be before it is inspected, and what a frame that is not becomes.

A camera driver can hand over anything: two channels, one row of pixels, signed or float pixels, an
empty array. Such a frame is one bad frame, not the end of the line: a live line turns it into one NG
"bad frame" result with its reason (a part in front of the camera that could not be judged is never
passed; station.core.inspector.bad_frame_result), a replay reports it like an unreadable file, and
the next frame is inspected as usual.

A frozen camera repeats one buffer: a frame bit-identical to the one before carries nothing new.
`Repeats` spots that from a fingerprint of about 16 thousand evenly spaced samples of the frame
(0.1 to 0.2 ms a frame from 480 to 2048 px on a shared 2-core machine). It is meant for image
sensors only: their noise makes two real frames differ, while a replay of the same image file (a
folder, the demo line) repeats legitimately."""

from __future__ import annotations

import hashlib

import numpy as np

MIN_FRAME_SIDE = 16  # px; a part cannot be registered on fewer
MAX_FRAME_PIXELS = 100_000_000  # 100 MP: beyond any camera this station drives
MAX_FRAME_ASPECT = 20.0  # wider or taller than 20:1 is a torn or line-scan frame, not a picture of a part
PIXEL_TYPES = (np.uint8, np.uint16)  # what to_rgb turns into 8-bit without guessing a scale
CHANNELS = (1, 3, 4)  # grey, colour, colour with alpha
FINGERPRINT_SAMPLES = 16384


def frame_problem(image: object) -> str:
    """Why `image` cannot be inspected as a camera frame (grey, colour or colour with alpha, 8 or 16 bit),
    or "" when it can."""
    if not isinstance(image, np.ndarray):
        return f"not an image array ({type(image).__name__})"
    if image.size == 0:
        return f"empty frame (shape {tuple(image.shape)})"
    if image.ndim not in (2, 3):
        return f"{image.ndim} dimensions (shape {tuple(image.shape)}), not an image"
    if image.ndim == 3 and image.shape[2] not in CHANNELS:
        return f"{image.shape[2]} channels, not 1, 3 or 4"
    if image.dtype.type not in PIXEL_TYPES:
        return f"pixel type {image.dtype}, not 8 or 16 bit unsigned"
    h, w = image.shape[:2]
    if min(h, w) < MIN_FRAME_SIDE:
        return f"{w} x {h} px, below the {MIN_FRAME_SIDE} px minimum"
    if h * w > MAX_FRAME_PIXELS:
        return f"{w} x {h} px, above the {MAX_FRAME_PIXELS // 1_000_000} MP maximum"
    if max(h, w) / min(h, w) > MAX_FRAME_ASPECT:
        return f"{w} x {h} px, narrower than 1:{MAX_FRAME_ASPECT:g}"
    return ""


def fingerprint(image: np.ndarray) -> bytes:
    """A digest of evenly spaced samples of the frame's bytes (and its shape and type)."""
    flat = image.reshape(-1)  # a view for the contiguous frames cameras deliver
    sample = np.ascontiguousarray(flat[::max(1, flat.size // FINGERPRINT_SAMPLES)])
    digest = hashlib.blake2b(sample.data, digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    return digest.digest()


class Repeats:
    """Tells a new frame from a repeat of the last one, and for how long the repeats have gone on."""

    def __init__(self) -> None:
        self._last: bytes | None = None
        self._since: float | None = None  # when the repeated frame first arrived

    def seen(self, image: np.ndarray, now: float) -> float | None:
        """None for a new frame; for a repeat, the seconds since the repeated frame first arrived."""
        digest = fingerprint(image)
        if digest != self._last:
            self._last, self._since = digest, now
            return None
        return now - self._since

    def reset(self) -> None:
        self._last = self._since = None
