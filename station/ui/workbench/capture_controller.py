"""Capturing live frames into the recipe's dataset: by hotkey under a label, optionally with the cell the
engineer clicked on the live view, and (when switched on) every NG or REVIEW frame automatically.

The GUI thread only copies the frame; PNG encoding and the disk write happen in one writer thread
with a bounded backlog, and the outcome comes back as a queued signal. A failed write (read-only or
full disk) keeps the frame in the dataset's pending list for a retry: nothing is lost.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal

from station.core.live import LiveResult
from station.core.verdict import Verdict
from station.core.workbench.capture import check_label
from station.core.workbench.errors import CaptureError, WorkbenchError
from station.ui.workbench.workbench import AUTO_PREFIX, Workbench

AUTO_LABELS = {Verdict.NG: f"{AUTO_PREFIX}ng", Verdict.REVIEW: f"{AUTO_PREFIX}review"}
MAX_BACKLOG = 8


class CaptureController(QObject):
    captured = Signal(str, str)  # label, file path
    failed = Signal(str)  # the message for the engineer
    cell_marked = Signal(object)  # (col, row) or None

    _finished = Signal(object, object)  # (item or None, error message or None), from the writer thread

    def __init__(self, workbench: Workbench, canvas=None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.current: LiveResult | None = None
        self.marked_cell: tuple[int, int] | None = None
        self.auto_capture = False
        self.auto_skipped = 0
        self.backlog = 0
        self._closed = False
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="station-capture-writer")
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        workbench.service.results_ready.connect(self._on_results)
        self.canvas = canvas
        self._press: QPointF | None = None
        if canvas is not None:
            canvas.installEventFilter(self)

    # -- live results ---------------------------------------------------------------------------
    def _on_results(self, items: list[LiveResult]) -> None:
        for item in items:
            if item.frame.image is None:
                continue
            self.current = item
            if (self.auto_capture and item.verdict in AUTO_LABELS and self.workbench.session.role.value == "engineer"):
                self._submit(item.frame.image, AUTO_LABELS[item.verdict], item.result.top_cell if item.result else None,
                             auto=True)

    def set_auto_capture(self, on: bool) -> None:
        self.auto_capture = bool(on)

    # -- capturing ------------------------------------------------------------------------------
    def capture_current(self, label: str) -> bool:
        """Save the newest frame under `label` with the marked cell (if any); False with a message if not."""
        try:
            self.workbench.require_engineer("capturing frames")
            check_label(label)
        except WorkbenchError as exc:
            self.failed.emit(str(exc))
            return False
        if self.current is None or self.current.frame.image is None:
            self.failed.emit("no live frame to capture yet: start the line (F5)")
            return False
        cell = None if label == self.workbench.dataset.ok_class else self.marked_cell
        self._submit(self.current.frame.image, label, cell, auto=False)
        self.mark_cell(None)
        return True

    def _submit(self, image: np.ndarray, label: str, cell, auto: bool) -> None:
        with self._lock:
            if self.backlog >= MAX_BACKLOG:
                if auto:
                    self.auto_skipped += 1
                    return
            self.backlog += 1
        frame = np.array(image, copy=True)  # the live buffer is reused; the writer owns this copy
        future = self._writer.submit(self._write, frame, label, cell)
        future.add_done_callback(self._done)

    def _write(self, frame: np.ndarray, label: str, cell):
        return self.workbench.dataset.capture(frame, label, cell)

    def _done(self, future: Future) -> None:  # writer thread
        try:
            item, error = future.result(), None
        except CaptureError as exc:
            item, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - shown, not lost in the writer thread
            item, error = None, f"capture failed: {type(exc).__name__}: {exc}"
        self._finished.emit(item, error)

    def _on_finished(self, item, error) -> None:
        with self._lock:
            self.backlog -= 1
        if error:
            self.failed.emit(error)
            self.workbench.report("error", error)
        else:
            self.captured.emit(item.label, str(item.path))
            self.workbench.dataset_changed.emit()

    def retry_pending(self) -> int:
        """Write the frames whose capture failed (in the GUI thread: few, small, and asked for)."""
        try:
            stored = self.workbench.dataset.retry_pending()
        except CaptureError as exc:
            self.failed.emit(f"{exc}; {len(self.workbench.dataset.pending)} frame(s) still waiting")
            return 0
        if stored:
            self.workbench.dataset_changed.emit()
        return len(stored)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until queued writes are done (tests and closing)."""
        self._writer.submit(lambda: None).result(timeout)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)
        self.workbench.service.results_ready.disconnect(self._on_results)
        if self.canvas is not None:
            self.canvas.removeEventFilter(self)

    # -- marking the defective cell on the live view --------------------------------------------
    def mark_cell(self, cell: tuple[int, int] | None) -> None:
        self.marked_cell = cell
        self.cell_marked.emit(cell)

    def cell_at(self, image_xy: tuple[float, float]) -> tuple[int, int] | None:
        """The grid cell under a point of the current frame, through its registration (None: off the part)."""
        item = self.current
        recipe = self.workbench.service.recipe
        if item is None or item.result is None or item.result.registered is None or recipe is None:
            return None
        inverse = cv2.invertAffineTransform(item.result.registered.matrix.astype(np.float64))
        x, y = inverse @ np.array([image_xy[0], image_xy[1], 1.0])
        grid = recipe.grid
        w, h = grid.size
        if not (0 <= x < w and 0 <= y < h):
            return None
        return int(x * grid.cols // w), int(y * grid.rows // h)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
        elif (kind == QEvent.Type.MouseButtonRelease and self._press is not None
              and event.button() == Qt.MouseButton.LeftButton):
            moved = (event.position() - self._press).manhattanLength()
            self._press = None
            if moved < 4 and self.workbench.is_engineer and self.current is not None:
                xy = self._to_image(event.position())
                if xy is not None:
                    self.mark_cell(self.cell_at(xy))
        return False

    def _to_image(self, pos: QPointF) -> tuple[float, float] | None:
        image = self.current.frame.image
        rect = self.canvas._target_rect()  # where the canvas draws the frame (zoom and pan applied)
        if rect.width() <= 0 or rect.height() <= 0:
            return None
        x = (pos.x() - rect.left()) * image.shape[1] / rect.width()
        y = (pos.y() - rect.top()) * image.shape[0] / rect.height()
        return x, y
