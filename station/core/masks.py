"""Ground-truth masks of defective images, as the public inspection sets name and draw them.

MVTec AD names a test image's mask `ground_truth/<class>/<stem>_mask.png`; other sets in its layout name it
after the image alone (`<stem>.png`, BTAD), save it in another format, or give a folder of several masks for
one image (`<stem>/000.png`, MVTec LOCO), whose union is the defect. Masks are drawn 0 and 255, or 0 and 1,
and now and then at another size than their image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from station.core.errors import ImageError
from station.core.imageio import IMAGE_SUFFIXES, is_image_file, read_image

# suffixes tried for a mask, the usual one first
MASK_SUFFIXES = (".png",) + tuple(sorted(IMAGE_SUFFIXES - {".png"}))
MAX_MASK_FILES = 64  # masks of one image read from its folder, at most


def find_mask(folder: Path, stem: str) -> Path | None:
    """The mask of the image `stem` in `folder` (one defect class's ground truth): `<stem>_mask.*`, else
    `<stem>.*`, else a folder `<stem>/` holding masks; None where there is none."""
    for name in (f"{stem}_mask", stem):
        for suffix in MASK_SUFFIXES:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    sub = folder / stem
    if sub.is_dir() and any(is_image_file(p) for p in sub.iterdir()):
        return sub
    return None


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) bool: where the mask (or, for a folder, any of its masks) marks the defect, at `shape` (the
    image's height and width; the mask's own where None). A mask drawn 0 and 1 counts its 1s; one drawn
    0 and 255 (or saved as JPEG) its pixels above half. Raises ImageError for a mask that cannot be read."""
    files = sorted(p for p in path.iterdir() if is_image_file(p))[:MAX_MASK_FILES] if path.is_dir() else [path]
    if not files:
        raise ImageError(f"mask folder {path} holds no image")
    out = None
    for file in files:
        grey = read_image(file).max(axis=2)
        marked = grey > (127 if grey.max() > 1 else 0)
        size = shape or (out.shape if out is not None else marked.shape)
        if marked.shape != tuple(size):
            marked = cv2.resize(marked.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
        out = marked if out is None else out | marked
    return out
