"""Help > Station doctor: the `station doctor` report in a window, gathered in a worker thread, ready to copy
into a support ticket."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout

from station.ui.workbench.jobs import Job


def _gather(progress, should_stop, emit) -> str:
    from station.doctor import format_report, report

    return format_report(report())


class DoctorDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Station doctor")
        self.resize(820, 560)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlainText("Looking at cameras, GPU, folders, database and disk\u2026")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.job = Job(_gather, name="station-doctor", parent=self)
        self.job.done.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.start()

    def _on_done(self, text: str) -> None:
        self.text.setPlainText(text)

    def _on_failed(self, message: str) -> None:
        self.text.setPlainText(f"The report could not be made: {message} (the log file has the traceback)")

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())

    def done(self, result: int) -> None:  # noqa: A003 - QDialog's own name
        self.job.cancel()
        self.job.wait()
        super().done(result)
