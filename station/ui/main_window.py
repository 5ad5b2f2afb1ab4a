"""The station's main window: live view on the left; verdict, counters, recent results and the last
NG parts on the right; line control in the menus and the tool bar, with their shortcuts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPushButton,
                               QSplitter, QToolBar, QVBoxLayout, QWidget)

from station.core.errors import StationError
from station.core.settings import StationSettings, save_settings
from station.core.sources import SourceState, make_source
from station.ui.collector import GuiThreadCollector
from station.ui.counters_panel import CountersPanel
from station.ui.last_ng_list import LastNgList
from station.ui.live_service import LiveService
from station.ui.live_view import LiveView
from station.ui.recent_strip import RecentStrip
from station.ui.report_dialog import ReportDialog
from station.ui.source_picker import SourcePicker
from station.ui.spc_view import SpcMonitor, SpcView
from station.ui.status_bar import StationStatusBar
from station.ui.verdict_panel import VerdictPanel

STYLE = """
QMainWindow, QWidget { background:#202226; color:#e8e8e8; }
QMenuBar, QMenu, QToolBar { background:#2b2d31; color:#e8e8e8; }
QMenu::item:selected, QMenuBar::item:selected { background:#3d6fb6; }
QPushButton, QToolButton { background:#34373d; border:1px solid #4a4d55; padding:4px 10px; border-radius:3px; }
QPushButton:hover, QToolButton:hover { background:#3f434a; }
QListWidget { background:#18191c; border:1px solid #3a3c42; }
QStatusBar { background:#2b2d31; }
QStatusBar QLabel { padding:0 8px; }
QLabel#section { color:#b8b8b8; font-size:14px; font-weight:600; padding-top:6px; }
QLabel#banner { background:#6b4e00; color:white; padding:6px; font-size:14px; }
"""


BANNER_KEEP = 6  # messages the banner shows at most: the first, and the newest


class MainWindow(QMainWindow):
    def __init__(self, service: LiveService, settings: StationSettings | None = None, save: bool = True,
                 parent=None) -> None:
        super().__init__(parent)
        self.service = service
        self.settings = settings or StationSettings()
        self._save = save
        self._collector = GuiThreadCollector(self)  # cycles collected here, never in a worker thread
        self._collector.start()
        self.setWindowTitle("Inspection station")
        self.setStyleSheet(STYLE)

        self.live_view = LiveView(service, self)
        self.verdict_panel = VerdictPanel(service, self)
        self.counters = CountersPanel(service, self)
        self.recent = RecentStrip(service, self.settings.recent_results, self)
        self.last_ng = LastNgList(service, self.settings.last_ng_kept, self)
        self.status = StationStatusBar(service, self)
        self.setStatusBar(self.status)
        self.live_view.set_overlay_visible(self.settings.overlay_visible)
        self.live_view.set_opacity(self.settings.overlay_opacity)

        self.banner = QLabel(self)
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        banner_close = QPushButton("Dismiss", self)
        banner_close.clicked.connect(self.hide_banner)
        self._banner_row = QWidget(self)
        row = QHBoxLayout(self._banner_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.banner, 1)
        row.addWidget(banner_close)
        self._banner_row.hide()
        self._banner_parts: list[str] = []  # what the banner says, oldest first (add_to_banner)
        self._drift_note, self._drift_alarms = "", 0  # the newest pin drift alarm, and how many came

        right = QWidget(self)
        side = QVBoxLayout(right)
        side.setContentsMargins(6, 0, 0, 0)
        side.addWidget(self.verdict_panel, 3)
        side.addWidget(self.counters)
        side.addWidget(self._section("Recent results (newest left) \u2013 click for full size"))
        side.addWidget(self.recent)
        side.addWidget(self._section("Last NG parts \u2013 click for full size"))
        side.addWidget(self.last_ng, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.live_view)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        central = QWidget(self)
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(self._banner_row)
        outer.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.spc = SpcMonitor(service, parent=self)  # charts every result from the start
        self.spc.alarm_raised.connect(self._on_drift_alarm)
        self.spc_view: SpcView | None = None  # its own window, built when View > Pin SPC first opens it
        self._build_actions()
        self.resize(1280, 800)

        service.run_state_changed.connect(self._on_run_state)
        service.line_finished.connect(self._on_line_finished)
        self._on_run_state(service.run_state)

    def _section(self, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setObjectName("section")
        return label

    def _action(self, text: str, shortcut: str | QKeySequence.StandardKey | None, slot, menu,
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutVisibleInContextMenu(True)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        line = bar.addMenu("&Line")
        self.start_action = self._action("&Start", "F5", self.service.start, line)
        self.stop_action = self._action("S&top", "Shift+F5", self.service.stop, line)
        self.pause_action = self._action("&Pause / resume", "F6", self.service.toggle_pause, line)
        self.trigger_action = self._action("Single s&hot (software trigger)", "F7", self.service.trigger, line)
        line.addSeparator()
        self._action("&Reset counters\u2026", None, self.counters.ask_reset, line)
        self._action("Shift r&eport\u2026", None, self.make_report, line)
        line.addSeparator()
        self._action("&Quit", "Ctrl+Q", self.close, line)
        source = bar.addMenu("&Source")
        self._action("&Choose source\u2026", "Ctrl+O", self.choose_source, source)
        self._action("&Demo line", "Ctrl+D", self.use_demo, source)
        self._action("&Video file\u2026", None, self.choose_video, source)
        self._action("&Image folder\u2026", None, self.choose_folder, source)
        view = bar.addMenu("&View")
        self.overlay_action = self._action("&Overlay", "O", self.live_view.toggle_overlay, view)
        self._action("Next engine's &map", "M", self.live_view.next_map, view)
        self._action("&Fit image", "F", self.live_view.canvas.fit, view)
        self._action("Zoom &in", "+", self.live_view.zoom_in, view)
        self._action("Zoom &out", "-", self.live_view.zoom_out, view)
        view.addSeparator()
        self.spc_action = self._action("Pin &SPC (drift charts)", "Ctrl+M", self.show_spc, view)
        self._action("&Result log and retention\u2026", None, self.show_result_log, view)
        help_menu = bar.addMenu("&Help")
        self._action("Station &doctor (for a support call)\u2026", None, self.show_doctor, help_menu)
        self._action("&About\u2026", None, self.show_about, help_menu)

        tools = QToolBar("Line", self)
        tools.setObjectName("line-toolbar")
        tools.setMovable(False)
        for action, label in ((self.start_action, "Start  F5"), (self.stop_action, "Stop  Shift+F5"),
                              (self.pause_action, "Pause  F6"), (self.trigger_action, "Single shot  F7")):
            button = tools.addAction(label)
            button.setToolTip(action.text().replace("&", ""))
            button.triggered.connect(action.trigger)
        self.addToolBar(tools)
        self._toolbar = tools

    # -- line state -------------------------------------------------------------------------------
    def _on_run_state(self, state: str) -> None:
        self.start_action.setEnabled(state != "running")
        self.stop_action.setEnabled(state != "stopped")
        self.pause_action.setText("&Resume" if state == "paused" else "&Pause")
        labels = {"running": "running", "paused": "paused", "stopped": "stopped"}
        self.setWindowTitle(f"Inspection station \u2013 {self.service.source.description} \u2013 {labels[state]}")
        for button in self._toolbar.actions():
            if button.text().startswith(("Pause", "Resume")):
                button.setText("Resume  F6" if state == "paused" else "Pause  F6")

    def _on_line_finished(self) -> None:
        pipeline = self.service.pipeline
        t = pipeline.tally.snapshot()
        if pipeline.state is SourceState.FAILED:  # not the end of a replay: say why the line stopped
            text = f"{self.service.source.description} stopped: {pipeline.message}; {t['total']} images inspected"
        else:
            text = f"{self.service.source.description} finished: {t['total']} images inspected"
        if t["unreadable"]:
            text += f", {t['unreadable']} could not be read: " + "; ".join(t["bad_files"][-3:])
        self.show_banner(text)

    def show_banner(self, text: str) -> None:
        """Show `text` alone (what the banner said before goes)."""
        self._banner_parts, self._drift_note, self._drift_alarms = [text], "", 0
        self._render_banner()

    def add_to_banner(self, text: str, first: bool = False) -> None:
        """Show `text` beside what the banner already says (before it with `first`), or alone. The banner keeps
        the first message and the newest ones, BANNER_KEEP at most, each once: a message that comes again and
        again (a long shift's) does not grow it, nor the window's layout with it."""
        if not self._banner_row.isVisibleTo(self):
            self.show_banner(text)
            return
        parts = [p for p in self._banner_parts if p != text]
        if first:
            parts.insert(0, text)
        else:
            parts.append(text)
        if len(parts) > BANNER_KEEP:
            parts = parts[:1] + parts[len(parts) - BANNER_KEEP + 1:]
        self._banner_parts = parts
        self._render_banner()

    def _on_drift_alarm(self, text: str) -> None:
        """A pin drifting toward NG: the newest alarm and how many came since the banner was last cleared, in
        one place on the banner (the demo line's drifting pin alarms again and again over a shift)."""
        if not self._banner_row.isVisibleTo(self):
            self._banner_parts, self._drift_alarms = [], 0
        self._drift_alarms += 1
        more = f" ({self._drift_alarms} drift alarms: View > Pin SPC)" if self._drift_alarms > 1 else ""
        self._drift_note = text + more
        self._render_banner()

    def _render_banner(self) -> None:
        text = "  ".join([*self._banner_parts, self._drift_note] if self._drift_note else self._banner_parts)
        if self.banner.text() != text:
            self.banner.setText(text)
        self._banner_row.show()

    def hide_banner(self) -> None:
        self._banner_row.hide()

    def show_result_log(self) -> None:
        """Where results go, what is waiting, the failure policy and the retention limits (set in settings.json)."""
        QMessageBox.information(self, "Result log", self.status.log_details())

    def about_text(self) -> str:
        """Version, and where the log, the settings and the results are: what support asks first."""
        from station import __version__
        from station.core.logs import current_log_file, log_path
        from station.core.settings import config_dir, data_dir

        logged = current_log_file()
        return (f"Inspection station {__version__}\n\nlog file: {logged or log_path()}"
                f"{'' if logged else ' (not written by this window: see the banner)'}\n"
                f"settings: {config_dir()}\ndata (result log, archive): {data_dir()}\n\n"
                "Help > Station doctor lists cameras, GPU, versions, folders, database and free disk space.")

    def show_about(self) -> None:
        QMessageBox.about(self, "About the inspection station", self.about_text())

    def show_doctor(self) -> None:
        """The doctor's report, gathered in a worker thread (it opens cameras and loads torch), then shown."""
        from station.ui.doctor_dialog import DoctorDialog

        dialog = DoctorDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self._doctor = dialog

    def show_spc(self) -> None:
        if self.spc_view is None:
            self.spc_view = SpcView(self.spc, parent=self)
            self.spc_view.setWindowFlag(Qt.WindowType.Window)
            self.spc_view.refresh()  # its title names what a cell is on this part
            self.spc_view.resize(900, 420)
        self.spc_view.show()
        self.spc_view.raise_()

    def make_report(self) -> None:
        """The shift report of a period, from the result log, as PDF or HTML (Line > Shift report)."""
        store = self.service.results
        if store is None:
            QMessageBox.warning(self, "Shift report", "No result log is open: there is nothing to report.")
            return
        dialog = ReportDialog(store.url, self)
        dialog.exec()
        dialog.deleteLater()

    # -- sources ----------------------------------------------------------------------------------
    def open_source(self, spec: str) -> bool:
        try:
            source = make_source(spec, fps=self.settings.demo_fps)
        except StationError as exc:
            self.show_banner(f"Cannot use source {spec!r}: {exc}")
            return False
        was_stopped = self.service.run_state == "stopped"
        self.service.set_source(source)
        self.settings.source = spec
        if was_stopped:
            self.service.start()
        self._on_run_state(self.service.run_state)
        return True

    def use_demo(self) -> None:
        self.open_source("demo")

    def choose_source(self) -> None:
        picker = SourcePicker(self.settings.source, parent=self)
        if picker.exec():
            self.open_source(picker.spec)
        picker.deleteLater()

    def choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.mp4 *.avi *.mkv *.mov *.m4v);;All (*)")
        if path:
            self.open_source(path)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Image folder")
        if path:
            self.open_source(path)

    # -- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        stopped = self.service.shutdown()
        if stopped:  # the worker threads are gone: Python may collect on its own again
            self._collector.stop()
        else:
            QMessageBox.warning(self, "Inspection station", "The line's threads did not stop in time; they are "
                                "left to the operating system.")
        if self.service.logging_close_message:  # results that could not be saved: the result log's problem
            QMessageBox.warning(self, "Inspection station – result log", self.service.logging_close_message)
        if self.spc_view is not None:
            self.spc_view.shutdown()
        self.settings.overlay_visible = self.live_view.overlay_box.isChecked()
        self.settings.overlay_opacity = self.live_view.opacity.value() / 100
        if self._save:
            try:
                save_settings(self.settings)
            except OSError as exc:
                print(f"station: settings not saved: {exc}")
        super().closeEvent(event)
