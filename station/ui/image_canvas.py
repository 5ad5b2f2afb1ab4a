"""An image with its overlay layers, zoomable (wheel) and pannable (drag); double-click fits it again."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.core.overlay import Overlay


def to_qimage(array: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (RGB or RGBA uint8), so the numpy buffer may go."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    if array.ndim == 2:
        fmt, stride = QImage.Format.Format_Grayscale8, w
    elif array.shape[2] == 4:
        fmt, stride = QImage.Format.Format_RGBA8888, w * 4
    else:
        fmt, stride = QImage.Format.Format_RGB888, w * 3
    return QImage(array.data, w, h, stride, fmt).copy()


class ImageCanvas(QWidget):
    """Paints a frame, its heat layer at `opacity` and its marks; the GUI thread only paints here. A picture
    composed elsewhere (`set_composed`: the live view's, made in the inference thread) is drawn as it is."""

    painted = Signal()
    fit_area_changed = Signal()  # the area a fitted picture is drawn in changed (resized, zoomed in or back to fit)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 240)
        self._image: QImage | None = None
        self._heat: QImage | None = None
        self._marks: QImage | None = None
        self._composed = False  # _image already has the overlay in it (set_composed)
        self.overlay_visible = True
        self.opacity = 0.55
        self._zoom = 1.0  # relative to "fit"
        self._pan = QPointF(0, 0)
        self._drag: QPointF | None = None
        self.placeholder = "no image"
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def set_frame(self, image: np.ndarray | None, overlay: Overlay | None = None) -> None:
        self._image = None if image is None else to_qimage(image)
        self._heat = to_qimage(overlay.heat) if overlay is not None and overlay.heat is not None else None
        self._marks = to_qimage(overlay.marks) if overlay is not None and overlay.marks is not None else None
        self._composed = False
        self.update()

    def set_composed(self, image: QImage | None) -> None:
        """Draw `image` as it is: the frame with its overlay already blended in (one drawImage, no conversion).
        The overlay's visibility and opacity are then the composer's business, not this canvas's."""
        self._image, self._heat, self._marks, self._composed = image, None, None, image is not None
        self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_visible = bool(visible)
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(np.clip(opacity, 0.0, 1.0))
        self.update()

    def fit(self) -> None:
        was = self._zoom
        self._zoom, self._pan = 1.0, QPointF(0, 0)
        if was != 1.0:
            self.fit_area_changed.emit()
        self.update()

    def fit_area(self) -> tuple[int, int] | None:
        """The device pixels a picture fitted to the canvas may fill, (width, height); None while zoomed in (a
        picture is then drawn scaled from its own pixels)."""
        if self._zoom != 1.0:
            return None
        dpr = self.devicePixelRatioF()
        return max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.fit_area_changed.emit()

    @property
    def zoom(self) -> float:
        return self._zoom

    def zoom_by(self, factor: float, at: QPointF | None = None) -> None:
        target = float(np.clip(self._zoom * factor, 1.0, 20.0))
        if at is not None:  # keep the point under the cursor where it is
            rect = self._target_rect()
            centre = rect.center()
            k = target / self._zoom
            self._pan = self._pan + (at - centre) * (1 - k)
        was, self._zoom = self._zoom, target
        if self._zoom == 1.0:
            self._pan = QPointF(0, 0)
        if (was == 1.0) != (self._zoom == 1.0):
            self.fit_area_changed.emit()
        self.update()

    def _target_rect(self) -> QRectF:
        if self._image is None:
            return QRectF(self.rect())
        size = self._image.deviceIndependentSize()  # a picture composed for a HiDPI screen says its ratio
        iw, ih = size.width(), size.height()
        scale = min(self.width() / iw, self.height() / ih) * self._zoom
        w, h = iw * scale, ih * scale
        x = (self.width() - w) / 2 + self._pan.x()
        y = (self.height() - h) / 2 + self._pan.y()
        return QRectF(x, y, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        if self._image is None:
            p.setPen(QColor(200, 200, 200))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            p.end()
            return
        rect = self._target_rect()
        if self._composed and abs(rect.width() - self._image.deviceIndependentSize().width()) < 1.0:
            p.drawImage(rect.topLeft().toPoint(), self._image)  # composed at the size it is shown: no scaling
        else:
            # a composed picture carries anti-aliased marks: smooth at fit; zoomed in, the pixels as they are
            smooth = rect.width() < self._image.width() or (self._composed and self._zoom == 1.0)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
            p.drawImage(rect, self._image)
        if self.overlay_visible:
            if self._heat is not None and self.opacity > 0:
                p.setOpacity(self.opacity)
                p.drawImage(rect, self._heat)
                p.setOpacity(1.0)
            if self._marks is not None:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
                p.drawImage(rect, self._marks)
        p.end()
        self.painted.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.zoom_by(factor, event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag = event.position()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is not None and self._zoom > 1.0:
            self._pan += event.position() - self._drag
            self._drag = event.position()
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()
