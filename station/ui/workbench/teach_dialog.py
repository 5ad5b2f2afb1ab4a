"""Teaching a product in the GUI: the station's proposal (region and grid) over the golden image, corrected
by dragging, checked on good images where registration puts the grid, and saved as a setup folder
(engineer mode only, audited) that `station train --setup` follows.

The proposal, the check and the save run in worker jobs (`jobs.Job`); the GUI thread only paints and
keeps the engineer's edits. The region editor is the dialog's own part and lives here with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (QButtonGroup, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QSizePolicy,
                               QSpinBox, QVBoxLayout, QWidget)

from station.core.dataset import OK_CLASS, load_dataset
from station.core.errors import RegistrationError, StationError
from station.core.grid import CellGrid
from station.core.imageio import is_image_file, read_image, to_rgb
from station.core.pattern import Roi
from station.core.registration import Registrar
from station.core.teach import (SETUP_FILE, Setup, cell_size, draw_canonical_grid, draw_grid, fit_pattern_region,
                                grid_lines, propose_setup)
from station.core.training import labelled_grid, labelled_images
from station.ui.image_canvas import to_qimage
from station.ui.workbench.engineer_mode_button import EngineerModeButton
from station.ui.workbench.jobs import Job
from station.ui.workbench.workbench import Workbench

MAX_GOODS = 40  # good images read for the proposal and the check (the proposal looks at 40 at most)
CHECK_FIT = 16  # good images the check learns the pattern from
MAX_LABELLED = 80  # defect images with a labelled cell read to place the grid
STRIP_COUNT = 6
THUMB_PX = 176
PREVIEW_COUNT = 8  # good images in the saved setup's preview.png
MIN_REGION_PX = 8.0
MIN_CELL_PX = 3.0  # a cell narrower than this in the golden frame holds no detail to inspect
HANDLE_PX = 6.0  # half the side of a corner handle, view px
ROTATE_PX = 30.0  # the rotation handle's distance above the region's top side, view px
PICK_PX = 8.0  # how near the pointer must be to grab a handle or a line, view px
REGION_COLOUR = QColor(255, 176, 0)
GRID_COLOUR = QColor(0, 220, 255)
CHECK_FAIL_RGB = (255, 60, 60)
EDIT_HELP = ("Drag a corner to resize (the opposite corner stays; with Shift the corner moves alone and the region "
             "leans to fit the four corners), a side or a grid line to fit the pitch, inside to move; the round "
             "handle turns the region. Arrow keys move it by 1 px (Shift: 10 px). The filled corner is the first "
             "cell's (column 1, row 1).")


# -- the worker side (no widget here) ---------------------------------------------------------------

@dataclass
class Taught:
    """What the proposal job hands to the dialog."""

    goods: list[np.ndarray]
    setup: Setup
    golden_note: str
    source: str
    labelled: list[tuple[np.ndarray, tuple[int, int]]]  # defect images with their labelled cell


@dataclass
class CheckTile:
    """One good image of the check, scaled down, with the grid where registration put it."""

    image: np.ndarray  # RGB thumbnail
    match: float | None  # the pattern's correlation; None when the part was not found
    reason: str = ""


def load_goods(source, limit: int = MAX_GOODS):
    """Good images from a list of arrays, a folder of image files or a dataset folder (its `good` class);
    with the grid its labelled defect cells span and those defect images (as `station teach` takes them),
    and a description: (goods, grid or None, description, labelled)."""
    hint, labelled = None, []
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise StationError(f"no folder of good images at {folder}")
        files = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not files:
            data = load_dataset(folder, "train")
            files = [s.path for s in data.samples if s.label == OK_CLASS]
            if not files:
                raise StationError(f"{folder} has no '{OK_CLASS}' images to teach the part from")
            hint = labelled_grid(data)
            labelled = labelled_images(data, limit=MAX_LABELLED)
        step = max(1, len(files) // limit)
        picked = files[::step][:limit]
        goods = [read_image(p) for p in picked]
        described = f"{len(goods)} of {len(files)} good images in {folder}"
    else:
        goods = [to_rgb(np.asarray(g)) for g in list(source or [])[:limit]]
        described = f"{len(goods)} good images"
    if not goods:
        raise StationError("no good images to teach from: capture some good parts first")
    h, w = goods[0].shape[:2]
    for img in goods[1:]:
        if img.shape[:2] != (h, w):
            raise StationError(f"the good images differ in size ({img.shape[1]}x{img.shape[0]} and {w}x{h} px): "
                               "teach on images of one camera")
    return goods, hint, described, labelled


def _golden_index(goods: list[np.ndarray], golden: np.ndarray) -> int:
    return next((i for i, g in enumerate(goods) if g is golden), -1)


def onto_golden(goods: list[np.ndarray], setup: Setup, golden: np.ndarray, name: str) -> tuple[Setup, str]:
    """The setup moved onto another golden frame (a live frame, a file): the proposal's pattern is found in it
    and the region follows. When it cannot be, the proposal's golden stays, and the note says why."""
    index = _golden_index(goods, setup.golden) + 1
    kept = f"the golden is good image {index} of {len(goods)}"
    if golden.shape[:2] != goods[0].shape[:2]:
        return setup, (f"the {name} is {golden.shape[1]}x{golden.shape[0]} px, the good images "
                       f"{goods[0].shape[1]}x{goods[0].shape[0]} px: {kept}")
    try:
        region = fit_pattern_region(goods[:CHECK_FIT], setup)
        found = Registrar(region, setup.grid).register(golden)
        roi = Roi.from_corners(found.outline(setup.grid))
    except RegistrationError as exc:
        return setup, f"the part was not found in the {name} ({exc}): {kept}"
    return Setup(golden, roi, setup.grid, setup.max_angle, setup.max_scale, setup.notes), f"the golden is the {name}"


def propose_job(source, labelled, golden: np.ndarray | None, golden_name: str, grid: tuple[int, int] | None,
                cell_px: int | None, max_angle: float, max_scale: float, *, progress, should_stop,
                emit) -> Taught | None:
    """The proposal (worker thread): read the good images (and labelled defects), propose region and grid,
    move them onto the golden. `labelled` is used when `source` is the images themselves."""
    progress("reading the good images\u2026", 0.05)
    goods, hint, described, read = load_goods(source)
    labelled = read or list(labelled or [])
    if should_stop():
        return None
    progress(f"proposing the region and grid from {len(goods)} good images\u2026", 0.3)
    grid = grid if grid is not None else (None if cell_px else hint)
    # labelled defects place the grid (each in the middle of its cell) when they fit in it
    fitting = [(img, cell) for img, cell in labelled if grid is not None and cell[0] < grid[0] and cell[1] < grid[1]]
    setup = propose_setup(goods, grid, cell_px, None, max_angle, max_scale, labelled=fitting)
    note = f"the golden is good image {_golden_index(goods, setup.golden) + 1} of {len(goods)}"
    if golden is not None and not should_stop():
        progress(f"finding the part in the {golden_name}\u2026", 0.7)
        setup, note = onto_golden(goods, setup, to_rgb(golden), golden_name)
    return Taught(goods, setup, note, described, labelled)


def strip_picks(goods: list[np.ndarray], golden: np.ndarray, count: int = STRIP_COUNT) -> list[np.ndarray]:
    """Good images for the check strip, spread over the set, the golden left out."""
    others = [g for g in goods if g is not golden] or goods
    idx = np.unique(np.linspace(0, len(others) - 1, min(count, len(others))).round().astype(int))
    return [others[i] for i in idx]


def check_job(goods: list[np.ndarray], setup: Setup, *, progress, should_stop, emit) -> list[CheckTile] | None:
    """The check (worker thread): learn the taught pattern from the good images, register some of them and
    draw the grid where registration puts it (red, at the taught place, where the part was not found)."""
    progress("learning the pattern from the good images\u2026", 0.1)
    registrar = Registrar(fit_pattern_region(goods[:CHECK_FIT], setup), setup.grid)
    tiles = []
    picks = strip_picks(goods, setup.golden)
    for i, img in enumerate(picks):
        if should_stop():
            return None
        progress(f"registering good image {i + 1} of {len(picks)}\u2026", 0.3 + 0.7 * i / len(picks))
        s = THUMB_PX / max(img.shape[:2])
        small = cv2.resize(to_rgb(img), (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        try:
            found = registrar.register(img)
        except RegistrationError as exc:
            scale = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
            tiles.append(CheckTile(draw_grid(small, setup.roi, setup.grid.cols, setup.grid.rows, scale,
                                             colour=CHECK_FAIL_RGB), None, str(exc)))
            continue
        # the grid drawn at the thumbnail's own resolution stays sharp
        tiles.append(CheckTile(draw_canonical_grid(small, s * found.matrix, setup.grid), found.match))
    return tiles


def save_job(setup: Setup, folder: Path, previews: list[np.ndarray], *, progress, should_stop, emit) -> dict:
    progress("writing the setup\u2026", 0.2)
    return setup.save(folder, previews)


# -- the region editor ------------------------------------------------------------------------------

def _angle_of(v: np.ndarray) -> float:
    """Degrees counter-clockwise as the image is shown (y points down)."""
    return math.degrees(math.atan2(-v[1], v[0]))


def _wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


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
        self._drag: tuple[str, int] | None = None
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
        margin = 10.0
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
        roi = self._roi
        ux, uy = roi.axes()
        top_mid = np.array([roi.cx, roi.cy]) - (uy + roi.shear * ux) * roi.h / 2
        return top_mid - uy * ROTATE_PX / self.view_scale

    def hit(self, pos: QPointF) -> tuple[str, int] | None:
        """What a press at `pos` (view px) grabs: ("rotate", 0), ("corner", i), ("col", i), ("row", j),
        ("move", 0) or None."""
        if self._roi is None or self._image is None:
            return None
        s = self.view_scale
        p = self.to_image(pos)
        reach = PICK_PX / s
        if np.linalg.norm(p - self.rotation_handle()) <= reach + 2 / s:
            return "rotate", 0
        corners = self._roi.corners()
        d = np.linalg.norm(corners - p, axis=1)
        if d.min() <= reach:
            return "corner", int(d.argmin())
        lines = grid_lines(self._roi, self._cols, self._rows)
        dist = [_segment_distance(p, a, b) for a, b in lines]
        best = int(np.argmin(dist))
        if dist[best] <= reach * 0.75:
            return ("col", best) if best <= self._cols else ("row", best - self._cols - 1)
        ux, uy = self._roi.axes()
        rel = p - np.array([self._roi.cx, self._roi.cy])
        if abs(rel @ ux) <= self._roi.w / 2 and abs(rel @ uy) <= self._roi.h / 2:
            return "move", 0
        return None

    def dragged(self, start: Roi, grab: tuple[str, int], start_point: np.ndarray, point: np.ndarray) -> Roi:
        """The region after dragging what `grab` names from `start_point` to `point` (image px). Angle and
        shear stay, but for the rotation handle (angle) and a corner dragged alone (the four corners)."""
        kind, index = grab
        ux, uy = start.axes()
        shear = start.shear
        down = uy + shear * ux  # the direction of the columns: the region is a parallelogram when sheared
        centre = np.array([start.cx, start.cy])

        def region(c: np.ndarray, w: float, h: float, angle: float = start.angle) -> Roi:
            return Roi(float(c[0]), float(c[1]), float(w), float(h), angle, shear)

        if kind == "move":
            return region(centre + (point - start_point), start.w, start.h)
        if kind == "rotate":
            turn = _angle_of(point - centre) - _angle_of(start_point - centre)
            return region(centre, start.w, start.h, round(_wrap(start.angle + turn), 2))
        if kind == "corners":  # this corner alone: the parallelogram closest to the four corners
            corners = start.corners()
            corners[index] = point
            try:
                return Roi.from_corners(corners)
            except RegistrationError:
                return self._roi  # too small or leaning past 45 degrees: the last good one stays
        if kind == "corner":  # the opposite corner stays
            opposite = start.corners()[(index + 2) % 4]
            d = point - opposite
            b = float(d @ uy)
            a = float(d @ ux) - shear * b
            a = math.copysign(max(abs(a), MIN_REGION_PX), a)
            b = math.copysign(max(abs(b), MIN_REGION_PX), b)
            return region(opposite + (a * ux + b * down) / 2, abs(a), abs(b))
        # a grid line: the region's first side stays and the pitch follows the line (its far side for line 0);
        # `first` is the middle of the first side, on the line through the centre
        if kind == "col":
            first = centre - ux * start.w / 2

            def along(v: np.ndarray) -> float:  # distance along the x axis, parallel to the columns
                return float(v @ ux) - shear * float(v @ uy)

            axis, length, count = ux, start.w, self._cols
        else:
            first = centre - down * start.h / 2

            def along(v: np.ndarray) -> float:
                return float(v @ uy)

            axis, length, count = down, start.h, self._rows
        if index == 0:
            last = first + axis * length
            new = max(along(last - point), MIN_REGION_PX)
            first = last - axis * new
        else:
            new = max(along(point - first) * count / index, MIN_REGION_PX)
        c = first + axis * new / 2
        return region(c, new, start.h) if kind == "col" else region(c, start.w, new)

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
    def _cursor(grab: tuple[str, int] | None) -> Qt.CursorShape:
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
        ux, uy = roi.axes()
        top_mid = np.array([roi.cx, roi.cy]) - (uy + roi.shear * ux) * roi.h / 2
        handle = self.rotation_handle()
        self._line(p, top_mid, handle, REGION_COLOUR, 1.5)
        p.setPen(QPen(QColor(20, 20, 20), 1.5))
        p.setBrush(REGION_COLOUR)
        p.drawEllipse(self.to_view(handle), HANDLE_PX + 1, HANDLE_PX + 1)
        for i, c in enumerate(corners):
            v = self.to_view(c)
            p.setBrush(REGION_COLOUR if i == 0 else QColor(250, 250, 250))
            p.drawRect(QRectF(v.x() - HANDLE_PX, v.y() - HANDLE_PX, 2 * HANDLE_PX, 2 * HANDLE_PX))


# -- the dialog -------------------------------------------------------------------------------------

class TeachDialog(QDialog):
    """Teach a product: the proposal from good images, corrected here, checked on good images and saved.

    `goods` is a list of RGB images, a folder of images or a dataset folder (its good class); `golden` an
    optional frame (the live one, or a file: `golden_name` says which) to teach on instead of the proposal's
    pick; `grid` (cols, rows) an optional grid for the proposal; `out_dir` where the setup is saved (else a
    new folder in the workbench's `setups/`). Saving needs engineer mode and writes an audit entry first.
    """

    proposed = Signal()
    checked = Signal()
    saved = Signal(str)  # the setup folder
    failed = Signal(str)

    def __init__(self, workbench: Workbench, goods=None, golden: np.ndarray | None = None,
                 grid: tuple[int, int] | None = None, out_dir: str | Path | None = None,
                 golden_name: str = "live frame", parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.setWindowTitle("Teach a product")
        self.setObjectName("teach-dialog")
        self.goods: list[np.ndarray] = []
        self.labelled: list[tuple[np.ndarray, tuple[int, int]]] = []
        self.proposal: Setup | None = None
        self.golden: np.ndarray | None = None
        self.golden_note = ""
        self.job: Job | None = None
        self.check_tiles: list[CheckTile] = []
        self.last_paths: dict[str, str] = {}
        self._golden_frame = golden
        self._golden_name = golden_name
        self._grid_hint = grid
        self._syncing = False
        self._checked_setup: dict | None = None
        self._saving: tuple[Path, CellGrid] | None = None
        self._outcome: tuple = ()  # the signal (and its arguments) to emit once the running job's thread ended

        self.editor = RegionEditor(self)
        self.editor.set_placeholder("Choose a folder of good images to teach from.")
        self.notes = QLabel("", self)
        self.notes.setWordWrap(True)
        self.notes.setObjectName("teach-notes")
        side = QVBoxLayout()
        for box in (self._source_box(), self._grid_box(), self._region_box(), self._line_box()):
            side.addWidget(box)
        side.addWidget(self.notes)
        side.addStretch(1)
        side_widget = QWidget(self)
        side_widget.setLayout(side)
        side_widget.setFixedWidth(420)
        self.message = QLabel("", self)
        self.message.setObjectName("teach-message")
        self.message.setWordWrap(True)
        help_label = QLabel(EDIT_HELP, self)
        help_label.setWordWrap(True)
        left = QVBoxLayout()
        left.addWidget(self.editor, 1)
        left.addWidget(help_label)
        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addWidget(side_widget)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self._check_box())
        layout.addWidget(self.message)
        layout.addLayout(self._save_row(out_dir))
        for button in self.findChildren(QPushButton):  # Enter in a spin box must not press a button
            button.setAutoDefault(False)
        self.resize(1400, 940)

        self.editor.roi_changed.connect(self._on_editor_roi)
        self.editor.edit_finished.connect(self._on_edited)
        for spin in (self.cols, self.rows, self.cell):
            spin.valueChanged.connect(self._on_grid)
        self.by_count.toggled.connect(self._on_mode)
        for spin in (self.cx, self.cy, self.width_px, self.height_px, self.angle, self.lean):
            spin.valueChanged.connect(self._on_region_spin)
        self.propose_button.clicked.connect(self.propose)
        self.check_button.clicked.connect(self.check)
        self.save_button.clicked.connect(self.save)
        self.close_button.clicked.connect(self.reject)
        self.choose_button.clicked.connect(self._choose_folder)
        self.golden_button.clicked.connect(self._choose_golden)
        self.browse_button.clicked.connect(self._browse_out)
        workbench.role_changed.connect(self._on_role)
        self._refresh_buttons()
        self._clear_strip()
        if goods is not None:
            self.load(goods)
        else:
            self._say("info", "Choose a folder of good images (or a dataset folder with a 'good' class) to teach from.")

    # -- building -------------------------------------------------------------------------------
    def _source_box(self) -> QGroupBox:
        self.source_label = QLabel("no good images yet", self)
        self.source_label.setWordWrap(True)
        self.choose_button = QPushButton("Good images from a folder\u2026", self)
        self.golden_button = QPushButton("Golden image from a file\u2026", self)
        box = QGroupBox("Good images", self)
        layout = QVBoxLayout(box)
        layout.addWidget(self.source_label)
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.golden_button)
        layout.addLayout(row)
        return box

    def _grid_box(self) -> QGroupBox:
        self.by_count = QRadioButton("Columns \u00d7 rows", self)
        self.by_size = QRadioButton("Square cells of", self)
        self.by_count.setChecked(True)
        self.mode = QButtonGroup(self)
        self.mode.addButton(self.by_count)
        self.mode.addButton(self.by_size)
        self.cols = QSpinBox(self)
        self.rows = QSpinBox(self)
        for spin, name in ((self.cols, "Columns"), (self.rows, "Rows")):
            spin.setRange(1, 64)
            spin.setToolTip(f"{name} of the grid: one cell per pin or feature")
        self.cell = QSpinBox(self)
        self.cell.setRange(4, 256)
        self.cell.setValue(24)
        self.cell.setSuffix(" px")
        self.cell.setEnabled(False)
        self.grid_info = QLabel("", self)
        self.grid_info.setWordWrap(True)
        self.propose_button = QPushButton("Propose again with this grid", self)
        times = QLabel("\u00d7", self)
        times.setAlignment(Qt.AlignmentFlag.AlignCenter)
        box = QGroupBox("Grid", self)
        layout = QGridLayout(box)
        layout.addWidget(self.by_count, 0, 0)
        layout.addWidget(self.cols, 0, 1)
        layout.addWidget(times, 0, 2)
        layout.addWidget(self.rows, 0, 3)
        layout.addWidget(self.by_size, 1, 0)
        layout.addWidget(self.cell, 1, 1)
        layout.addWidget(QLabel("(free-form)", self), 1, 3)
        layout.addWidget(self.grid_info, 2, 0, 1, 4)
        layout.addWidget(self.propose_button, 3, 0, 1, 4)
        return box

    def _region_box(self) -> QGroupBox:
        self.cx, self.cy, self.width_px, self.height_px = (QDoubleSpinBox(self) for _ in range(4))
        for spin in (self.cx, self.cy, self.width_px, self.height_px):
            spin.setDecimals(1)
            spin.setRange(-100000.0, 100000.0)
            spin.setSuffix(" px")
        self.width_px.setMinimum(MIN_REGION_PX)
        self.height_px.setMinimum(MIN_REGION_PX)
        self.angle = QDoubleSpinBox(self)
        self.angle.setRange(-180.0, 180.0)
        self.angle.setWrapping(True)
        self.angle.setSuffix("\u00b0 (+ is counter-clockwise)")
        self.lean = QDoubleSpinBox(self)
        self.lean.setRange(-44.0, 44.0)
        self.lean.setSuffix("\u00b0 (+ leans right going down)")
        self.lean.setToolTip("A camera that looks at the part at a slant shows its columns leaning: the grid "
                             "follows them as a parallelogram")
        for spin in (self.angle, self.lean):
            spin.setDecimals(1)
            spin.setSingleStep(0.5)
        centre = QHBoxLayout()
        centre.addWidget(self.cx)
        centre.addWidget(self.cy)
        size = QHBoxLayout()
        size.addWidget(self.width_px)
        size.addWidget(self.height_px)
        box = QGroupBox("Region in the golden image", self)
        layout = QFormLayout(box)
        layout.addRow("Centre x, y", centre)
        layout.addRow("Width, height", size)
        layout.addRow("Angle", self.angle)
        layout.addRow("Lean of the columns", self.lean)
        return box

    def _line_box(self) -> QGroupBox:
        """How far a part may move on the line: what registration searches."""
        self.max_angle = QDoubleSpinBox(self)
        self.max_angle.setRange(0.0, 180.0)
        self.max_angle.setValue(15.0)
        self.max_angle.setSuffix("\u00b0")
        self.max_scale = QDoubleSpinBox(self)
        self.max_scale.setRange(0.0, 50.0)
        self.max_scale.setValue(10.0)
        self.max_scale.setSuffix(" %")
        box = QGroupBox("On the line, a part may", self)
        layout = QFormLayout(box)
        layout.addRow("turn by up to \u00b1", self.max_angle)
        layout.addRow("change scale by up to \u00b1", self.max_scale)
        return box

    def _check_box(self) -> QGroupBox:
        self.check_button = QPushButton("Check on good images", self)
        self.strip_status = QLabel("", self)
        self.strip_status.setWordWrap(True)
        self.tiles: list[QLabel] = []
        self.captions: list[QLabel] = []
        strip = QHBoxLayout()
        for _ in range(STRIP_COUNT):
            tile = QLabel(self)
            tile.setFixedSize(THUMB_PX + 4, THUMB_PX + 4)
            tile.setAlignment(Qt.AlignmentFlag.AlignCenter)
            tile.setStyleSheet("background:#1c1c1c; color:#8a8a8a;")
            caption = QLabel("", self)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column = QVBoxLayout()
            column.addWidget(tile)
            column.addWidget(caption)
            strip.addLayout(column)
            self.tiles.append(tile)
            self.captions.append(caption)
        strip.addStretch(1)
        head = QHBoxLayout()
        head.addWidget(self.check_button)
        head.addWidget(self.strip_status, 1)
        box = QGroupBox("The grid on other good images, where registration puts it", self)
        layout = QVBoxLayout(box)
        layout.addLayout(head)
        layout.addLayout(strip)
        return box

    def _save_row(self, out_dir: str | Path | None) -> QHBoxLayout:
        self.mode_button = EngineerModeButton(self.workbench, self)
        self.out_dir = QLineEdit(str(out_dir) if out_dir else str(self._default_out_dir()), self)
        self.browse_button = QPushButton("Browse\u2026", self)
        self.save_button = QPushButton("Save setup", self)
        self.close_button = QPushButton("Close", self)
        row = QHBoxLayout()
        row.addWidget(self.mode_button)
        row.addSpacing(12)
        row.addWidget(QLabel("Save to", self))
        row.addWidget(self.out_dir, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.save_button)
        row.addWidget(self.close_button)
        return row

    # -- state ----------------------------------------------------------------------------------
    def _default_out_dir(self) -> Path:
        return self.workbench.root / "setups" / f"setup-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def roi(self) -> Roi | None:
        return self.editor.roi

    def current_grid(self) -> CellGrid:
        """The grid as edited: counted (cell size from the region, as `propose_setup` sizes it) or square cells."""
        roi = self.editor.roi
        if self.by_size.isChecked():
            n = self.cell.value()
            cols = max(1, round(roi.w / n)) if roi else 1
            rows = max(1, round(roi.h / n)) if roi else 1
            try:
                return CellGrid(cols, rows, n)
            except StationError as exc:
                raise StationError(f"square cells of {n} px: {exc}; choose larger cells") from None
        cols, rows = self.cols.value(), self.rows.value()
        size = cell_size(math.sqrt(roi.w * roi.h / (cols * rows))) if roi else 24
        return CellGrid(cols, rows, size)

    def current_setup(self) -> Setup:
        """The setup as the engineer has it now; a StationError says what is wrong with it."""
        if self.golden is None or self.editor.roi is None:
            raise StationError("no proposal yet: choose good images and wait for the proposal")
        roi = self.editor.roi
        grid = self.current_grid()
        cw, ch = roi.w / grid.cols, roi.h / grid.rows
        if min(cw, ch) < MIN_CELL_PX:
            raise StationError(f"the region is too small for a {grid.cols}x{grid.rows} grid: cells of {cw:.1f} x "
                               f"{ch:.1f} px ({MIN_CELL_PX:.0f} px at least); make it larger or use fewer cells")
        w, h = self.golden.shape[1], self.golden.shape[0]
        if not (0 <= roi.cx < w and 0 <= roi.cy < h):
            raise StationError("the region's centre is outside the golden image: drag it onto the part")
        notes = tuple(self.proposal.notes if self.proposal else ()) + ((self.golden_note,) if self.golden_note else ())
        return Setup(self.golden, roi, grid, self.max_angle.value(), self.max_scale.value() / 100.0, notes)

    def _say(self, level: str, text: str) -> None:
        colour = "#8b1e1e" if level == "error" else "#1e4d2b"
        self.message.setStyleSheet(f"background:{colour}; color:white; padding:4px;")
        self.message.setText(text)

    # -- jobs -----------------------------------------------------------------------------------
    def _start(self, fn, name: str, done) -> None:
        self.job = Job(fn, name=name, parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.done.connect(done)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_job_finished)
        self._refresh_buttons()
        self.job.start()

    def _on_progress(self, message: str, fraction: float) -> None:
        self._say("info", message)

    def _on_failed(self, message: str) -> None:
        self._say("error", message)
        if self.golden is None:
            self.editor.set_placeholder(f"No proposal: {message}")
        self._outcome = (self.failed, message)

    def _on_job_finished(self) -> None:
        # the dialog's signals come once the job's thread has ended: the dialog is ready for the next step
        if self.job is not None:
            self.job.deleteLater()
            self.job = None
        self._refresh_buttons()
        outcome, self._outcome = self._outcome, ()
        if outcome:
            outcome[0].emit(*outcome[1:])

    def _refresh_buttons(self) -> None:
        idle, ready = self.job is None, self.golden is not None
        engineer = self.workbench.session.role.value == "engineer"
        self.choose_button.setEnabled(idle)
        self.golden_button.setEnabled(idle and bool(self.goods))
        self.propose_button.setEnabled(idle and bool(self.goods))
        self.check_button.setEnabled(idle and ready)
        self.save_button.setEnabled(idle and ready and engineer)
        self.save_button.setToolTip("" if engineer else "Saving a taught setup needs engineer mode (the PIN).")

    def _on_role(self, role: str) -> None:
        self._refresh_buttons()

    # -- proposal -------------------------------------------------------------------------------
    def load(self, source) -> bool:
        """Read good images (a list, a folder or a dataset folder) and propose; False if a job is running."""
        if self.job is not None:
            return False
        self.goods, self.golden, self.proposal = [], None, None
        self.editor.set_image(None)
        self.editor.set_roi(None)
        self.editor.set_placeholder("Computing the proposal\u2026")
        self._clear_strip()
        self._start(partial(propose_job, source, None, self._golden_frame, self._golden_name, self._grid_hint, None,
                            self.max_angle.value(), self.max_scale.value() / 100.0),
                    "station-teach-propose", self._on_proposed)
        return True

    def propose(self) -> bool:
        """Propose again on the loaded good images with the grid (or cell size) set here."""
        if self.job is not None or not self.goods:
            return False
        grid, cell_px = ((None, self.cell.value()) if self.by_size.isChecked()
                         else ((self.cols.value(), self.rows.value()), None))
        self._start(partial(propose_job, self.goods, self.labelled, self._golden_frame, self._golden_name, grid,
                            cell_px, self.max_angle.value(), self.max_scale.value() / 100.0),
                    "station-teach-propose", self._on_proposed)
        return True

    def use_golden(self, image: np.ndarray, name: str = "chosen image") -> bool:
        """Teach on `image` instead of the proposal's golden: the proposal is moved onto it."""
        self._golden_frame, self._golden_name = image, name
        return self.propose()

    def _on_proposed(self, taught: Taught | None) -> None:
        if taught is None:
            return
        setup = taught.setup
        self.goods, self.proposal, self.golden = taught.goods, setup, setup.golden
        self.labelled = taught.labelled
        self.golden_note = taught.golden_note
        self.source_label.setText(taught.source)
        self.editor.set_image(setup.golden)
        self._syncing = True
        try:
            if self.by_count.isChecked():
                self.cols.setValue(setup.grid.cols)
                self.rows.setValue(setup.grid.rows)
            self.max_angle.setValue(setup.max_angle)
            self.max_scale.setValue(100.0 * setup.max_scale)
        finally:
            self._syncing = False
        self._set_roi(setup.roi)
        self.notes.setText("Proposal: " + "; ".join(list(setup.notes) + [taught.golden_note]) + ".")
        self._clear_strip()
        self._refresh_buttons()
        grid = self.current_grid()
        self._say("info", f"Proposed a {grid.cols}x{grid.rows} grid on {len(self.goods)} good images. Correct it by "
                          "dragging, check it on good images, then save.")
        self._outcome = (self.proposed,)

    # -- edits ----------------------------------------------------------------------------------
    def _set_roi(self, roi: Roi) -> None:
        self.editor.set_roi(roi)
        self._show_roi(roi)
        self._apply_grid()

    def _show_roi(self, roi: Roi) -> None:
        self._syncing = True
        try:
            for spin, value in ((self.cx, roi.cx), (self.cy, roi.cy), (self.width_px, roi.w),
                                (self.height_px, roi.h), (self.angle, _wrap(roi.angle)),
                                (self.lean, math.degrees(math.atan(roi.shear)))):
                spin.setValue(value)
        finally:
            self._syncing = False

    def _on_editor_roi(self, roi: Roi) -> None:
        self._show_roi(roi)
        if self.by_size.isChecked():
            self._apply_grid()
        else:
            self._describe_grid()

    def _on_edited(self) -> None:
        self.workbench.touch()
        self._mark_stale()

    def _on_region_spin(self) -> None:
        if self._syncing or self.editor.roi is None:
            return
        old = self.editor.roi
        lean = self.lean.value()
        # the spin box shows the lean rounded: an untouched one keeps the region's own shear
        shear = old.shear if abs(math.degrees(math.atan(old.shear)) - lean) < 0.05 else math.tan(math.radians(lean))
        try:
            roi = Roi(self.cx.value(), self.cy.value(), self.width_px.value(), self.height_px.value(),
                      self.angle.value(), shear)
        except StationError as exc:
            self._say("error", str(exc))
            return
        self.editor.set_roi(roi)
        self._apply_grid()
        self._on_edited()

    def _on_mode(self) -> None:
        by_count = self.by_count.isChecked()
        self.cols.setEnabled(by_count)
        self.rows.setEnabled(by_count)
        self.cell.setEnabled(not by_count)
        self.propose_button.setText("Propose again with this grid" if by_count else "Propose again with these cells")
        self._on_grid()

    def _on_grid(self) -> None:
        if self._syncing:
            return
        self._apply_grid()
        self._mark_stale()

    def _apply_grid(self) -> None:
        """The grid as edited onto the editor (square cells follow the region's size)."""
        try:
            grid = self.current_grid()
        except StationError as exc:
            self.grid_info.setText(str(exc))
            return
        if self.by_size.isChecked():
            self._syncing = True
            try:
                self.cols.setValue(grid.cols)
                self.rows.setValue(grid.rows)
            finally:
                self._syncing = False
        self.editor.set_grid(grid.cols, grid.rows)
        self._describe_grid()

    def _describe_grid(self) -> None:
        roi = self.editor.roi
        if roi is None:
            self.grid_info.setText("")
            return
        try:
            grid = self.current_grid()
        except StationError as exc:
            self.grid_info.setText(str(exc))
            return
        w, h = grid.size
        self.grid_info.setText(f"{grid.cols} x {grid.rows} cells of {roi.w / grid.cols:.1f} x {roi.h / grid.rows:.1f} "
                               f"px in the golden image; the registered crop is {w} x {h} px "
                               f"({grid.cell_px} px cells).")

    # -- check ----------------------------------------------------------------------------------
    def check(self) -> bool:
        """Learn the pattern as it is now and show where registration puts the grid on good images."""
        if self.job is not None:
            return False
        try:
            setup = self.current_setup()
        except StationError as exc:
            self._say("error", str(exc))
            return False
        self._checked_setup = setup.to_dict()
        self.strip_status.setText("Checking\u2026")
        self._start(partial(check_job, self.goods, setup), "station-teach-check", self._on_checked)
        return True

    def _on_checked(self, tiles: list[CheckTile] | None) -> None:
        if tiles is None:
            return
        self.check_tiles = tiles
        for label, caption, tile in zip(self.tiles, self.captions, tiles + [None] * STRIP_COUNT):
            if tile is None:
                label.clear()
                caption.setText("")
                continue
            label.setPixmap(QPixmap.fromImage(to_qimage(tile.image)))
            if tile.match is None:
                caption.setText("not found")
                caption.setStyleSheet("color:#ff6b6b; font-weight:600;")
                caption.setToolTip(tile.reason)
            else:
                caption.setText(f"match {tile.match:.2f}")
                caption.setStyleSheet("color:#1dd1a1;")
                caption.setToolTip("")
        found = sum(t.match is not None for t in tiles)
        self.strip_status.setText(f"Registration found the part in {found} of {len(tiles)} good images; the grid "
                                  "is drawn where it put it." + ("" if found == len(tiles) else
                                                                   " Red: not found, grid at the taught place."))
        self._say("info" if found == len(tiles) else "error",
                  f"Check: the part was found in {found} of {len(tiles)} good images.")
        self._outcome = (self.checked,)

    def _clear_strip(self) -> None:
        self.check_tiles, self._checked_setup = [], None
        for label, caption in zip(self.tiles, self.captions):
            label.setText("not checked yet")
            caption.setText("")
        self.strip_status.setText("Press \u201cCheck on good images\u201d to see the grid where registration puts it "
                                  "on other good parts (takes a second).")

    def _mark_stale(self) -> None:
        if self._checked_setup is None:
            return
        try:
            now = self.current_setup().to_dict()
        except StationError:
            now = None
        if now != self._checked_setup:
            self.strip_status.setText("The region or grid changed since this check: press \u201cCheck on good "
                                      "images\u201d again.")

    # -- save -----------------------------------------------------------------------------------
    def save(self, folder: str | Path | None = None) -> bool:
        """Save the setup (engineer mode; the audit entry first). False, with the reason shown, if refused."""
        if self.job is not None:
            self._say("error", "wait for the running step to finish before saving")
            return False
        text = str(folder) if folder else self.out_dir.text().strip()
        folder = Path(text)
        try:
            self.workbench.require_engineer("saving a taught setup")
            if not text:
                raise StationError("choose a folder to save the setup in")
            setup = self.current_setup()
            if (folder / SETUP_FILE).exists() and not (folder / SETUP_FILE).is_file():
                raise StationError(f"{folder / SETUP_FILE} is not a file")
            old = self._previous(folder)
            new = setup.to_dict()
            new.pop("notes", None)
            self.workbench.audit.record(self.workbench.session.actor, "teach_setup", f"taught setup {folder}", old,
                                        new, golden=self.golden_note, good_images=len(self.goods))
        except StationError as exc:
            self._say("error", str(exc))
            self.failed.emit(str(exc))
            return False
        self._saving = (folder, setup.grid)
        self._start(partial(save_job, setup, folder, self.goods[:PREVIEW_COUNT]), "station-teach-save",
                    self._on_saved)
        return True

    @staticmethod
    def _previous(folder: Path) -> dict | None:
        """The setup a save replaces (for the audit entry), or None."""
        if not (folder / SETUP_FILE).is_file():
            return None
        try:
            doc = Setup.load(folder).to_dict()
        except StationError as exc:
            return {"unreadable": str(exc)}
        doc.pop("notes", None)
        return doc

    def _on_saved(self, paths: dict) -> None:
        folder, grid = self._saving
        self.last_paths = dict(paths)
        text = (f"saved the taught setup ({grid.cols}x{grid.rows} cells of {grid.cell_px} px) to {folder}; "
                f"train on it with: station train --setup {folder}")
        self._say("info", text[0].upper() + text[1:])
        self.workbench.report("info", text)
        self._outcome = (self.saved, str(folder))

    # -- file choosers (not reached by the tests) -----------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of good images, or a dataset folder")
        if folder:
            self.load(folder)

    def _choose_golden(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Golden image", "",
                                              "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)")
        if not path:
            return
        try:
            image = read_image(path)
        except StationError as exc:
            self._say("error", str(exc))
            return
        self.use_golden(image, f"image {Path(path).name}")

    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to save the setup in")
        if folder:
            self.out_dir.setText(folder)

    # -- closing --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop a running job and wait for its thread (closing, tests)."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait()

    def done(self, result: int) -> None:
        self.shutdown()
        super().done(result)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
