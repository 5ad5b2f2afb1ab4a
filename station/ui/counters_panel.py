"""The shift's counters (total, OK, NG, review, yield), reset only after a confirmation.

The counters keep their width as the numbers grow: a number that no longer fits is drawn smaller. A label
that widened with its digits (NG reaching 100, OK reaching 100 000) widened the whole right column, so the live
view shrank and the frame was composed again in the GUI thread, a stall while the line ran (docs/gui-bench.md).
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QGridLayout, QLabel, QMessageBox, QPushButton, QSizePolicy, QWidget

from station.core.report import yield_digits
from station.ui.live_service import LiveService

VALUE_PX = 30  # a counter's font size while its number fits
MIN_VALUE_PX = 12  # the least it is drawn at


def yield_text(pct: float | None) -> str:
    """The yield to one decimal, rounded down: 99.95 % is "99.9%", never "100.0%" while a part failed."""
    return "\u2013" if pct is None else f"{yield_digits(pct, 1)}%"


class CounterValue(QLabel):
    """A counter's number: its size does not follow its text; a text too wide for it is drawn smaller."""

    def __init__(self, colour: str, parent=None) -> None:
        super().__init__("0", parent)
        self._colour, self._px = colour, 0
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(1)
        self._restyle(VALUE_PX)
        self.setFixedHeight(self.sizeHint().height())  # the height of the full-size font, whatever is shown

    def _restyle(self, px: int) -> None:
        if px != self._px:  # restyling costs: only when the size changes (a new digit, a new width)
            self._px = px
            self.setStyleSheet(f"color:{self._colour}; font-size:{px}px; font-weight:700;")

    def fitting_px(self, text: str) -> int:
        """The largest font size up to VALUE_PX at which `text` fits the label's width."""
        font = QFont(self.font())
        font.setWeight(QFont.Weight.Bold)
        for px in range(VALUE_PX, MIN_VALUE_PX, -2):
            font.setPixelSize(px)
            if QFontMetrics(font).horizontalAdvance(text) <= self.width() - 2:
                return px
        return MIN_VALUE_PX

    def show_text(self, text: str) -> None:
        if text != self.text():
            self.setText(text)
            self._restyle(self.fitting_px(text))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._restyle(self.fitting_px(self.text()))


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
            value = CounterValue(colour, self)
            grid.addWidget(caption, 0, col)
            grid.addWidget(value, 1, col)
            grid.setColumnStretch(col, 2 if key == "yield" else 1)
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
            self.values[key].show_text(str(t[key]))
        self.values["yield"].show_text(yield_text(t["yield_pct"]))
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
