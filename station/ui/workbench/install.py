"""Hooking the workbench into the station window: an "Engineer" menu (mode, workbench, teach a product,
capture hotkeys, auto-capture) and the engineer-mode button in the tool bar. The main window needs two lines:

    from station.ui.workbench import install_workbench
    self.workbench = install_workbench(self)
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QInputDialog, QMainWindow

from station.ui.workbench.capture_controller import CaptureController
from station.ui.workbench.engineer_mode_button import EngineerModeButton
from station.ui.workbench.teach_dialog import TeachDialog
from station.ui.workbench.workbench import Workbench
from station.ui.workbench.workbench_window import WorkbenchWindow

MAX_CLASS_KEYS = 9


class EngineerMenu(QObject):
    """The menu, tool-bar button and hotkeys of the workbench on a main window; owns the workbench window."""

    def __init__(self, main_window: QMainWindow, workbench: Workbench, validation: str | Path | None = None) -> None:
        super().__init__(main_window)
        self.main_window = main_window
        self.workbench = workbench
        canvas = getattr(getattr(main_window, "live_view", None), "canvas", None)
        self.capture = CaptureController(workbench, canvas, self)
        self.validation = validation
        self._window: WorkbenchWindow | None = None  # made when first opened: the operator's start stays light

        menu = main_window.menuBar().addMenu("&Engineer")
        self.menu = menu
        self.mode_action = self._add(menu, "Engineer &mode (unlock / lock)\u2026", "Ctrl+Shift+E", self.toggle_mode)
        self.open_action = self._add(menu, "Open the &workbench", "Ctrl+Shift+W", self.open_workbench)
        self.teach_action = self._add(menu, "&Teach product\u2026", None, self.open_teach)
        menu.addSeparator()
        self.capture_group = QActionGroup(self)
        self.capture_group.setExclusive(False)
        self.capture_group.triggered.connect(self._on_capture_action)
        self.capture_menu = menu.addMenu("&Capture the live frame as")
        self.new_class_action = self._add(menu, "Capture as a &new class\u2026", "Ctrl+Shift+N", self.capture_new_class)
        self.auto_action = self._add(menu, "&Auto-capture NG and REVIEW frames", None, self.capture.set_auto_capture)
        self.auto_action.setCheckable(True)
        self._fill_capture_menu()

        self.mode_button = EngineerModeButton(workbench, main_window)
        toolbar = getattr(main_window, "_toolbar", None)
        if toolbar is not None:
            toolbar.addSeparator()
            toolbar.addWidget(self.mode_button)
        workbench.role_changed.connect(self._on_role)
        workbench.service.recipe_changed.connect(self._fill_capture_menu)
        workbench.dataset_changed.connect(self._fill_capture_menu)
        workbench.message.connect(self._on_message)
        self.capture.failed.connect(self._on_capture_failed)
        main_window.installEventFilter(self)
        self._on_role(workbench.session.role.value)

    def _add(self, menu, text: str, shortcut: str | None, slot) -> QAction:
        action = QAction(text, self.main_window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutVisibleInContextMenu(True)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    # -- capture actions ------------------------------------------------------------------------
    def class_names(self) -> list[str]:
        names = [self.workbench.dataset.ok_class]
        recipe = self.workbench.service.recipe
        for name in (recipe.doc.classes if recipe is not None else []) + self.workbench.dataset.classes():
            if name not in names:
                names.append(name)
        return names

    def _fill_capture_menu(self) -> None:
        for action in list(self.capture_group.actions()):
            self.capture_group.removeAction(action)
            self.capture_menu.removeAction(action)
            action.deleteLater()
        for i, name in enumerate(self.class_names()[:MAX_CLASS_KEYS + 1]):
            action = QAction(name, self.main_window)
            action.setData(name)
            action.setShortcut(QKeySequence(f"Ctrl+{i}"))
            action.setShortcutVisibleInContextMenu(True)
            action.setEnabled(self.workbench.is_engineer)
            self.capture_group.addAction(action)
            self.capture_menu.addAction(action)
            self.main_window.addAction(action)  # hotkeys work while the menu is closed

    def _on_capture_action(self, action: QAction) -> None:
        self.capture.capture_current(str(action.data()))

    def capture_new_class(self) -> None:
        if not self.workbench.is_engineer:
            self.workbench.report("error", "capturing needs engineer mode: unlock with the engineer PIN")
            return
        name, ok = QInputDialog.getText(self.main_window, "New class", "Class name (letters, digits, _ or -):")
        if ok and name.strip():
            self.capture.capture_current(name.strip())

    # -- mode -----------------------------------------------------------------------------------
    def toggle_mode(self) -> None:
        self.mode_button.toggle()

    @property
    def window(self) -> WorkbenchWindow:
        if self._window is None:
            self._window = WorkbenchWindow(self.workbench, self.capture, self.validation, self.main_window)
            self._window.auto_box.setChecked(self.capture.auto_capture)
            self._window.auto_box.toggled.connect(self.auto_action.setChecked)
            self.auto_action.toggled.connect(self._window.auto_box.setChecked)
        return self._window

    def open_workbench(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def open_teach(self) -> TeachDialog:
        """The workbench window's Teach dialog, the one its "Teach product\u2026" button opens (one at a time)."""
        return self.window.open_teach()

    def _on_role(self, role: str) -> None:
        engineer = role == "engineer"
        for action in self.capture_group.actions():
            action.setEnabled(engineer)
        self.new_class_action.setEnabled(engineer)
        self.mode_action.setText("Lock engineer mode" if engineer else "Engineer &mode (unlock)\u2026")

    def _on_message(self, level: str, text: str) -> None:
        show = getattr(self.main_window, "show_banner", None)
        if level == "error" and show is not None:
            show(text)

    def _on_capture_failed(self, text: str) -> None:
        self._on_message("error", text)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        # a filter whose Python side the garbage collector has already cleared (a closed window being
        # destroyed) has nothing to do
        main = getattr(self, "main_window", None)
        if main is not None and watched is main and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        # no more events from the window: when the collector later destroys the closed window, its filter
        # must not be called half-destroyed (seen in the tests: called with its Python attributes gone)
        self.main_window.removeEventFilter(self)
        if self._window is not None:
            self._window.shutdown()
        self.capture.shutdown()
        self.workbench.shutdown()


def install_workbench(main_window: QMainWindow, root: str | Path | None = None, dataset_root: str | Path | None = None,
                      idle_seconds: float = 300.0, validation: str | Path | None = None,
                      apply_active: bool = True, pin_cost: int | None = None) -> EngineerMenu:
    """Add the workbench to a station window; the line switches to the store's active version if it has one."""
    workbench = Workbench(main_window.service, root, dataset_root, idle_seconds, pin_cost=pin_cost,
                          parent=main_window)
    if apply_active:
        message = workbench.apply_active_version()
        if message and hasattr(main_window, "add_to_banner"):
            main_window.add_to_banner(message)  # beside, not over, a start-up message (settings set aside)
    for problem in workbench.trust_problems() if hasattr(main_window, "add_to_banner") else ():
        main_window.add_to_banner(problem)  # a broken audit log or a locked PIN file is shown from the start
    return EngineerMenu(main_window, workbench, validation)
