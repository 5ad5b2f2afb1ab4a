"""The live image with its overlay (on/off, opacity, colour legend), zoom and pan. On a line of several
recipes each engine's map can be shown (the ViT's attention, RT-attention's cell scores), each with its
legend and the engine's name; "verdict" shows the map of the engine the verdict followed.

The picture of each result comes ready from the inference thread (station/ui/display.py): the view tells the
service what to compose (`ViewChoice`) and draws what comes; it composes a frame itself only when a control
changes or a frame was composed with an older choice."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from station.core.live import LiveResult, named
from station.ui.display import FOLLOW_VERDICT, Display, ViewChoice, compose
from station.ui.display import shown_engine as shown_engine_of
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
        self.map_choice = QComboBox(self)
        self.map_choice.setToolTip("Which engine's map is drawn over the part (M: the next one)")
        self.map_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.legend_caption = QLabel("Cell score", self)
        self._fill_map_choice()

        bar = QHBoxLayout()
        bar.addWidget(self.overlay_box)
        bar.addWidget(QLabel("Opacity", self))
        bar.addWidget(self.opacity)
        bar.addWidget(QLabel("Map", self))
        bar.addWidget(self.map_choice)
        bar.addStretch(1)
        for b in (zoom_out, zoom_in, fit):
            bar.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        legend_row = QHBoxLayout()
        self.legend_caption.setToolTip(self.legend.toolTip())
        legend_row.addWidget(self.legend_caption)
        legend_row.addWidget(self.legend, 1)
        layout.addLayout(legend_row)

        self.overlay_box.toggled.connect(self.canvas.set_overlay_visible)
        self.overlay_box.toggled.connect(self._on_view_changed)
        self.overlay_box.toggled.connect(self.legend.setVisible)
        self.overlay_box.toggled.connect(self.legend_caption.setVisible)
        self.opacity.valueChanged.connect(self._on_opacity)
        zoom_in.clicked.connect(self.zoom_in)
        zoom_out.clicked.connect(self.zoom_out)
        fit.clicked.connect(self.canvas.fit)
        self.canvas.painted.connect(self._on_painted)
        self.canvas.fit_area_changed.connect(self._on_view_changed)
        service.results_ready.connect(self.show_results)
        service.recipe_changed.connect(self._fill_map_choice)
        self.map_choice.currentIndexChanged.connect(self._on_map_choice)

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_box.setChecked(visible)

    def toggle_overlay(self) -> None:
        self.overlay_box.setChecked(not self.overlay_box.isChecked())

    def set_opacity(self, opacity: float) -> None:
        self.opacity.setValue(round(opacity * 100))

    def _on_opacity(self, value: int) -> None:
        self.canvas.set_opacity(value / 100)
        self._on_view_changed()

    def view_choice(self) -> ViewChoice:
        """What the controls say is shown over the frame."""
        return ViewChoice(self.overlay_box.isChecked(), self.opacity.value() / 100, self.map_choice.currentData() or "",
                          self.canvas.fit_area(), self.canvas.devicePixelRatioF())

    def _on_view_changed(self) -> None:
        """A control changed: the next frames are composed so, and the frame on screen is composed again now."""
        self.service.view_choice = self.view_choice()
        if self.current is not None:
            self._draw(self.current)

    def _draw(self, item: LiveResult) -> None:
        choice = self.service.view_choice
        display = item.display
        if not (isinstance(display, Display) and display.choice == choice):
            display = item.display = compose(item, choice)  # made with an older choice (or not at all): again here
        self.canvas.set_composed(None if display is None else display.image)

    def zoom_in(self) -> None:
        self.canvas.zoom_by(1.25)

    def zoom_out(self) -> None:
        self.canvas.zoom_by(0.8)

    # -- which engine's map ------------------------------------------------------------------------
    def _inspectors(self) -> dict:
        inspector = self.service.pipeline.inspector
        return {} if inspector is None else named(inspector)

    def _fill_map_choice(self) -> None:
        names = list(self._inspectors())
        chosen = self.map_choice.currentData()
        self.map_choice.blockSignals(True)
        self.map_choice.clear()
        if len(names) > 1:
            self.map_choice.addItem("verdict's engine", FOLLOW_VERDICT)
        for name in names:
            self.map_choice.addItem(name, name)
        at = self.map_choice.findData(chosen)
        self.map_choice.setCurrentIndex(max(at, 0))
        self.map_choice.blockSignals(False)
        self.map_choice.setEnabled(len(names) > 1)
        self.service.view_choice = self.view_choice()  # a map of an engine the line no longer runs is not asked for
        self._update_legend()

    def choose_map(self, name: str) -> None:
        """Show `name`'s map (FOLLOW_VERDICT: the engine the verdict followed)."""
        at = self.map_choice.findData(name)
        if at >= 0:
            self.map_choice.setCurrentIndex(at)

    def next_map(self) -> None:
        if self.map_choice.count() > 1:
            self.map_choice.setCurrentIndex((self.map_choice.currentIndex() + 1) % self.map_choice.count())

    def _on_map_choice(self) -> None:
        self._update_legend()
        self._on_view_changed()  # the frame on screen is drawn again with the chosen map

    def shown_engine(self, item: LiveResult | None = None) -> str | None:
        """The engine whose map is drawn (for `item`, or the frame on screen)."""
        chosen = self.map_choice.currentData()
        if chosen:
            return chosen
        item = item or self.current
        name = shown_engine_of(item) if item is not None else None
        if name:
            return name
        names = list(self._inspectors())
        return names[0] if names else None

    def _update_legend(self, item: LiveResult | None = None) -> None:
        name = self.shown_engine(item)
        inspector = self._inspectors().get(name) if name else None
        if inspector is None:
            self.legend_caption.setText("Cell score")
            return
        review, ng = inspector.recipe.thresholds
        self.legend.set_review_frac(review / ng if ng > 0 else 0.5)
        caps = inspector.recipe.engine.capabilities
        text = f"{name}: {caps.map_name}"
        if text != self.legend_caption.text():
            self.legend_caption.setText(text)
            self.legend_caption.setToolTip(
                "Where the engine looked, coloured by how bad the part is (its top cell at the image's score)"
                if caps.cell_scale == "share" else "Each cell's score as a share of the recipe's NG threshold")

    def show_results(self, items: list[LiveResult]) -> None:
        """Only the newest frame is drawn; older ones in the batch were superseded. The recent strip and the NG
        list keep results, not their full-size pictures: a picture goes when its result leaves the screen."""
        newest = next((item for item in reversed(items) if item.frame.image is not None), None)
        for item in items:
            if item is not newest:
                item.display = None
        if newest is None:
            return
        if self.current is not None:
            self.current.display = None
        self.current = self._unpainted = newest
        if not self.map_choice.currentData():
            self._update_legend(newest)  # following the verdict: the legend follows the engine
        self._draw(newest)

    def _on_painted(self) -> None:
        if self._unpainted is not None:
            self.service.record_painted(self._unpainted)
            self._unpainted = None
