"""The live view's picture, made in the inference thread: the frame with the shown engine's map blended in at
the operator's opacity, as one QImage that the GUI thread only has to draw.

Drawing the frame and two RGBA layers scaled, one of them at an opacity, cost the GUI thread about 1.6 ms a
frame (three scaled drawImage calls, each converting its format). The blend (0.15 ms at the demo's 256 px) and,
while the view is fitted, the smooth scaling to the size it is shown (about 1 ms to 700 px) are now Qt's
raster engine on QImages in the inference thread (QImage is reentrant: any thread may paint on its own; never
on a widget or a pixmap), and the GUI thread blits one RGB32 image (0.1 ms). Zoomed in, the picture is composed
at the frame's size and the painter scales it.

The view's choices (overlay on, opacity, which engine's map, the area it fills) are read by the inference
thread from a frozen `ViewChoice` that the GUI replaces whole; a frame composed just before a change is composed
again in the GUI thread, so the picture on screen always shows what the controls say, and always the result the
verdict beside it belongs to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage, QPainter

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


def _wrap(array: np.ndarray, fmt: QImage.Format) -> QImage:
    """A QImage over `array`'s pixels (no copy: the caller keeps the array alive while it is used)."""
    h, w = array.shape[:2]
    return QImage(array.data, w, h, array.strides[0], fmt)


def frame_image(frame: np.ndarray) -> QImage:
    """The frame (grey, RGB or RGBA uint8) as an RGB32 QImage that owns its pixels."""
    frame = np.ascontiguousarray(frame)
    if frame.ndim == 2:
        fmt = QImage.Format.Format_Grayscale8
    elif frame.shape[2] == 4:
        fmt = QImage.Format.Format_RGBA8888
    else:
        fmt = QImage.Format.Format_RGB888
    return _wrap(frame, fmt).convertToFormat(QImage.Format.Format_RGB32)


def blend(frame: np.ndarray, overlay: Overlay | None, opacity: float) -> QImage:
    """The frame as an RGB32 QImage with the heat layer at `opacity` and the marks on top, blended by Qt's raster
    engine (SIMD, and without the GIL: a numpy blend of the demo's 256 px frame took 3 ms and held it)."""
    out = frame_image(frame)
    if overlay is None:
        return out
    size = (out.height(), out.width())
    layers = [(np.ascontiguousarray(layer), k) for layer, k in ((overlay.heat, float(np.clip(opacity, 0.0, 1.0))),
                                                                 (overlay.marks, 1.0))
              if layer is not None and k > 0 and layer.shape[:2] == size]
    if layers:
        painter = QPainter(out)
        for layer, k in layers:
            painter.setOpacity(k)
            painter.drawImage(0, 0, _wrap(layer, QImage.Format.Format_RGBA8888))
        painter.end()
    return out


def scaled(image: QImage, size: tuple[int, int]) -> QImage:
    """`image` drawn smooth (bilinear) at `size`: a third of the time of QImage.scaled's smooth filter."""
    out = QImage(size[0], size[1], QImage.Format.Format_RGB32)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    painter.drawImage(QRect(0, 0, size[0], size[1]), image)
    painter.end()
    return out


def fitted(shape: tuple[int, ...], area: tuple[int, int] | None) -> tuple[int, int] | None:
    """(width, height) of a frame of `shape` fitted into `area`, at most MAX_SIDE; None: as it is."""
    if area is None:
        return None
    h, w = shape[:2]
    scale = min(area[0] / w, area[1] / h, MAX_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return None if size == (w, h) else size


def compose(item, choice: ViewChoice) -> Display | None:
    """`item`'s picture as `choice` says (None for a result without an image); any thread may call it."""
    image = item.frame.image
    if image is None:
        return None
    overlay = overlay_of(item, choice.engine) if choice.overlay_visible else None
    picture = blend(image, overlay, choice.opacity)
    size = fitted(image.shape, choice.area)
    if size is not None:  # the painter's smooth scaling, done here instead of in the GUI thread
        picture = scaled(picture, size)
    if choice.area is not None:
        picture.setDevicePixelRatio(choice.pixel_ratio)
    return Display(choice, picture, threading.get_ident())
