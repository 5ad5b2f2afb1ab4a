"""Teaching a product in the GUI: the station's proposal (region and grid) over the golden image, corrected
by dragging, checked on good images where registration puts the grid, and saved as a setup folder
(engineer mode only, audited) that `station train --setup` follows.

The proposal, the check and the save run in worker jobs (`teach_jobs`, run by `jobs.Job`); the GUI thread
only paints and keeps the engineer's edits. The dialog's parts are widgets of their own: the region editor
(`region_editor`, its drag geometry in `region_geometry`), the grid and region settings (`grid_form`,
`region_form`) and the check strip (`check_strip`).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QVBoxLayout, QWidget)

from station.core.errors import StationError
from station.core.grid import CellGrid
from station.core.imageio import read_image
from station.core.pattern import Roi
from station.core.teach import SETUP_FILE, Setup
from station.ui.workbench.check_strip import CheckStrip
from station.ui.workbench.engineer_mode_button import EngineerModeButton
from station.ui.workbench.grid_form import GridForm
from station.ui.workbench.jobs import Job
from station.ui.workbench.region_editor import EDIT_HELP, RegionEditor
from station.ui.workbench.region_form import RegionForm
from station.ui.workbench.teach_jobs import (PREVIEW_COUNT, CheckTile, Taught, check_job, previous_setup,
                                             propose_job, save_job)
from station.ui.workbench.workbench import Workbench

__all__ = ["TeachDialog", "RegionEditor"]

MIN_CELL_PX = 3.0  # a cell narrower than this in the golden frame holds no detail to inspect


class TeachDialog(QDialog):
    """Teach a product: the proposal from good images, corrected here, checked on good images and saved.

    `goods` is a list of RGB images, a folder of images or a dataset folder (its good class); `golden` an
    optional frame (the live one, or a file: `golden_name` says which) to teach on instead of the proposal's
    pick; `grid` (cols, rows) an optional grid for the proposal; `out_dir` where the setup is saved (else a
    new folder in the workbench's `setups/`). Saving needs engineer mode and writes an audit entry first.
    """

    proposed = Signal()
    checked = Signal()
    saved = Signal(str)  # the setup folder
    failed = Signal(str)

    def __init__(self, workbench: Workbench, goods=None, golden: np.ndarray | None = None,
                 grid: tuple[int, int] | None = None, out_dir: str | Path | None = None,
                 golden_name: str = "live frame", parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.setWindowTitle("Teach a product")
        self.setObjectName("teach-dialog")
        self.goods: list[np.ndarray] = []
        self.labelled: list[tuple[np.ndarray, tuple[int, int]]] = []
        self.proposal: Setup | None = None
        self.golden: np.ndarray | None = None
        self.golden_note = ""
        self.job: Job | None = None
        self.check_tiles: list[CheckTile] = []
        self.last_paths: dict[str, str] = {}
        self._golden_frame = golden
        self._golden_name = golden_name
        self._grid_hint = grid
        self._checked_setup: dict | None = None
        self._saving: tuple[Path, CellGrid] | None = None
        self._outcome: tuple = ()  # the signal (and its arguments) to emit once the running job's thread ended

        self.editor = RegionEditor(self)
        self.editor.set_placeholder("Choose a folder of good images to teach from.")
        self.notes = QLabel("", self)
        self.notes.setWordWrap(True)
        self.notes.setObjectName("teach-notes")
        # made in the order of the keyboard's focus chain
        source = self._source_box()
        self.grid_form = GridForm(self)
        self.region_form = RegionForm(self)
        line = self._line_box()
        self.strip = CheckStrip(self)
        # the parts' controls under the names the tests and the screenshot script use
        self.by_count, self.by_size, self.cols, self.rows, self.cell = (
            self.grid_form.by_count, self.grid_form.by_size, self.grid_form.cols, self.grid_form.rows,
            self.grid_form.cell)
        self.grid_info, self.propose_button = self.grid_form.info, self.grid_form.propose_button
        self.cx, self.cy, self.width_px, self.height_px, self.angle, self.lean = (
            self.region_form.cx, self.region_form.cy, self.region_form.width_px, self.region_form.height_px,
            self.region_form.angle, self.region_form.lean)
        self.check_button, self.strip_status = self.strip.check_button, self.strip.status
        self.tiles, self.captions = self.strip.tiles, self.strip.captions
        side = QVBoxLayout()
        for box in (source, self.grid_form, self.region_form, line):
            side.addWidget(box)
        side.addWidget(self.notes)
        side.addStretch(1)
        side_widget = QWidget(self)
        side_widget.setLayout(side)
        side_widget.setFixedWidth(420)
        self.message = QLabel("", self)
        self.message.setObjectName("teach-message")
        self.message.setWordWrap(True)
        help_label = QLabel(EDIT_HELP, self)
        help_label.setWordWrap(True)
        left = QVBoxLayout()
        left.addWidget(self.editor, 1)
        left.addWidget(help_label)
        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addWidget(side_widget)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self.strip)
        layout.addWidget(self.message)
        layout.addLayout(self._save_row(out_dir))
        for button in self.findChildren(QPushButton):  # Enter in a spin box must not press a button
            button.setAutoDefault(False)
        self.resize(1400, 940)

        self.editor.roi_changed.connect(self._on_editor_roi)
        self.editor.edit_finished.connect(self._on_edited)
        self.grid_form.changed.connect(self._on_grid)
        self.region_form.edited.connect(self._on_region_spin)
        self.propose_button.clicked.connect(self.propose)
        self.check_button.clicked.connect(self.check)
        self.save_button.clicked.connect(self.save)
        self.close_button.clicked.connect(self.reject)
        self.choose_button.clicked.connect(self._choose_folder)
        self.golden_button.clicked.connect(self._choose_golden)
        self.browse_button.clicked.connect(self._browse_out)
        workbench.role_changed.connect(self._on_role)
        self._refresh_buttons()
        self._clear_strip()
        if goods is not None:
            self.load(goods)
        else:
            self._say("info", "Choose a folder of good images (or a dataset folder with a 'good' class) to teach from.")

    # -- building -------------------------------------------------------------------------------
    def _source_box(self) -> QGroupBox:
        self.source_label = QLabel("no good images yet", self)
        self.source_label.setWordWrap(True)
        self.choose_button = QPushButton("Good images from a folder\u2026", self)
        self.golden_button = QPushButton("Golden image from a file\u2026", self)
        box = QGroupBox("Good images", self)
        layout = QVBoxLayout(box)
        layout.addWidget(self.source_label)
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.golden_button)
        layout.addLayout(row)
        return box

    def _line_box(self) -> QGroupBox:
        """How far a part may move on the line: what registration searches."""
        self.max_angle = QDoubleSpinBox(self)
        self.max_angle.setRange(0.0, 180.0)
        self.max_angle.setValue(15.0)
        self.max_angle.setSuffix("\u00b0")
        self.max_scale = QDoubleSpinBox(self)
        self.max_scale.setRange(0.0, 50.0)
        self.max_scale.setValue(10.0)
        self.max_scale.setSuffix(" %")
        box = QGroupBox("On the line, a part may", self)
        layout = QFormLayout(box)
        layout.addRow("turn by up to \u00b1", self.max_angle)
        layout.addRow("change scale by up to \u00b1", self.max_scale)
        return box

    def _save_row(self, out_dir: str | Path | None) -> QHBoxLayout:
        self.mode_button = EngineerModeButton(self.workbench, self)
        self.out_dir = QLineEdit(str(out_dir) if out_dir else str(self._default_out_dir()), self)
        self.browse_button = QPushButton("Browse\u2026", self)
        self.save_button = QPushButton("Save setup", self)
        self.close_button = QPushButton("Close", self)
        row = QHBoxLayout()
        row.addWidget(self.mode_button)
        row.addSpacing(12)
        row.addWidget(QLabel("Save to", self))
        row.addWidget(self.out_dir, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.save_button)
        row.addWidget(self.close_button)
        return row

    # -- state ----------------------------------------------------------------------------------
    def _default_out_dir(self) -> Path:
        return self.workbench.root / "setups" / f"setup-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def roi(self) -> Roi | None:
        return self.editor.roi

    def current_grid(self) -> CellGrid:
        """The grid as edited: counted (cell size from the region, as `propose_setup` sizes it) or square cells."""
        return self.grid_form.grid_for(self.editor.roi)

    def current_setup(self) -> Setup:
        """The setup as the engineer has it now; a StationError says what is wrong with it."""
        if self.golden is None or self.editor.roi is None:
            raise StationError("no proposal yet: choose good images and wait for the proposal")
        roi = self.editor.roi
        grid = self.current_grid()
        cw, ch = roi.w / grid.cols, roi.h / grid.rows
        if min(cw, ch) < MIN_CELL_PX:
            raise StationError(f"the region is too small for a {grid.cols}x{grid.rows} grid: cells of {cw:.1f} x "
                               f"{ch:.1f} px ({MIN_CELL_PX:.0f} px at least); make it larger or use fewer cells")
        w, h = self.golden.shape[1], self.golden.shape[0]
        if not (0 <= roi.cx < w and 0 <= roi.cy < h):
            raise StationError("the region's centre is outside the golden image: drag it onto the part")
        notes = tuple(self.proposal.notes if self.proposal else ()) + ((self.golden_note,) if self.golden_note else ())
        return Setup(self.golden, roi, grid, self.max_angle.value(), self.max_scale.value() / 100.0, notes)

    def _say(self, level: str, text: str) -> None:
        colour = "#8b1e1e" if level == "error" else "#1e4d2b"
        self.message.setStyleSheet(f"background:{colour}; color:white; padding:4px;")
        self.message.setText(text)

    # -- jobs -----------------------------------------------------------------------------------
    def _start(self, fn, name: str, done) -> None:
        self.job = Job(fn, name=name, parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.done.connect(done)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_job_finished)
        self._refresh_buttons()
        self.job.start()

    def _on_progress(self, message: str, fraction: float) -> None:
        self._say("info", message)

    def _on_failed(self, message: str) -> None:
        self._say("error", message)
        if self.golden is None:
            self.editor.set_placeholder(f"No proposal: {message}")
        self._outcome = (self.failed, message)

    def _on_job_finished(self) -> None:
        # the dialog's signals come once the job's thread has ended: the dialog is ready for the next step
        if self.job is not None:
            self.job.deleteLater()
            self.job = None
        self._refresh_buttons()
        outcome, self._outcome = self._outcome, ()
        if outcome:
            outcome[0].emit(*outcome[1:])

    def _refresh_buttons(self) -> None:
        idle, ready = self.job is None, self.golden is not None
        engineer = self.workbench.session.role.value == "engineer"
        self.choose_button.setEnabled(idle)
        self.golden_button.setEnabled(idle and bool(self.goods))
        self.propose_button.setEnabled(idle and bool(self.goods))
        self.check_button.setEnabled(idle and ready)
        self.save_button.setEnabled(idle and ready and engineer)
        self.save_button.setToolTip("" if engineer else "Saving a taught setup needs engineer mode (the PIN).")

    def _on_role(self, role: str) -> None:
        self._refresh_buttons()

    # -- proposal -------------------------------------------------------------------------------
    def load(self, source) -> bool:
        """Read good images (a list, a folder or a dataset folder) and propose; False if a job is running."""
        if self.job is not None:
            return False
        self.goods, self.golden, self.proposal = [], None, None
        self.editor.set_image(None)
        self.editor.set_roi(None)
        self.editor.set_placeholder("Computing the proposal\u2026")
        self._clear_strip()
        self._start(partial(propose_job, source, None, self._golden_frame, self._golden_name, self._grid_hint, None,
                            self.max_angle.value(), self.max_scale.value() / 100.0),
                    "station-teach-propose", self._on_proposed)
        return True

    def propose(self) -> bool:
        """Propose again on the loaded good images with the grid (or cell size) set here."""
        if self.job is not None or not self.goods:
            return False
        grid, cell_px = ((None, self.cell.value()) if self.by_size.isChecked()
                         else ((self.cols.value(), self.rows.value()), None))
        self._start(partial(propose_job, self.goods, self.labelled, self._golden_frame, self._golden_name, grid,
                            cell_px, self.max_angle.value(), self.max_scale.value() / 100.0),
                    "station-teach-propose", self._on_proposed)
        return True

    def use_golden(self, image: np.ndarray, name: str = "chosen image") -> bool:
        """Teach on `image` instead of the proposal's golden: the proposal is moved onto it."""
        self._golden_frame, self._golden_name = image, name
        return self.propose()

    def _on_proposed(self, taught: Taught | None) -> None:
        if taught is None:
            return
        setup = taught.setup
        self.goods, self.proposal, self.golden = taught.goods, setup, setup.golden
        self.labelled = taught.labelled
        self.golden_note = taught.golden_note
        self.source_label.setText(taught.source)
        self.editor.set_image(setup.golden)
        if self.by_count.isChecked():
            self.grid_form.show_counts(setup.grid.cols, setup.grid.rows)
        self.max_angle.setValue(setup.max_angle)
        self.max_scale.setValue(100.0 * setup.max_scale)
        self._set_roi(setup.roi)
        self.notes.setText("Proposal: " + "; ".join(list(setup.notes) + [taught.golden_note]) + ".")
        self._clear_strip()
        self._refresh_buttons()
        grid = self.current_grid()
        self._say("info", f"Proposed a {grid.cols}x{grid.rows} grid on {len(self.goods)} good images. Correct it by "
                          "dragging, check it on good images, then save.")
        self._outcome = (self.proposed,)

    # -- edits ----------------------------------------------------------------------------------
    def _set_roi(self, roi: Roi) -> None:
        self.editor.set_roi(roi)
        self.region_form.show_roi(roi)
        self._apply_grid()

    def _on_editor_roi(self, roi: Roi) -> None:
        self.region_form.show_roi(roi)
        if self.by_size.isChecked():
            self._apply_grid()
        else:
            self.grid_form.describe(self.editor.roi)

    def _on_edited(self) -> None:
        self.workbench.touch()
        self._mark_stale()

    def _on_region_spin(self) -> None:
        if self.editor.roi is None:
            return
        try:
            roi = self.region_form.roi_from(self.editor.roi)
        except StationError as exc:
            self._say("error", str(exc))
            return
        self.editor.set_roi(roi)
        self._apply_grid()
        self._on_edited()

    def _on_grid(self) -> None:
        self._apply_grid()
        self._mark_stale()

    def _apply_grid(self) -> None:
        """The grid as edited onto the editor (square cells follow the region's size)."""
        try:
            grid = self.current_grid()
        except StationError as exc:
            self.grid_info.setText(str(exc))
            return
        if self.by_size.isChecked():
            self.grid_form.show_counts(grid.cols, grid.rows)
        self.editor.set_grid(grid.cols, grid.rows)
        self.grid_form.describe(self.editor.roi)

    # -- check ----------------------------------------------------------------------------------
    def check(self) -> bool:
        """Learn the pattern as it is now and show where registration puts the grid on good images."""
        if self.job is not None:
            return False
        try:
            setup = self.current_setup()
        except StationError as exc:
            self._say("error", str(exc))
            return False
        self._checked_setup = setup.to_dict()
        self.strip.show_checking()
        self._start(partial(check_job, self.goods, setup), "station-teach-check", self._on_checked)
        return True

    def _on_checked(self, tiles: list[CheckTile] | None) -> None:
        if tiles is None:
            return
        self.check_tiles = tiles
        found = self.strip.show_tiles(tiles)
        self._say("info" if found == len(tiles) else "error",
                  f"Check: the part was found in {found} of {len(tiles)} good images.")
        self._outcome = (self.checked,)

    def _clear_strip(self) -> None:
        self.check_tiles, self._checked_setup = [], None
        self.strip.clear()

    def _mark_stale(self) -> None:
        if self._checked_setup is None:
            return
        try:
            now = self.current_setup().to_dict()
        except StationError:  # a region that is no setup now (too small for its grid): not what was checked
            now = None
        if now != self._checked_setup:
            self.strip.show_stale()

    # -- save -----------------------------------------------------------------------------------
    def save(self, folder: str | Path | None = None) -> bool:
        """Save the setup (engineer mode; the audit entry first). False, with the reason shown, if refused."""
        if self.job is not None:
            self._say("error", "wait for the running step to finish before saving")
            return False
        text = str(folder) if folder else self.out_dir.text().strip()
        folder = Path(text)
        try:
            self.workbench.require_engineer("saving a taught setup")
            if not text:
                raise StationError("choose a folder to save the setup in")
            setup = self.current_setup()
            if (folder / SETUP_FILE).exists() and not (folder / SETUP_FILE).is_file():
                raise StationError(f"{folder / SETUP_FILE} is not a file")
            old = previous_setup(folder)
            new = setup.to_dict()
            new.pop("notes", None)
            self.workbench.audit.record(self.workbench.session.actor, "teach_setup", f"taught setup {folder}", old,
                                        new, golden=self.golden_note, good_images=len(self.goods))
        except StationError as exc:
            self._say("error", str(exc))
            self.failed.emit(str(exc))
            return False
        self._saving = (folder, setup.grid)
        self._start(partial(save_job, setup, folder, self.goods[:PREVIEW_COUNT]), "station-teach-save",
                    self._on_saved)
        return True

    def _on_saved(self, paths: dict) -> None:
        folder, grid = self._saving
        self.last_paths = dict(paths)
        text = (f"saved the taught setup ({grid.cols}x{grid.rows} cells of {grid.cell_px} px) to {folder}; "
                f"train on it with: station train --setup {folder}")
        self._say("info", text[0].upper() + text[1:])
        self.workbench.report("info", text)
        self._outcome = (self.saved, str(folder))

    # -- file choosers (not reached by the tests) -----------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of good images, or a dataset folder")
        if folder:
            self.load(folder)

    def _choose_golden(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Golden image", "",
                                              "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)")
        if not path:
            return
        try:
            image = read_image(path)
        except StationError as exc:
            self._say("error", str(exc))
            return
        self.use_golden(image, f"image {Path(path).name}")

    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to save the setup in")
        if folder:
            self.out_dir.setText(folder)

    # -- closing --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop a running job and wait for its thread (closing, tests)."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait()

    def done(self, result: int) -> None:
        self.shutdown()
        super().done(result)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
