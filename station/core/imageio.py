"""Reading and normalising images from disk: any size, 1 or 3 (or 4) channels, always RGB uint8 out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from station.core.errors import ImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MAX_IMAGE_BYTES = 256 * 1024 * 1024


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8; a missing, empty or corrupt file raises ImageError."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageError(f"image file is empty: {path}")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"image file is too large ({size} bytes): {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError(f"corrupt or unsupported image file: {path}")
    if decoded.ndim == 3 and decoded.shape[2] >= 3:
        code = cv2.COLOR_BGRA2RGBA if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
        decoded = cv2.cvtColor(decoded, code)
    return to_rgb(decoded)


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
