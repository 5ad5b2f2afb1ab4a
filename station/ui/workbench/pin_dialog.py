"""The engineer PIN prompt: unlock engineer mode, or set the first PIN (entered twice) when none exists."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout

from station.core.workbench.errors import AccessError
from station.ui.workbench.workbench import Workbench


class PinDialog(QDialog):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.setting_first_pin = not workbench.pins.has_pin
        self.setWindowTitle("Set the engineer PIN" if self.setting_first_pin else "Engineer mode")
        self.intro = QLabel(
            "No engineer PIN is set on this station yet. Choose one (4 to 12 digits); it is stored only as a "
            "salted hash." if self.setting_first_pin else "Enter the engineer PIN to unlock engineer mode.", self)
        self.intro.setWordWrap(True)
        self.pin = QLineEdit(self)
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setInputMethodHints(Qt.InputMethodHint.ImhDigitsOnly)
        self.pin.setMaxLength(12)
        self.repeat = QLineEdit(self)
        self.repeat.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat.setMaxLength(12)
        self.error = QLabel("", self)
        self.error.setObjectName("pin-error")
        self.error.setStyleSheet("color:#ff6b6b;")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("PIN", self.pin)
        if self.setting_first_pin:
            form.addRow("PIN again", self.repeat)
        else:
            self.repeat.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def submit(self) -> bool:
        """Check the PIN; on success the dialog is accepted (engineer mode on), else it says why and stays."""
        pin = self.pin.text()
        try:
            if self.setting_first_pin:
                if pin != self.repeat.text():
                    raise AccessError("the two PINs differ")
                self.workbench.session.set_pin(pin)
            self.workbench.unlock(pin)
        except AccessError as exc:
            self.error.setText(str(exc))
            self.pin.clear()
            self.repeat.clear()
            self.pin.setFocus()
            return False
        self.accept()
        return True
