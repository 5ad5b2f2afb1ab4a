"""The shift's counters (total, OK, NG, review, yield), reset only after a confirmation."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QMessageBox, QPushButton, QWidget

from station.ui.live_service import LiveService


class CountersPanel(QWidget):
    def __init__(self, service: LiveService, parent=None) -> None:
        super().__init__(parent)
        self.service = service
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 4, 0, 4)
        self.values: dict[str, QLabel] = {}
        names = [("total", "Total", "#e8e8e8"), ("ok", "OK", "#35c46a"), ("ng", "NG", "#ff5a5a"),
                 ("review", "Review", "#ffc23a"), ("yield", "Yield", "#e8e8e8")]
        for col, (key, title, colour) in enumerate(names):
            caption = QLabel(title, self)
            caption.setStyleSheet("color:#b8b8b8; font-size:15px;")
            value = QLabel("0", self)
            value.setStyleSheet(f"color:{colour}; font-size:30px; font-weight:700;")
            grid.addWidget(caption, 0, col)
            grid.addWidget(value, 1, col)
            self.values[key] = value
        self.unreadable = QLabel("", self)
        self.unreadable.setStyleSheet("color:#ffc23a;")
        self.unreadable.setWordWrap(True)
        grid.addWidget(self.unreadable, 2, 0, 1, 4)
        self.reset_button = QPushButton("Reset counters\u2026", self)
        self.reset_button.clicked.connect(self.ask_reset)
        grid.addWidget(self.reset_button, 2, 4)
        # counting happens in the core for every result; the panel reads it 4 times a second
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def refresh(self) -> None:
        t = self.service.pipeline.tally.snapshot()
        for key in ("total", "ok", "ng", "review"):
            self.values[key].setText(str(t[key]))
        self.values["yield"].setText("\u2013" if t["yield_pct"] is None else f"{t['yield_pct']:.1f}%")
        if t["unreadable"]:
            last = t["bad_files"][-1] if t["bad_files"] else ""
            self.unreadable.setText(f"{t['unreadable']} image(s) could not be read \u2013 last: {last}")
            self.unreadable.setToolTip("\n".join(t["bad_files"]))
        else:
            self.unreadable.setText("")

    def ask_reset(self) -> bool:
        answer = QMessageBox.question(self, "Reset counters",
                                      "Set total, OK, NG, review and yield back to zero?",
                                      QMessageBox.StandardButton.Reset | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Reset:
            self.service.pipeline.tally.reset()
            self.refresh()
            return True
        return False
