"""Recipe versions: the list with engine, thresholds and stored metrics; switch, roll back, publish the
candidate; the audit log's latest entries, with a red line when its chain is broken (and a button for an
engineer to acknowledge it, recorded). Every change goes through the Workbench (audited first)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from station.core.errors import StationError
from station.ui.workbench.workbench import Workbench

COLUMNS = ["Version", "Active", "Engine", "Review / NG", "Escape rate", "False rejects", "Saved", "By", "Note", "Hash"]


def _pct(x) -> str:
    return "" if x is None else f"{100 * float(x):.2f} %"


class VersionsPanel(QWidget):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.running = QLabel(self)
        self.running.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.switch_button = QPushButton("Switch the line to the selected version", self)
        self.rollback_button = QPushButton("Roll back to the previous version", self)
        self.note = QLineEdit(self)
        self.note.setPlaceholderText("note for publishing the candidate")
        self.publish_button = QPushButton("Publish the candidate (as trained)", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.audit_alarm = QLabel("", self)
        self.audit_alarm.setObjectName("audit-alarm")
        self.audit_alarm.setWordWrap(True)
        self.audit_alarm.setStyleSheet("background:#8b1e1e; color:white; padding:4px; font-weight:600;")
        self.audit_alarm.hide()
        self.acknowledge_button = QPushButton("Acknowledge (recorded)", self)
        self.acknowledge_button.setToolTip("You have looked into the audit problem; the acknowledgement is recorded "
                                           "in the audit log and the red line goes until the next problem.")
        self.acknowledge_button.hide()
        self.audit = QPlainTextEdit(self)
        self.audit.setReadOnly(True)
        self.audit.setMaximumHeight(140)
        buttons = QHBoxLayout()
        buttons.addWidget(self.switch_button)
        buttons.addWidget(self.rollback_button)
        buttons.addStretch(1)
        publish = QHBoxLayout()
        publish.addWidget(self.note, 1)
        publish.addWidget(self.publish_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.running)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addLayout(publish)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Audit log (latest first)", self))
        alarm = QHBoxLayout()
        alarm.addWidget(self.audit_alarm, 1)
        alarm.addWidget(self.acknowledge_button)
        layout.addLayout(alarm)
        layout.addWidget(self.audit)

        self.switch_button.clicked.connect(self.switch_selected)
        self.rollback_button.clicked.connect(self.rollback)
        self.publish_button.clicked.connect(self.publish_candidate)
        self.acknowledge_button.clicked.connect(self.acknowledge_audit)
        workbench.versions_changed.connect(self.refresh)
        workbench.candidate_changed.connect(self._on_role_or_candidate)
        workbench.service.recipe_changed.connect(self.refresh)
        workbench.role_changed.connect(self._on_role_or_candidate)
        self.refresh()

    def _on_role_or_candidate(self, *_args) -> None:
        engineer = self.workbench.is_engineer
        self.switch_button.setEnabled(engineer)
        self.rollback_button.setEnabled(engineer)
        self.publish_button.setEnabled(engineer and self.workbench.candidate is not None)
        self.acknowledge_button.setEnabled(engineer)

    def refresh(self) -> None:
        recipe = self.workbench.service.recipe
        self.running.setText("The line runs: " + (f"{recipe.name} ({recipe.doc.engine.name}), hash "
                                                  f"{recipe.short_hash}, thresholds {recipe.thresholds[0]:.4g} / "
                                                  f"{recipe.thresholds[1]:.4g}" if recipe else "no recipe"))
        try:
            versions = self.workbench.version_list()
        except StationError as exc:
            versions = []
            self.status.setText(str(exc))
        self.table.setRowCount(len(versions))
        for row, v in enumerate(reversed(versions)):
            m = v.metrics or {}
            cells = [v.name, "\u25cf line" if v.active else "", v.engine,
                     f"{v.thresholds[0]:.4g} / {v.thresholds[1]:.4g}" if v.thresholds else "",
                     _pct(m.get("escape_rate")) + (f" (\u2264 {_pct(m['escape_rate_upper'])})"
                                                   if m.get("escape_rate_upper") is not None else ""),
                     _pct(m.get("false_reject_rate")), v.saved[:19].replace("T", " "), v.saved_by.get("user", ""),
                     v.error or v.note, v.content_hash.removeprefix("sha256:")[:12]]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, v.name)
                if v.active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, col, item)
        try:
            entries = self.workbench.audit.entries()[-50:]
        except StationError as exc:
            entries = []
            self.audit.setPlainText(str(exc))
        problem = self.workbench.audit_check.problem
        self.audit_alarm.setText(f"Audit log: {problem}" if problem else "")
        self.audit_alarm.setVisible(bool(problem))
        self.acknowledge_button.setVisible(bool(problem))
        if entries:
            self.audit.setPlainText("\n".join(
                f"{e['time'][:19].replace('T', ' ')}  {e['user']:<10} {e['action']:<17} "
                f"{_short(e['old'])} -> {_short(e['new'])}" for e in reversed(entries)))
        self._on_role_or_candidate()

    def selected_version(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _do(self, what: str, fn, *args) -> bool:
        try:
            fn(*args)
        except StationError as exc:
            self.status.setText(f"{what}: {exc}")
            self.workbench.report("error", f"{what}: {exc}")
            self.refresh()
            return False
        self.status.setText(f"{what}: done")
        self.refresh()
        return True

    def switch_selected(self) -> bool:
        version = self.selected_version()
        if version is None:
            self.status.setText("Select a version first.")
            return False
        return self._do(f"switch to {version}", self.workbench.activate, version)

    def rollback(self) -> bool:
        return self._do("roll back", self.workbench.rollback)

    def acknowledge_audit(self) -> bool:
        return self._do("acknowledge the audit problem", self.workbench.acknowledge_audit,
                        self.note.text().strip())

    def publish_candidate(self) -> bool:
        if self.workbench.candidate is None:
            self.status.setText("No candidate: train one first.")
            return False
        ok = self._do("publish the candidate", self.workbench.publish, self.workbench.candidate,
                      self.note.text().strip() or "trained in the workbench", None)
        if ok:
            self.workbench.set_candidate(None)
        return ok


def _short(value) -> str:
    if isinstance(value, dict):
        parts = [str(value.get("version", ""))]
        if value.get("thresholds"):
            parts.append("/".join(f"{t:.4g}" for t in value["thresholds"]))
        return " ".join(p for p in parts if p) or "-"
    return "-" if value is None else str(value)[:40]
