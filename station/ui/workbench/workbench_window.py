"""The engineer's workbench window: capture and dataset, training, threshold tuner, versions and shadow
mode as tabs, the Teach dialog for a new product, with one message line for what went wrong or what changed."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from station.core.errors import StationError
from station.ui.workbench.capture_controller import CaptureController
from station.ui.workbench.dataset_browser import DatasetBrowser
from station.ui.workbench.engineer_mode_button import EngineerModeButton
from station.ui.workbench.shadow_panel import ShadowPanel
from station.ui.workbench.teach_dialog import TeachDialog
from station.ui.workbench.threshold_tuner import ThresholdTuner
from station.ui.workbench.training_view import TrainingView
from station.ui.workbench.versions_panel import VersionsPanel
from station.ui.workbench.workbench import Workbench

INFO_SECONDS = 8
CAPTURE_HELP = ("Engineer mode: Ctrl+0 saves the live frame as good, Ctrl+1 \u2026 Ctrl+9 as the recipe's defect "
                "classes (see the Engineer menu), Ctrl+Shift+N under a new class. Click a cell on the live view "
                "first to record which pin is defective.")


class WorkbenchWindow(QWidget):
    def __init__(self, workbench: Workbench, capture: CaptureController, validation=None, parent=None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.workbench = workbench
        self.capture = capture
        self.setWindowTitle("Engineer's workbench")
        self.setObjectName("workbench-window")
        self.mode_button = EngineerModeButton(workbench, self)
        self.teach_button = QPushButton("Teach product\u2026", self)
        self.teach_button.setToolTip("Propose and correct a product's region and grid on good images; save it "
                                     "as a setup to train on (saving needs engineer mode)")
        self.teach_dialog: TeachDialog | None = None
        self.message = QLabel("", self)
        self.message.setObjectName("workbench-message")
        self.message.setWordWrap(True)
        self.message.hide()
        self._hide_message = QTimer(self)
        self._hide_message.setSingleShot(True)
        self._hide_message.setInterval(INFO_SECONDS * 1000)
        self._hide_message.timeout.connect(self.message.hide)
        self.browser = DatasetBrowser(workbench, self)
        self.training = TrainingView(workbench, self)
        self.tuner = ThresholdTuner(workbench, validation, self)
        self.versions = VersionsPanel(workbench, self)
        self.shadow = ShadowPanel(workbench, self)

        capture_tab = QWidget(self)
        cl = QVBoxLayout(capture_tab)
        help_label = QLabel(CAPTURE_HELP, capture_tab)
        help_label.setWordWrap(True)
        self.marked = QLabel("Marked cell: none", capture_tab)
        self.auto_box = QCheckBox("Auto-capture NG and REVIEW frames (into auto_ng / auto_review, to relabel here)",
                                  capture_tab)
        clear_cell = QPushButton("Clear marked cell", capture_tab)
        row = QHBoxLayout()
        row.addWidget(self.marked)
        row.addWidget(clear_cell)
        row.addStretch(1)
        row.addWidget(self.auto_box)
        cl.addWidget(help_label)
        cl.addLayout(row)
        cl.addWidget(self.browser, 1)

        self.tabs = QTabWidget(self)
        self.tabs.addTab(capture_tab, "Capture && dataset")
        self.tabs.addTab(self.training, "Training")
        self.tabs.addTab(self.tuner, "Threshold tuner")
        self.tabs.addTab(self.versions, "Versions")
        self.tabs.addTab(self.shadow, "Shadow mode")
        top = QHBoxLayout()
        top.addWidget(self.mode_button)
        top.addWidget(self.teach_button)
        top.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        self.resize(1280, 820)

        clear_cell.clicked.connect(self._clear_cell)
        self.teach_button.clicked.connect(self.open_teach)
        self.auto_box.toggled.connect(capture.set_auto_capture)
        capture.cell_marked.connect(self._on_cell)
        capture.captured.connect(self._on_captured)
        capture.failed.connect(self._on_capture_failed)
        workbench.message.connect(self.show_message)

    def _clear_cell(self) -> None:
        self.capture.mark_cell(None)

    def _on_cell(self, cell) -> None:
        self.marked.setText("Marked cell: none" if cell is None else f"Marked cell: column {cell[0]}, row {cell[1]}")

    def _on_captured(self, label: str, path: str) -> None:
        self.show_message("info", f"saved the frame as {label}: {path}")

    def _on_capture_failed(self, text: str) -> None:
        self.show_message("error", text)

    def show_message(self, level: str, text: str) -> None:
        colour = "#8b1e1e" if level == "error" else "#1e4d2b"
        self.message.setStyleSheet(f"background:{colour}; color:white; padding:4px;")
        self.message.setText(text)
        self.message.show()
        if level == "error":  # an error stays until the next message; news goes after a few seconds
            self._hide_message.stop()
        else:
            self._hide_message.start()

    def open_teach(self) -> TeachDialog:
        """The Teach dialog on the captured good images (else the running recipe's training set), with the
        live frame as the golden image; one at a time."""
        if self.teach_dialog is None:
            live = self.capture.current.frame.image if self.capture.current is not None else None
            self.teach_dialog = TeachDialog(self.workbench, self._teach_source(), live, parent=self)
            self.teach_dialog.finished.connect(self._on_teach_closed)
        self.teach_dialog.show()
        self.teach_dialog.raise_()
        self.teach_dialog.activateWindow()
        return self.teach_dialog

    def _teach_source(self):
        dataset = self.workbench.dataset
        try:
            if dataset.counts().get(dataset.ok_class, 0):
                return dataset.root
        except StationError:
            pass  # a damaged capture folder: teach from the training set, or a folder the engineer picks
        return self.workbench.original_data_path()  # None: the dialog asks for a folder

    def _on_teach_closed(self) -> None:
        if self.teach_dialog is not None:
            self.teach_dialog.deleteLater()
            self.teach_dialog = None

    def shutdown(self) -> None:
        for panel in (self.training, self.tuner, self.shadow):
            panel.shutdown()
        if self.teach_dialog is not None:
            self.teach_dialog.shutdown()

