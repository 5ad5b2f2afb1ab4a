"""The Teach dialog's grid settings: columns x rows over the region (one cell per pin or feature) or square
cells of a chosen size, with a line on the cells this gives in the golden image and the registered crop."""

from __future__ import annotations


from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QGridLayout, QGroupBox, QLabel, QPushButton, QRadioButton, QSpinBox, QWidget

from station.core.errors import StationError
from station.core.grid import CellGrid
from station.core.pattern import Roi
from station.core.teach import cell_for_region


class GridForm(QGroupBox):
    """The grid as the engineer sets it; `changed` when they change it (not when the dialog shows a grid)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Grid", parent)
        self._syncing = False
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
        self.info = QLabel("", self)
        self.info.setWordWrap(True)
        self.propose_button = QPushButton("Propose again with this grid", self)
        times = QLabel("\u00d7", self)
        times.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QGridLayout(self)
        layout.addWidget(self.by_count, 0, 0)
        layout.addWidget(self.cols, 0, 1)
        layout.addWidget(times, 0, 2)
        layout.addWidget(self.rows, 0, 3)
        layout.addWidget(self.by_size, 1, 0)
        layout.addWidget(self.cell, 1, 1)
        layout.addWidget(QLabel("(free-form)", self), 1, 3)
        layout.addWidget(self.info, 2, 0, 1, 4)
        layout.addWidget(self.propose_button, 3, 0, 1, 4)

        for spin in (self.cols, self.rows, self.cell):
            spin.valueChanged.connect(self._on_value)
        self.by_count.toggled.connect(self._on_mode)

    def grid_for(self, roi: Roi | None) -> CellGrid:
        """The grid as set, over `roi`: counted (cell size from the region, as `propose_setup` sizes it) or
        square cells."""
        if self.by_size.isChecked():
            n = self.cell.value()
            cols = max(1, round(roi.w / n)) if roi else 1
            rows = max(1, round(roi.h / n)) if roi else 1
            try:
                return CellGrid(cols, rows, n)
            except StationError as exc:
                raise StationError(f"square cells of {n} px: {exc}; choose larger cells") from None
        cols, rows = self.cols.value(), self.rows.value()
        size = cell_for_region(roi, cols, rows) if roi else 24
        return CellGrid(cols, rows, size)

    def show_counts(self, cols: int, rows: int) -> None:
        """Show a grid's columns and rows (a proposal's, or what square cells give): no `changed`."""
        self._syncing = True
        try:
            self.cols.setValue(cols)
            self.rows.setValue(rows)
        finally:
            self._syncing = False

    def describe(self, roi: Roi | None) -> None:
        """Say what the grid gives over `roi`: its cells in the golden image and the registered crop."""
        if roi is None:
            self.info.setText("")
            return
        try:
            grid = self.grid_for(roi)
        except StationError as exc:
            self.info.setText(str(exc))
            return
        w, h = grid.size
        self.info.setText(f"{grid.cols} x {grid.rows} cells of {roi.w / grid.cols:.1f} x {roi.h / grid.rows:.1f} "
                          f"px in the golden image; the registered crop is {w} x {h} px "
                          f"({grid.cell_px} px cells).")

    def _on_mode(self) -> None:
        by_count = self.by_count.isChecked()
        self.cols.setEnabled(by_count)
        self.rows.setEnabled(by_count)
        self.cell.setEnabled(not by_count)
        self.propose_button.setText("Propose again with this grid" if by_count else "Propose again with these cells")
        self._on_value()

    def _on_value(self) -> None:
        if not self._syncing:
            self.changed.emit()
