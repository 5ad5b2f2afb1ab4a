"""The role switch in the tool bar: shows operator / engineer (with the time left before the idle lock);
a click asks for the PIN or locks again."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QToolButton

from station.ui.workbench.pin_dialog import PinDialog
from station.ui.workbench.workbench import Workbench


class EngineerModeButton(QToolButton):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.setObjectName("engineer-mode")
        self.clicked.connect(self.toggle)
        workbench.role_changed.connect(self._on_role)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._refresh)
        self._refresh()

    def toggle(self) -> None:
        if self.workbench.is_engineer:
            self.workbench.lock()
        else:
            self.ask_pin()

    def ask_pin(self) -> bool:
        dialog = PinDialog(self.workbench, self.window())
        try:
            return bool(dialog.exec())
        finally:
            dialog.deleteLater()

    def _on_role(self, role: str) -> None:
        (self._tick.start if role == "engineer" else self._tick.stop)()
        self._refresh()

    def _refresh(self) -> None:
        left = self.workbench.session.seconds_until_lock()
        if left is None and self.workbench.pins.problem:
            self.setText("Operator \u2013 engineer mode locked")
            self.setToolTip(self.workbench.pins.problem)
            self.setStyleSheet("QToolButton { background:#8b1e1e; color:white; }")
        elif left is None:
            self.setText("Operator \u2013 unlock engineer mode\u2026")
            self.setToolTip("Operator mode: the line runs, nothing can be changed. Click and enter the engineer PIN.")
            self.setStyleSheet("")
        else:
            self.setText(f"Engineer ({int(left // 60)}:{int(left % 60):02d} to lock) \u2013 lock")
            self.setToolTip("Engineer mode locks itself after idle time; click to lock now.")
            self.setStyleSheet("QToolButton { background:#7a4f00; color:white; font-weight:600; }")
