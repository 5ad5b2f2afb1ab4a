"""The status bar: source and its state, camera/inference/display rates, latency per stage, drops,
recipe name and hash, compute device. Read from the pipeline twice a second, never per frame."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from station.ui.live_service import LiveService


LABEL_MIN_PX = 60  # a status label's least width: a long folder path or recipe name is cut, not the window widened


def _ms(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.1f}"


class StationStatusBar(QStatusBar):
    def __init__(self, service: LiveService, parent=None) -> None:
        super().__init__(parent)
        self.service = service
        self.source_label = QLabel(self)
        self.rates_label = QLabel(self)
        self.latency_label = QLabel(self)
        self.dropped_label = QLabel(self)
        self.recipe_label = QLabel(self)
        self.results_label = QLabel(self)  # shown only while results are not being logged
        self.results_label.setStyleSheet("color:#ffffff; background:#c62828; font-weight:700; padding:0 6px;")
        self.latency_label.setToolTip("Median latency per stage over the last frames (ms): capture = from the "
                                      "camera to the inspector, reg = registration, eng = engine, ovl = overlay "
                                      "rendering, total = from the camera to the verdict on screen")
        self.addWidget(self.source_label)
        for label in (self.rates_label, self.latency_label, self.dropped_label):
            self.addWidget(label)
        # each label asks for its whole text, and the window could not be narrower than all of them together: on
        # a screen 1280 px wide a folder's path and the latency figures pushed it past the screen's right edge,
        # cutting off the yield and the counters' reset; the labels are cut instead (their tooltips say it all)
        for label in (self.source_label, self.rates_label, self.latency_label, self.recipe_label):
            label.setMinimumWidth(LABEL_MIN_PX)
        self.addPermanentWidget(self.results_label)
        self.addPermanentWidget(self.recipe_label)
        self._state, self._message = "closed", ""
        service.state_changed.connect(self._on_state)
        service.source_changed.connect(self.refresh)
        service.recipe_changed.connect(self.refresh)
        service.logging_changed.connect(self.refresh)  # a logging failure shows at once, not at the next tick
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def _on_state(self, state: str, message: str) -> None:
        self._state, self._message = state, message
        self.refresh()

    def log_details(self) -> str:
        store = self.service.results
        if store is None:
            return self.service.results_error
        lines = [f"result log: {store.url}", f"written {store.written}, waiting {store.pending}, in the spool "
                 f"{store.spooled}, lost {store.lost}, images not archived {store.images_dropped}",
                 f"when results cannot be logged: {'stop inspecting' if store.on_failure == 'stop' else 'continue'}"]
        if store.retention is not None:
            lines.append("retention: " + store.retention.policy.describe())
        return "\n".join(lines)

    def refresh(self) -> None:
        service = self.service
        state = self._state if service.pipeline.running or self._state in ("failed", "ended") else "stopped"
        if state == "running" and service.run_state == "paused":
            state = "paused"
        text = f"{service.source.description}: {state}"
        if self._message and self._message != service.source.description and state not in ("running", "paused"):
            text += f" ({self._message})"
        lost = state in ("camera lost, reconnecting", "failed", "camera stalled", "camera frozen")
        self.source_label.setText(text)
        self.source_label.setToolTip(text)
        style = "color:#ffb000; font-weight:700;" if lost else ""
        if self.source_label.styleSheet() != style:  # a new style sheet restyles the bar: only on change
            self.source_label.setStyleSheet(style)
        stats = service.pipeline.stats()
        self.rates_label.setText(f"camera {stats['camera_fps']:.1f} fps \u00b7 inference {stats['inference_fps']:.1f}"
                                 f" fps \u00b7 display {service.displayed_rate.rate():.1f} fps")
        lat = stats["latency_ms"]
        self.latency_label.setText(
            f"ms: capture {_ms(lat['capture'])} \u00b7 reg {_ms(lat['registration'])} \u00b7 eng {_ms(lat['engine'])}"
            f" \u00b7 ovl {_ms(lat['overlay'])} \u00b7 total {_ms(lat['painted'])}")
        self.dropped_label.setText(f"dropped {stats['dropped_frames']}")
        problem = service.logging_problem
        self.results_label.setVisible(bool(problem))
        self.results_label.setText(f"\u26a0 {problem}" if problem else "")
        self.results_label.setToolTip(self.log_details())
        recipe = service.recipe
        if recipe is None:
            self.recipe_label.setText("no recipe")
            self.recipe_label.setToolTip(service.recipe_error)
        else:
            self.recipe_label.setText(f"recipe {recipe.name} #{recipe.short_hash} \u00b7 {recipe.engine.name} on "
                                      f"{recipe.engine.device}")
            self.recipe_label.setToolTip(f"{self.recipe_label.text()}\n{recipe.path or ''}")
