"""The engineer PIN prompt: unlock engineer mode, or set the first PIN (entered twice) on a station that never
had one. A missing, damaged or foreign PIN file locks engineer mode: the dialog says why and takes no PIN."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout

from station.core.workbench.errors import AccessError
from station.ui.workbench.workbench import Workbench


class PinDialog(QDialog):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        workbench.pins.reload()  # a PIN file restored (or removed) while the station ran
        self.locked = workbench.pins.problem
        self.setting_first_pin = not self.locked and not workbench.pins.has_pin
        self.setWindowTitle("Set the engineer PIN" if self.setting_first_pin else "Engineer mode")
        if self.locked:
            text = self.locked
            try:  # the attempt is refused, and recorded as refused
                workbench.unlock("")
            except AccessError:
                pass
        elif self.setting_first_pin:
            text = ("No engineer PIN was ever set on this station. Choose one (4 to 12 digits); it is stored only "
                    "as a salted hash, and setting it is recorded in the audit log.")
        else:
            text = "Enter the engineer PIN to unlock engineer mode."
        self.intro = QLabel(text, self)
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
        if self.locked:
            self.intro.setStyleSheet("color:#ff6b6b;")
            self.pin.setEnabled(False)
            buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)

    def submit(self) -> bool:
        """Check the PIN; on success the dialog is accepted (engineer mode on), else it says why and stays."""
        pin = self.pin.text()
        try:
            if self.locked:
                self.workbench.unlock(pin)  # refused (and recorded) unless the PIN file came back
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
