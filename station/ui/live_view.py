"""The live image with its overlay (on/off, opacity, colour legend), zoom and pan."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from station.core.live import LiveResult
from station.ui.image_canvas import ImageCanvas
from station.ui.legend import ColourLegend
from station.ui.live_service import LiveService


class LiveView(QWidget):
    def __init__(self, service: LiveService, parent=None) -> None:
        super().__init__(parent)
        self.service = service
        self.canvas = ImageCanvas(self)
        self.canvas.placeholder = "Press Start (F5) to run the line"
        self.current: LiveResult | None = None
        self._unpainted: LiveResult | None = None

        self.overlay_box = QCheckBox("Overlay (O)", self)
        self.overlay_box.setChecked(True)
        self.overlay_box.setToolTip("Show where the station looked: cell scores, part outline and cell grid")
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.opacity.setMaximumWidth(160)
        self.opacity.setToolTip("Opacity of the cell colours")
        zoom_in, zoom_out, fit = (QPushButton(t, self) for t in ("+", "\u2212", "Fit"))
        for b in (zoom_in, zoom_out):
            b.setFixedWidth(32)
        zoom_in.setToolTip("Zoom in (mouse wheel)")
        zoom_out.setToolTip("Zoom out")
        fit.setToolTip("Fit the image (double-click)")
        self.legend = ColourLegend(parent=self)
        self._update_legend()

        bar = QHBoxLayout()
        bar.addWidget(self.overlay_box)
        bar.addWidget(QLabel("Opacity", self))
        bar.addWidget(self.opacity)
        bar.addStretch(1)
        for b in (zoom_out, zoom_in, fit):
            bar.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        legend_row = QHBoxLayout()
        self.legend_caption = QLabel("Cell score", self)
        self.legend_caption.setToolTip(self.legend.toolTip())
        legend_row.addWidget(self.legend_caption)
        legend_row.addWidget(self.legend, 1)
        layout.addLayout(legend_row)

        self.overlay_box.toggled.connect(self.canvas.set_overlay_visible)
        self.overlay_box.toggled.connect(self.legend.setVisible)
        self.overlay_box.toggled.connect(self.legend_caption.setVisible)
        self.opacity.valueChanged.connect(self._on_opacity)
        zoom_in.clicked.connect(self.zoom_in)
        zoom_out.clicked.connect(self.zoom_out)
        fit.clicked.connect(self.canvas.fit)
        self.canvas.painted.connect(self._on_painted)
        service.results_ready.connect(self.show_results)
        service.recipe_changed.connect(self._update_legend)

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_box.setChecked(visible)

    def toggle_overlay(self) -> None:
        self.overlay_box.setChecked(not self.overlay_box.isChecked())

    def set_opacity(self, opacity: float) -> None:
        self.opacity.setValue(round(opacity * 100))

    def _on_opacity(self, value: int) -> None:
        self.canvas.set_opacity(value / 100)

    def zoom_in(self) -> None:
        self.canvas.zoom_by(1.25)

    def zoom_out(self) -> None:
        self.canvas.zoom_by(0.8)

    def _update_legend(self) -> None:
        recipe = self.service.recipe
        if recipe is not None:
            review, ng = recipe.thresholds
            self.legend.set_review_frac(review / ng if ng > 0 else 0.5)

    def show_results(self, items: list[LiveResult]) -> None:
        """Only the newest frame is drawn; older ones in the batch were superseded."""
        for item in reversed(items):
            if item.frame.image is not None:
                self.current = self._unpainted = item
                self.canvas.set_frame(item.frame.image, item.overlay)
                return

    def _on_painted(self) -> None:
        if self._unpainted is not None:
            self.service.record_painted(self._unpainted)
            self._unpainted = None
