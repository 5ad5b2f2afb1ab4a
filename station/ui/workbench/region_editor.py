"""The region editor: the golden image with the inspection region and its grid, which the engineer corrects
by dragging corners, sides, grid lines, the inside or the rotation handle (the geometry is in
`region_geometry`)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.core.imageio import to_rgb
from station.core.pattern import Roi
from station.core.teach import grid_lines
from station.ui.image_canvas import to_qimage
from station.ui.workbench.region_geometry import Grab, dragged_region, grab_at, top_middle

HANDLE_PX = 6.0  # half the side of a corner handle, view px
ROTATE_PX = 30.0  # the rotation handle's distance above the region's top side, view px
PICK_PX = 8.0  # how near the pointer must be to grab a handle or a line, view px
REGION_COLOUR = QColor(255, 176, 0)
GRID_COLOUR = QColor(0, 220, 255)
EDIT_HELP = ("Drag a corner to resize (the opposite corner stays; with Shift the corner moves alone and the region "
             "leans to fit the four corners), a side or a grid line to fit the pitch, inside to move; the round "
             "handle turns the region. Arrow keys move it by 1 px (Shift: 10 px). The filled corner is the first "
             "cell's (column 1, row 1).")


class RegionEditor(QWidget):
    """The golden image with the region and its grid; corners, sides, grid lines, inside and the rotation
    handle are dragged with the mouse. Coordinates are golden-frame px; the view only scales to fit."""

    roi_changed = Signal(object)  # Roi, while the engineer drags
    edit_finished = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(360, 320)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip(EDIT_HELP)
        self._image: QImage | None = None
        self._size = (0, 0)
        self._roi: Roi | None = None
        self._cols, self._rows = 1, 1
        self._drag: Grab | None = None
        self._start_roi: Roi | None = None
        self._start_point = np.zeros(2)
        self.placeholder = "no image"

    # -- model ----------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray | None) -> None:
        self._image = None if rgb is None else to_qimage(to_rgb(rgb))
        self._size = (0, 0) if rgb is None else (int(rgb.shape[1]), int(rgb.shape[0]))
        self.update()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    @property
    def roi(self) -> Roi | None:
        return self._roi

    def set_roi(self, roi: Roi | None) -> None:
        """Set from outside (spin boxes, a proposal): no roi_changed."""
        self._roi = roi
        self.update()

    def set_grid(self, cols: int, rows: int) -> None:
        self._cols, self._rows = max(1, int(cols)), max(1, int(rows))
        self.update()

    @property
    def grid(self) -> tuple[int, int]:
        return self._cols, self._rows

    # -- geometry -------------------------------------------------------------------------------
    def _fit(self) -> tuple[float, float, float]:
        """(scale, x offset, y offset) of the image in the widget."""
        w, h = self._size
        if not w or not h:
            return 1.0, 0.0, 0.0
        margin = ROTATE_PX + 12.0  # room for the rotation handle above a region at the image's top
        s = max(1e-6, min((self.width() - 2 * margin) / w, (self.height() - 2 * margin) / h))
        return s, (self.width() - w * s) / 2, (self.height() - h * s) / 2

    @property
    def view_scale(self) -> float:
        return self._fit()[0]

    def to_view(self, point) -> QPointF:
        s, ox, oy = self._fit()
        return QPointF(ox + float(point[0]) * s, oy + float(point[1]) * s)

    def to_image(self, pos: QPointF) -> np.ndarray:
        s, ox, oy = self._fit()
        return np.array([(pos.x() - ox) / s, (pos.y() - oy) / s])

    def rotation_handle(self) -> np.ndarray:
        """The rotation handle in image px: above the middle of the region's top side."""
        return top_middle(self._roi) - self._roi.axes()[1] * ROTATE_PX / self.view_scale

    def hit(self, pos: QPointF) -> Grab | None:
        """What a press at `pos` (view px) grabs: ("rotate", 0), ("corner", i), ("col", i), ("row", j),
        ("move", 0) or None."""
        if self._roi is None or self._image is None:
            return None
        s = self.view_scale
        p = self.to_image(pos)
        reach = PICK_PX / s
        if np.linalg.norm(p - self.rotation_handle()) <= reach + 2 / s:
            return "rotate", 0
        return grab_at(self._roi, self._cols, self._rows, p, reach)

    def dragged(self, start: Roi, grab: Grab, start_point: np.ndarray, point: np.ndarray) -> Roi:
        """The region after dragging what `grab` names from `start_point` to `point` (image px), on this grid;
        a corner dragged alone where no region fits the four corners leaves the last good one."""
        roi = dragged_region(start, grab, start_point, point, self._cols, self._rows)
        return self._roi if roi is None else roi

    # -- mouse and keys -------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        grab = self.hit(event.position())
        if grab is None:
            return super().mousePressEvent(event)
        if grab[0] == "corner" and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            grab = ("corners", grab[1])
        self._drag, self._start_roi = grab, self._roi
        self._start_point = self.to_image(event.position())
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is None:  # only the pointer's shape follows the hover
            self.setCursor(self._cursor(self.hit(event.position())))
            return
        roi = self.dragged(self._start_roi, self._drag, self._start_point, self.to_image(event.position()))
        if roi != self._roi:
            self._roi = roi
            self.update()
            self.roi_changed.emit(roi)
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mouseReleaseEvent(event)
        self.mouseMoveEvent(event)
        self._drag = None
        self.edit_finished.emit()
        event.accept()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        steps = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0), Qt.Key.Key_Up: (0, -1), Qt.Key.Key_Down: (0, 1)}
        if self._roi is None or event.key() not in steps:
            return super().keyPressEvent(event)
        k = 10.0 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1.0
        dx, dy = steps[event.key()]
        r = self._roi
        self._roi = Roi(r.cx + k * dx, r.cy + k * dy, r.w, r.h, r.angle, r.shear)
        self.update()
        self.roi_changed.emit(self._roi)
        self.edit_finished.emit()

    @staticmethod
    def _cursor(grab: Grab | None) -> Qt.CursorShape:
        shapes = {"rotate": Qt.CursorShape.PointingHandCursor, "corner": Qt.CursorShape.CrossCursor,
                  "corners": Qt.CursorShape.CrossCursor,
                  "col": Qt.CursorShape.SplitHCursor, "row": Qt.CursorShape.SplitVCursor,
                  "move": Qt.CursorShape.SizeAllCursor}
        return shapes.get(grab[0], Qt.CursorShape.ArrowCursor) if grab else Qt.CursorShape.ArrowCursor

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        try:
            p.fillRect(self.rect(), QColor(28, 28, 28))
            if self._image is None:
                p.setPen(QColor(200, 200, 200))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
                return
            s, ox, oy = self._fit()
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF(ox, oy, self._size[0] * s, self._size[1] * s), self._image)
            if self._roi is not None:
                self._paint_region(p)
        finally:
            p.end()

    def _line(self, p: QPainter, a, b, colour: QColor, width: float) -> None:
        # a dark casing under each line keeps it readable over bright pins and dark housings alike
        p.setPen(QPen(QColor(0, 0, 0, 170), width + 2.0))
        p.drawLine(self.to_view(a), self.to_view(b))
        p.setPen(QPen(colour, width))
        p.drawLine(self.to_view(a), self.to_view(b))

    def _paint_region(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        roi = self._roi
        lines = grid_lines(roi, self._cols, self._rows)
        inner = lines[1:self._cols] + lines[self._cols + 2:-1]
        for a, b in inner:
            self._line(p, a, b, GRID_COLOUR, 1.4)
        corners = roi.corners()
        outline = QPolygonF([self.to_view(c) for c in corners])
        path = QPainterPath()
        path.addPolygon(outline)
        path.closeSubpath()
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 170), 4.5))
        p.drawPath(path)
        p.setPen(QPen(REGION_COLOUR, 2.5))
        p.drawPath(path)
        handle = self.rotation_handle()
        self._line(p, top_middle(roi), handle, REGION_COLOUR, 1.5)
        p.setPen(QPen(QColor(20, 20, 20), 1.5))
        p.setBrush(REGION_COLOUR)
        p.drawEllipse(self.to_view(handle), HANDLE_PX + 1, HANDLE_PX + 1)
        for i, c in enumerate(corners):
            v = self.to_view(c)
            p.setBrush(REGION_COLOUR if i == 0 else QColor(250, 250, 250))
            p.drawRect(QRectF(v.x() - HANDLE_PX, v.y() - HANDLE_PX, 2 * HANDLE_PX, 2 * HANDLE_PX))
