"""Line > Shift report: pick a period, get the shift report (PDF or HTML) and, if asked, the results as CSV."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PySide6.QtCore import QDateTime, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QDateTimeEdit, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QPushButton, QVBoxLayout)

from station.core.errors import StationError
from station.core.report import build_report, write_csv, write_html

logger = logging.getLogger(__name__)


def _to_qt(when: datetime) -> QDateTime:
    return QDateTime.fromSecsSinceEpoch(int(when.timestamp()))


def _from_qt(value: QDateTime) -> datetime:
    return datetime.fromtimestamp(value.toSecsSinceEpoch(), timezone.utc)


class ReportDialog(QDialog):
    def __init__(self, url: str, parent=None, versions_root: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Shift report")
        self.url = url
        if versions_root is None:
            from station.core.workbench import default_root

            versions_root = default_root() / "recipes"
        self.versions_root = versions_root
        now = datetime.now(timezone.utc)
        self.since = QDateTimeEdit(_to_qt(now - timedelta(hours=8)), self)
        self.until = QDateTimeEdit(_to_qt(now), self)
        for edit in (self.since, self.until):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.with_csv = QCheckBox("Also export the results as CSV (beside the report)", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("From", self.since)
        form.addRow("To", self.until)
        save = QPushButton("Save report\u2026", self)
        save.clicked.connect(self.save)
        close = QPushButton("Close", self)
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(save)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.with_csv)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

    def save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the shift report", "shift_report.pdf",
                                              "PDF (*.pdf);;HTML (*.html)")
        if path:
            self.write(Path(path))

    def write(self, path: Path) -> bool:
        """Build and write the report to `path` (.pdf or .html); the outcome is shown in the dialog."""
        if path.suffix.lower() not in (".pdf", ".html", ".htm"):
            path = path.with_suffix(".pdf")
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            since, until = _from_qt(self.since.dateTime()), _from_qt(self.until.dateTime())
            report = build_report(self.url, since, until, self.versions_root)
            if path.suffix.lower() == ".pdf":
                from station.ui.report_pdf import write_pdf

                write_pdf(report, path)
            else:
                write_html(report, path)
            text = f"Saved {path}: {report.total} parts"
            if self.with_csv.isChecked():
                rows = write_csv(self.url, since, until, path.with_suffix(".csv"))
                text += f"; {rows} results in {path.with_suffix('.csv').name}"
        except StationError as exc:
            self.status.setText(f"<span style='color:#ff5a5a'>Not saved: {exc}</span>")
            logger.warning("shift report not saved: %s", exc)
            return False
        finally:
            QGuiApplication.restoreOverrideCursor()
        self.status.setText(text + ".")
        return True
