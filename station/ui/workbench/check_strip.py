"""The Teach dialog's check strip: other good images, scaled down, with the grid where registration put it,
so that the engineer sees the taught region and grid hold on more than the golden part."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from station.ui.image_canvas import to_qimage
from station.ui.workbench.teach_jobs import STRIP_COUNT, THUMB_PX, CheckTile


class CheckStrip(QGroupBox):
    """The "Check on good images" button, what the check found, and one tile per good image checked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("The grid on other good images, where registration puts it", parent)
        self.check_button = QPushButton("Check on good images", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.tiles: list[QLabel] = []
        self.captions: list[QLabel] = []
        strip = QHBoxLayout()
        for _ in range(STRIP_COUNT):
            tile = QLabel(self)
            tile.setFixedSize(THUMB_PX + 4, THUMB_PX + 4)
            tile.setAlignment(Qt.AlignmentFlag.AlignCenter)
            tile.setStyleSheet("background:#1c1c1c; color:#8a8a8a;")
            caption = QLabel("", self)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column = QVBoxLayout()
            column.addWidget(tile)
            column.addWidget(caption)
            strip.addLayout(column)
            self.tiles.append(tile)
            self.captions.append(caption)
        strip.addStretch(1)
        head = QHBoxLayout()
        head.addWidget(self.check_button)
        head.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(strip)

    def show_tiles(self, tiles: list[CheckTile]) -> int:
        """Show the check's tiles and what it found; returns in how many the part was found."""
        for label, caption, tile in zip(self.tiles, self.captions, tiles + [None] * STRIP_COUNT):
            if tile is None:
                label.clear()
                caption.setText("")
                continue
            label.setPixmap(QPixmap.fromImage(to_qimage(tile.image)))
            if tile.match is None:
                caption.setText("not found")
                caption.setStyleSheet("color:#ff6b6b; font-weight:600;")
                caption.setToolTip(tile.reason)
            else:
                caption.setText(f"match {tile.match:.2f}")
                caption.setStyleSheet("color:#1dd1a1;")
                caption.setToolTip("")
        found = sum(t.match is not None for t in tiles)
        self.status.setText(f"Registration found the part in {found} of {len(tiles)} good images; the grid "
                            "is drawn where it put it." + ("" if found == len(tiles) else
                                                             " Red: not found, grid at the taught place."))
        return found

    def show_checking(self) -> None:
        self.status.setText("Checking\u2026")

    def show_stale(self) -> None:
        self.status.setText("The region or grid changed since this check: press \u201cCheck on good "
                            "images\u201d again.")

    def clear(self) -> None:
        for label, caption in zip(self.tiles, self.captions):
            label.setText("not checked yet")
            caption.setText("")
        self.status.setText("Press \u201cCheck on good images\u201d to see the grid where registration puts it "
                            "on other good parts (takes a second).")
