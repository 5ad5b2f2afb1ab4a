"""The live view's picture, made in the inference thread: the frame with the shown engine's map blended in at
the operator's opacity, as one QImage that the GUI thread only has to draw.

Drawing the frame and two RGBA layers scaled, one at an opacity, cost the GUI thread about 1.6 ms a frame
(three scaled drawImage calls, each converting its format); one RGB32 image costs a quarter of that, and the
blend itself (integer numpy at the frame's size) runs beside the engines instead of in the event loop. The
view's choices (overlay on, opacity, which engine's map) are read by the inference thread from a frozen
`ViewChoice` that the GUI replaces whole; a frame composed just before a change is composed again in the GUI
thread, so the picture on screen always shows what the controls say, and always the result it belongs to.
While the view is fitted (not zoomed in) the picture is composed at the size it is shown, so the GUI draws it
without scaling (0.1 ms instead of 1 ms for a smooth scaled draw of the demo's 256 px frame to 700 px).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QImage

from station.core.overlay import Overlay

FOLLOW_VERDICT = ""  # the map choice that follows the engine the verdict came from
MAX_SIDE = 4096  # the longest side a picture is composed at; a larger view scales it when it draws


@dataclass(frozen=True)
class ViewChoice:
    """What the live view shows over the frame."""

    overlay_visible: bool = True
    opacity: float = 0.55
    engine: str = FOLLOW_VERDICT  # whose map; FOLLOW_VERDICT: the engine the verdict followed
    area: tuple[int, int] | None = None  # device pixels the fitted picture may fill; None: the frame's own size
    pixel_ratio: float = 1.0  # device pixels per logical pixel of the screen it is shown on


@dataclass(frozen=True)
class Display:
    """A result's picture as the live view draws it, and the choice and thread it was made with."""

    choice: ViewChoice
    image: QImage
    thread: int  # threading.get_ident() of the thread that composed it


def shown_engine(item, engine: str = FOLLOW_VERDICT) -> str | None:
    """The engine whose map is shown for `item` (a LiveResult): the one chosen, else the verdict's."""
    if engine:
        return engine
    result = getattr(item, "result", None)
    if result is not None and "engine" in result.extra:
        return result.extra["engine"]
    return next(iter(item.overlays), None) if item is not None else None


def overlay_of(item, engine: str = FOLLOW_VERDICT) -> Overlay | None:
    name = shown_engine(item, engine)
    return item.overlays.get(name, item.overlay) if name else item.overlay


def blend(frame: np.ndarray, overlay: Overlay | None, opacity: float) -> np.ndarray:
    """The frame (grey, RGB or RGBA uint8) as RGB uint8 with the heat layer at `opacity` and the marks on top."""
    out = np.asarray(frame)
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    elif out.shape[2] == 4:
        out = out[..., :3]
    if overlay is None:
        return np.ascontiguousarray(out)
    k = int(round(float(np.clip(opacity, 0.0, 1.0)) * 256))
    for layer, weight in ((overlay.heat, k), (overlay.marks, 256)):
        if layer is None or weight == 0 or layer.shape[:2] != out.shape[:2]:
            continue
        alpha = (layer[..., 3:4].astype(np.uint16) * weight) >> 8  # 0..255
        if not alpha.any():
            continue
        mixed = out.astype(np.uint16) * (255 - alpha) + layer[..., :3].astype(np.uint16) * alpha
        out = ((mixed + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def fitted(shape: tuple[int, ...], area: tuple[int, int] | None) -> tuple[int, int] | None:
    """(width, height) of a frame of `shape` fitted into `area`, at most MAX_SIDE; None: as it is."""
    if area is None:
        return None
    h, w = shape[:2]
    scale = min(area[0] / w, area[1] / h, MAX_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return None if size == (w, h) else size


def to_rgb32(rgb: np.ndarray) -> QImage:
    """An RGB uint8 array as a QImage in the raster engine's native RGB32 (drawn without a conversion)."""
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, w * 3, QImage.Format.Format_RGB888).convertToFormat(QImage.Format.Format_RGB32)


def compose(item, choice: ViewChoice) -> Display | None:
    """`item`'s picture as `choice` says (None for a result without an image); any thread may call it."""
    image = item.frame.image
    if image is None:
        return None
    overlay = overlay_of(item, choice.engine) if choice.overlay_visible else None
    rgb = blend(image, overlay, choice.opacity)
    size = fitted(rgb.shape, choice.area)
    if size is not None:  # smooth like the painter's scaling, done here instead of in the GUI thread
        shrink = size[0] < rgb.shape[1]
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    picture = to_rgb32(rgb)
    if choice.area is not None:
        picture.setDevicePixelRatio(choice.pixel_ratio)
    return Display(choice, picture, threading.get_ident())
