"""A strip of the last results as thumbnails; a click shows one full size."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

from station.core.live import LiveResult
from station.ui.image_canvas import to_qimage
from station.ui.live_service import LiveService
from station.ui.result_dialog import ResultDialog

VERDICT_COLOURS = {"OK": "#0a8f3c", "NG": "#c62020", "REVIEW": "#f0a800", None: "#4a4d55"}


def result_item(item: LiveResult, text: str) -> QListWidgetItem:
    entry = QListWidgetItem(text)
    if item.thumb is not None:
        entry.setIcon(QIcon(QPixmap.fromImage(to_qimage(item.thumb))))
    verdict = item.result.verdict.value if item.result is not None else None
    entry.setBackground(QBrush(QColor(VERDICT_COLOURS[verdict])))
    entry.setForeground(QBrush(QColor("black" if verdict == "REVIEW" else "white")))
    entry.setData(Qt.ItemDataRole.UserRole, item)
    entry.setToolTip(item.frame.name)
    return entry


def short_text(item: LiveResult) -> str:
    r = item.result
    if r is None:
        return "unreadable" if item.error else "\u2013"
    return r.verdict.value if r.verdict.value != "NG" else f"NG {r.label}"


class RecentStrip(QListWidget):
    def __init__(self, service: LiveService, keep: int = 12, parent=None) -> None:
        super().__init__(parent)
        self.service, self.keep = service, keep
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(64, 72))
        self.setFixedHeight(104)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSpacing(2)
        self.setToolTip("The last results, newest on the left; click one to see it full size")
        self._pending: list[LiveResult] = []
        # thumbnails are added 5 times a second, not per frame: the strip is for looking back
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._flush)
        self._timer.start()
        service.results_ready.connect(self.add_results)
        self.itemClicked.connect(self.open_item)

    def add_results(self, items: list[LiveResult]) -> None:
        self._pending.extend(items)
        del self._pending[:-self.keep]

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.setUpdatesEnabled(False)
        for item in pending:
            self.insertItem(0, result_item(item, short_text(item)))
        while self.count() > self.keep:
            self.takeItem(self.count() - 1)
        self.setUpdatesEnabled(True)

    def open_item(self, entry: QListWidgetItem) -> ResultDialog:
        dialog = ResultDialog(entry.data(Qt.ItemDataRole.UserRole), parent=self.window())
        dialog.show()
        return dialog
