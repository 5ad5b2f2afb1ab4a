"""Shadow mode: run a candidate recipe beside the active one on the live line and list the verdicts
that would change (the line keeps acting on the active recipe only)."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from station.core.errors import StationError
from station.ui.workbench.shadow_feeder import ShadowFeeder
from station.ui.workbench.workbench import Workbench

MAX_ROWS = 500
COLUMNS = ["Frame", "Line says", "Candidate says", "Line class", "Candidate class", "Line score", "Candidate score"]


class ShadowPanel(QWidget):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.feeder: ShadowFeeder | None = None
        self.which = QComboBox(self)
        self.start_button = QPushButton("Start shadow mode", self)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setEnabled(False)
        self.summary = QLabel("Shadow mode is off. The candidate judges the live frames beside the active recipe; "
                              "the line keeps acting on the active recipe only.", self)
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        row = QHBoxLayout()
        row.addWidget(QLabel("Candidate", self))
        row.addWidget(self.which, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Frames whose verdict or class would change (newest first)", self))
        layout.addWidget(self.table, 1)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._show_summary)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        workbench.candidate_changed.connect(self.fill_choices)
        workbench.versions_changed.connect(self.fill_choices)
        self.fill_choices()

    def fill_choices(self) -> None:
        self.which.clear()
        if self.workbench.candidate is not None:
            self.which.addItem("the trained candidate (not published)", "candidate")
        try:
            versions = self.workbench.version_list()
        except StationError:
            versions = []
        for v in reversed(versions):
            if not v.active and not v.error:
                self.which.addItem(f"version {v.name} ({v.engine}, {v.note[:40]})", v.name)
        self.start_button.setEnabled(self.which.count() > 0 and self.feeder is None)

    def start(self) -> bool:
        choice = self.which.currentData()
        try:
            if choice is None:
                raise StationError("no candidate: train one, or publish more than one version")
            candidate = (self.workbench.candidate if choice == "candidate"
                         else self.workbench.versions.load(choice))
            self.feeder = ShadowFeeder(self.workbench.service, candidate, self)
        except StationError as exc:
            self.summary.setText(f"Cannot start shadow mode: {exc}")
            return False
        self.table.setRowCount(0)
        self.feeder.changed.connect(self._on_change)
        self.feeder.stopped.connect(self._on_stopped)
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._tick.start()
        self._show_summary()
        return True

    def stop(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
            self._show_summary()
            self.feeder.deleteLater()
            self.feeder = None
        self._tick.stop()
        self.stop_button.setEnabled(False)
        self.start_button.setEnabled(self.which.count() > 0)

    def _on_stopped(self, why: str) -> None:
        self.stop()
        self.summary.setText(f"{self.summary.text()}\n{why}")

    def _on_change(self, change) -> None:
        self.table.insertRow(0)
        values = [str(change.frame_id), change.active_verdict, change.candidate_verdict, change.active_label,
                  change.candidate_label, f"{change.active_score:.4g}", f"{change.candidate_score:.4g}"]
        for col, text in enumerate(values):
            self.table.setItem(0, col, QTableWidgetItem(text))
        if self.table.rowCount() > MAX_ROWS:
            self.table.setRowCount(MAX_ROWS)

    def _show_summary(self) -> None:
        if self.feeder is None:
            return
        s = self.feeder.run.summary()
        flows = ", ".join(f"{k} {v}" for k, v in sorted(s["transitions"].items()) if k.split("->")[0] != k.split("->")[1])
        self.summary.setText(f"Shadow mode on: {s['frames']} frames compared; {s['verdict_changed']} verdicts would "
                             f"change ({flows or 'none'}); {s['changed'] - s['verdict_changed']} only the defect class. "
                             f"Skipped while busy: {self.feeder.skipped}.")

    def shutdown(self) -> None:
        self.stop()
