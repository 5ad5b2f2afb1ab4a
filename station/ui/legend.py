"""The overlay's colour scale, labelled in what the colours mean: OK, review band, NG threshold."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.core.overlay import SCALE_MAX, colour_stops


class ColourLegend(QWidget):
    def __init__(self, review_frac: float = 0.6, parent=None) -> None:
        super().__init__(parent)
        self.review_frac = review_frac
        self.setMinimumHeight(38)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Cell colour: the cell's score as a share of the recipe's NG threshold")

    def set_review_frac(self, review_frac: float) -> None:
        if review_frac != self.review_frac:  # set for every result on a line that follows the verdict's engine
            self.review_frac = review_frac
            self.update()

    def ticks(self, width: float, text_width) -> list[tuple[float, str]]:
        """(where on the scale, label): the review and NG labels become one when, at this bar width, their
        centred texts would overlap (a review band too narrow to label apart)."""
        review = min(max(self.review_frac, 0.05), 0.95)
        apart = width * (1.0 - review) / SCALE_MAX
        if apart < (text_width("review") + text_width("NG threshold")) / 2 + 8:
            return [(0.0, "0"), (1.0, "review / NG threshold"), (SCALE_MAX, f"{SCALE_MAX:g}x NG")]
        return [(0.0, "0"), (review, "review"), (1.0, "NG threshold"), (SCALE_MAX, f"{SCALE_MAX:g}x NG")]

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        bar = QRectF(8, 4, self.width() - 16, 12)
        grad = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for at, rgb in colour_stops(self.review_frac):
            grad.setColorAt(at / SCALE_MAX, QColor(*rgb))
        p.fillRect(bar, grad)
        p.setPen(QColor(220, 220, 220))
        ticks = self.ticks(bar.width(), p.fontMetrics().horizontalAdvance)
        for at, text in ticks:
            x = bar.left() + bar.width() * at / SCALE_MAX
            p.drawLine(int(x), int(bar.bottom()), int(x), int(bar.bottom()) + 4)
            align = Qt.AlignmentFlag.AlignHCenter
            box = QRectF(x - 80, bar.bottom() + 4, 160, 16)
            if at == 0.0:
                box, align = QRectF(x, bar.bottom() + 4, 100, 16), Qt.AlignmentFlag.AlignLeft
            elif at == SCALE_MAX:
                box, align = QRectF(x - 100, bar.bottom() + 4, 100, 16), Qt.AlignmentFlag.AlignRight
            p.drawText(box, align | Qt.AlignmentFlag.AlignTop, text)
        p.end()
