"""The last NG parts, newest first, each one click away full size with its overlay."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from station.core.live import LiveResult
from station.core.verdict import Verdict
from station.ui.live_service import LiveService
from station.ui.recent_strip import result_item
from station.ui.result_dialog import ResultDialog


class LastNgList(QListWidget):
    def __init__(self, service: LiveService, keep: int = 10, parent=None) -> None:
        super().__init__(parent)
        self.service, self.keep = service, keep
        self.setIconSize(QSize(40, 48))
        self.setToolTip("The last NG parts; click one to see it full size with its overlay")
        self._pending: list[tuple[str, LiveResult]] = []
        # NG parts can come 30 times a second on a bad run: the list is updated 5 times a second
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._flush)
        self._timer.start()
        service.results_ready.connect(self.add_results)
        self.itemClicked.connect(self.open_item)

    def add_results(self, items: list[LiveResult]) -> None:
        ngs = [i for i in items if i.result is not None and i.result.verdict is Verdict.NG]
        if ngs:
            stamp = time.strftime("%H:%M:%S")
            self._pending.extend((stamp, i) for i in ngs)
            del self._pending[:-self.keep]

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.setUpdatesEnabled(False)
        for stamp, item in pending:
            self.insertItem(0, result_item(item, f"{stamp}  NG {item.result.label}  \u00b7  {item.frame.name}"))
        while self.count() > self.keep:
            self.takeItem(self.count() - 1)
        self.setUpdatesEnabled(True)

    def open_item(self, entry: QListWidgetItem) -> ResultDialog:
        dialog = ResultDialog(entry.data(Qt.ItemDataRole.UserRole), parent=self.window())
        dialog.show()
        return dialog
