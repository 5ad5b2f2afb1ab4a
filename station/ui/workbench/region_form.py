"""The Teach dialog's region as numbers: centre, size, angle and the lean of the columns in the golden image,
for the engineer who would rather type than drag."""

from __future__ import annotations

import math

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QWidget

from station.core.pattern import Roi
from station.ui.workbench.region_geometry import MIN_REGION_PX, wrap


class RegionForm(QGroupBox):
    """The region's numbers; `edited` when the engineer changes one (not when the dialog shows a region)."""

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Region in the golden image", parent)
        self._syncing = False
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
        layout = QFormLayout(self)
        layout.addRow("Centre x, y", centre)
        layout.addRow("Width, height", size)
        layout.addRow("Angle", self.angle)
        layout.addRow("Lean of the columns", self.lean)
        for spin in (self.cx, self.cy, self.width_px, self.height_px, self.angle, self.lean):
            spin.valueChanged.connect(self._on_value)

    def show_roi(self, roi: Roi) -> None:
        """Show a region (dragged, proposed): no `edited`."""
        self._syncing = True
        try:
            for spin, value in ((self.cx, roi.cx), (self.cy, roi.cy), (self.width_px, roi.w),
                                (self.height_px, roi.h), (self.angle, wrap(roi.angle)),
                                (self.lean, math.degrees(math.atan(roi.shear)))):
                spin.setValue(value)
        finally:
            self._syncing = False

    def roi_from(self, old: Roi) -> Roi:
        """The region the numbers say, `old` being the region they were edited from; a StationError (a
        `RegistrationError`) says what is wrong with it."""
        lean = self.lean.value()
        # the spin box shows the lean rounded: an untouched one keeps the region's own shear
        shear = old.shear if abs(math.degrees(math.atan(old.shear)) - lean) < 0.05 else math.tan(math.radians(lean))
        return Roi(self.cx.value(), self.cy.value(), self.width_px.value(), self.height_px.value(),
                   self.angle.value(), shear)

    def _on_value(self) -> None:
        if not self._syncing:
            self.edited.emit()
