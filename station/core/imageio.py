"""Reading and normalising images from disk: 1 to 4 channels of 8 or 16 bits, always RGB uint8 out, and no file
larger than the pixel budget or smaller than a part ever decoded."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from station.core.errors import ImageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MAX_IMAGE_BYTES = 256 * 1024 * 1024
# a pixel budget read from the header, before decoding: 50 MP is a 8192 x 6104 camera. `station inspect` of one
# 7000 x 7000 RGB PNG peaks at 534 MB resident (grey: 300 MB). OpenCV's warps take sides below 32767 px.
MAX_PIXELS = 50_000_000
MAX_SIDE = 20_000
MIN_SIDE = 16  # below this a frame holds no part to register
_CONVERTIBLE = frozenset({"1", "L", "P", "LA", "PA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
                          "HSV"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an HxWx3 uint8 RGB view of a grey, RGB or RGBA image of uint8 or uint16 depth."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ImageError("not an image array")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        image = np.clip(finite, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return image
    if channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise ImageError(f"unsupported number of channels: {channels}")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header alone, nothing decoded; ImageError if it is not an image or its
    size is outside MIN_SIDE..MAX_SIDE px a side or over MAX_PIXELS."""
    path = Path(path)
    with _opened(path) as image:
        return image.size


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8; a missing, empty, corrupt, too small or too large file raises ImageError.

    The size is checked from the header before anything is decoded (a 10 KB file can claim 30000 x 30000 px),
    and the decoder's complaints about damaged data become the one-line ImageError, never text on stderr."""
    path = Path(path)
    with _opened(path) as image:
        try:
            image.load()
            pixels = _pixels(image, path)
        except ImageError:
            raise
        except MemoryError:
            w, h = image.size
            raise ImageError(f"not enough memory to decode image {path} ({w} x {h} px)") from None
        except Exception as exc:  # noqa: BLE001 - a decoder fed damaged bytes raises anything; the file is bad
            logger.debug("decoding %s failed", path, exc_info=True)
            raise ImageError(f"corrupt or unsupported image file: {path} ({_why(exc)})") from None
    return pixels


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The file opened lazily by Pillow (header read, pixels not), its size within bounds."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageError(f"image file is empty: {path}")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"image file is too large ({size} bytes): {path}")
    # Pillow warns of decompression bombs above its own (higher) limit and of damaged metadata: our budget is
    # checked below, and a warning is logged, never printed over the one-line contract of the command line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageError(f"image {path} claims more than {MAX_PIXELS // 1_000_000} megapixels; refused "
                             "before decoding") from None
        except OSError as exc:  # not an image (UnidentifiedImageError), or unreadable
            if isinstance(exc, UnidentifiedImageError) or not exc.strerror:
                raise ImageError(f"corrupt or unsupported image file: {path}") from None
            raise ImageError(f"cannot read image {path}: {exc.strerror}") from None
        except Exception as exc:  # noqa: BLE001 - a header parser fed damaged bytes raises anything
            logger.debug("opening %s failed", path, exc_info=True)
            raise ImageError(f"corrupt or unsupported image file: {path} ({_why(exc)})") from None
        with image:
            w, h = image.size
            if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
                raise ImageError(f"image {path} is {w} x {h} px, over the limit of {MAX_PIXELS // 1_000_000} "
                                 f"megapixels and {MAX_SIDE} px a side; refused before decoding")
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"image {path} is {w} x {h} px, smaller than {MIN_SIDE} px a side")
            yield image
    for warning in caught:
        logger.debug("reading %s: %s", path, warning.message)


FEW_BITS = 4096  # a 16-bit grey image whose levels stay below this holds a 12-bit camera's (or fewer) values
_FEW_BITS_TOLD: set[Path] = set()  # folders whose few-bit images were named once (bounded below)


def _high_byte(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit grey levels as RGB uint8, by their high byte (a fixed rule: every frame of a product alike). A
    camera's 10- or 12-bit values saved in 16-bit files keep only 4 to 16 grey levels that way: said once per
    folder, so the engineer saves them another way rather than teaching a nearly black product."""
    top = int(values.max()) if values.size else 0
    if 0 < top < FEW_BITS and path.parent not in _FEW_BITS_TOLD and len(_FEW_BITS_TOLD) < 256:
        _FEW_BITS_TOLD.add(path.parent)
        logger.warning("%s: 16-bit grey levels reach only %d of 65535; read by their high byte they keep %d grey "
                       "levels: save the camera's images as 8-bit, or scaled to the full 16 bits (said once for "
                       "%s)", path, top, (top >> 8) + 1, path.parent)
    return to_rgb(values.astype(np.uint16))


def _pixels(image: Image.Image, path: Path) -> np.ndarray:
    """The decoded image as RGB uint8; 16-bit grey keeps its high byte, as 16-bit colour does in Pillow."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _high_byte(np.asarray(image), path)
    if mode == "I":  # 32-bit integers: 16-bit grey in older Pillow, or a signed image
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(f"image {path} has signed or 32-bit pixel values ({values.min()}..{values.max()}); "
                             "save it as 8- or 16-bit unsigned")
        return _high_byte(values, path)
    if mode.startswith("I;") or mode in ("F", "F;32F") or mode not in _CONVERTIBLE:
        raise ImageError(f"image {path} has pixels of type {mode!r} (signed, floating point or unknown); save it "
                         "as 8- or 16-bit unsigned")
    # no converted copy in Pillow first: one frame fewer in memory; the array is the caller's to write into
    if mode == "RGB":
        return np.array(image)
    if mode in ("L", "RGBA"):
        return to_rgb(np.asarray(image))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _why(exc: BaseException) -> str:
    """An exception in a few words, on one line."""
    text = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image atomically (temporary file, then rename), so a crash leaves no half file."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(to_rgb(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(f"cannot encode image as {path.suffix}")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(encoded.tobytes())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ImageError(f"cannot write image {path}: {exc.strerror or exc}") from None


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(to_rgb(image), cv2.COLOR_RGB2GRAY)
