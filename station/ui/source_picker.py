"""Choose where images come from: a camera OpenCV finds, a video file, an image folder, the demo line."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QGridLayout,
                               QLineEdit, QPushButton, QRadioButton)

from station.core.camera_probe import probe_cameras


class SourcePicker(QDialog):
    """`spec` after acceptance is what make_source() takes: demo, camera:N, a video path or a folder."""

    def __init__(self, current: str = "demo", cameras: list[int] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose the image source")
        self.spec = current
        cams = probe_cameras() if cameras is None else cameras
        self.demo = QRadioButton("Demo line (bundled images)", self)
        self.camera = QRadioButton("Camera", self)
        self.video = QRadioButton("Video file", self)
        self.folder = QRadioButton("Image folder", self)
        group = QButtonGroup(self)
        for b in (self.demo, self.camera, self.video, self.folder):
            group.addButton(b)
        self.camera_box = QComboBox(self)
        for i in cams:
            self.camera_box.addItem(f"camera {i}", i)
        if not cams:
            self.camera_box.addItem("no camera found")
            self.camera.setEnabled(False)
        self.video_path, self.folder_path = QLineEdit(self), QLineEdit(self)
        browse_video, browse_folder = QPushButton("Browse\u2026", self), QPushButton("Browse\u2026", self)
        browse_video.clicked.connect(self._browse_video)
        browse_folder.clicked.connect(self._browse_folder)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        grid = QGridLayout(self)
        grid.addWidget(self.demo, 0, 0, 1, 3)
        grid.addWidget(self.camera, 1, 0)
        grid.addWidget(self.camera_box, 1, 1, 1, 2)
        grid.addWidget(self.video, 2, 0)
        grid.addWidget(self.video_path, 2, 1)
        grid.addWidget(browse_video, 2, 2)
        grid.addWidget(self.folder, 3, 0)
        grid.addWidget(self.folder_path, 3, 1)
        grid.addWidget(browse_folder, 3, 2)
        grid.addWidget(buttons, 4, 0, 1, 3)
        self._select(current)

    def _select(self, spec: str) -> None:
        if spec.startswith("camera:") and self.camera.isEnabled():
            self.camera.setChecked(True)
            found = self.camera_box.findData(int(spec[7:])) if spec[7:].isdigit() else -1
            if found >= 0:
                self.camera_box.setCurrentIndex(found)
        elif os.path.isdir(spec):
            self.folder.setChecked(True)
            self.folder_path.setText(spec)
        elif os.path.isfile(spec):
            self.video.setChecked(True)
            self.video_path.setText(spec)
        else:
            self.demo.setChecked(True)

    def _browse_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.mp4 *.avi *.mkv *.mov *.m4v);;All (*)")
        if path:
            self.video_path.setText(path)
            self.video.setChecked(True)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Image folder")
        if path:
            self.folder_path.setText(path)
            self.folder.setChecked(True)

    def selected_spec(self) -> str:
        if self.camera.isChecked() and self.camera_box.currentData() is not None:
            return f"camera:{self.camera_box.currentData()}"
        if self.video.isChecked() and self.video_path.text().strip():
            return self.video_path.text().strip()
        if self.folder.isChecked() and self.folder_path.text().strip():
            return self.folder_path.text().strip()
        return "demo"

    def accept(self) -> None:
        self.spec = self.selected_spec()
        super().accept()
