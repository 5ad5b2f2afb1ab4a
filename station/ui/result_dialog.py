"""One result full size with its overlay: what the station saw and why it judged so."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from station.core.live import LiveResult
from station.ui.image_canvas import ImageCanvas


def describe(item: LiveResult) -> str:
    r = item.result
    if r is None:
        return f"{item.frame.name}\n{item.error or 'not inspected (no recipe)'}"
    lines = [f"{r.verdict.value}  {r.label}", f"image: {item.frame.name}", f"score: {r.score:.4g}"]
    if r.top_cell is not None:
        lines.append(f"most suspicious {r.cell_unit}: column {r.top_cell[0] + 1}, row {r.top_cell[1] + 1}")
    if r.class_probs:
        lines.append("classes: " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(r.class_probs.items(),
                                                                             key=lambda kv: -kv[1])))
    if len(r.engines) > 1:  # each engine's own verdict, readable (the log keeps them as JSON in the message)
        lines += [f"{name}: {e.verdict.value} {e.label}, score {e.score:.4g}" + (f" ({e.message})" if e.message else "")
                  for name, e in r.engines.items()]
    elif r.message:
        lines.append(r.message)
    lines.append(f"recipe hash: {r.recipe_hash.removeprefix('sha256:')[:12]}")
    return "\n".join(lines)


class ResultDialog(QDialog):
    def __init__(self, item: LiveResult, opacity: float = 0.55, parent=None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        verdict = item.result.verdict.value if item.result is not None else "unreadable"
        self.setWindowTitle(f"{verdict} \u2013 {item.frame.name}")
        self.item = item
        self.canvas = ImageCanvas(self)
        self.canvas.opacity = opacity
        self.canvas.set_frame(item.frame.image, item.overlay)
        self.canvas.placeholder = item.error or "no image"
        overlay = QCheckBox("Overlay", self)
        overlay.setChecked(True)
        overlay.toggled.connect(self.canvas.set_overlay_visible)
        info = QLabel(describe(item), self)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info.setStyleSheet("font-size:15px;")
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        side = QVBoxLayout()
        side.addWidget(info)
        side.addWidget(overlay)
        side.addStretch(1)
        side.addWidget(close)
        layout = QHBoxLayout(self)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(side)
        if item.frame.image is not None:
            h, w = item.frame.image.shape[:2]
            scale = max(1, min(3, 640 // max(h, 1)))  # small demo frames are shown at 2-3x, not as a stamp
            self.resize(min(w * scale, 1400) + 320, min(h * scale, 900) + 40)
