"""Training from the GUI: refit RT / RT-attention (seconds) or train the ViT in a worker thread, with a
progress bar, live loss and accuracy curves, Cancel, and the attention-over-training strip; a free-form product
(whole frame or pose) is retrained as `station train` trains it (station.core.freeform_plan). The live
line keeps running; the result becomes the workbench's candidate recipe (not yet published)."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from station.core.engines import engine_class, engine_names
from station.core.engines.base import TrainingEvent
from station.core.teach import Setup, latest_setup
from station.core.freeform_plan import AUTO, fit_free_form
from station.core.registration import FREE_FORM_REGIONS
from station.core.training import train_recipe
from station.core.workbench.errors import WorkbenchError
from station.ui.image_canvas import to_qimage
from station.ui.workbench.jobs import Job
from station.ui.workbench.plots import plot_widget, release_plots
from station.ui.workbench.workbench import Workbench

STRIP_HEIGHT = 200
AUTO_SUMMARY = ("auto: measured on these images (a free-form product: the engine and crop station train would "
                "choose, the captured defects counting in the choice; a product with cells: RT)")
STRIP_CAPTION = "Attention over training (ViT): where the model looks on one validation defect image"


def capabilities(name: str):
    """What an engine declares it can do (station/core/engines/base.py): the view asks, never names engines."""
    return engine_class(name).capabilities


def strip_image(maps: list[tuple[int, np.ndarray]], scale: int = 8, max_tiles: int = 12) -> np.ndarray | None:
    """Attention maps (epoch, (rows, cols)) side by side as an RGB strip, one colour-mapped tile each."""
    if not maps:
        return None
    if len(maps) > max_tiles:
        pick = np.unique(np.linspace(0, len(maps) - 1, max_tiles).round().astype(int))
        maps = [maps[i] for i in pick]
    tiles = []
    for epoch, m in maps:
        m = np.asarray(m, dtype=np.float32)
        m = (m - m.min()) / (np.ptp(m) or 1.0)
        tile = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        tile = cv2.resize(tile, (m.shape[1] * scale, m.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        tile = cv2.copyMakeBorder(tile, 16, 2, 2, 2, cv2.BORDER_CONSTANT, value=(32, 32, 32))
        cv2.putText(tile, f"ep {epoch}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (230, 230, 230), 1, cv2.LINE_AA)
        tiles.append(cv2.cvtColor(tile, cv2.COLOR_BGR2RGB))
    return np.ascontiguousarray(np.hstack(tiles))


def fit_candidate(workbench: Workbench, engine: str, include_original: bool, grid, name: str, config: dict | None,
                  train_dir: Path, progress, should_stop, emit, region_kind: str = "pattern", running=None):
    """The training job (worker thread; touches no widget): read the data, fit, hand curves and maps out."""
    data = workbench.training_data(include_original)
    state = Path(train_dir) / "state.json"
    seen = [0.0]

    def on_epoch(event: TrainingEvent) -> None:
        """An engine that trains by epochs reports each one (station/core/engines/base.py)."""
        emit({"epoch": event.epoch, **{k: float(event.metrics[k]) for k in ("loss", "acc", "val_acc")
                                        if k in event.metrics}})
        try:
            mtime = state.stat().st_mtime
            if mtime != seen[0]:
                seen[0] = mtime
                maps = json.loads(state.read_text()).get("probe_maps", [])
                emit({"maps": [(int(e), np.array(m, dtype=np.float32)) for e, m in maps]})
        except (OSError, ValueError):
            pass  # the next checkpoint brings the strip

    def relay(message: str, fraction: float) -> None:
        progress(message, fraction)  # raises JobCancelled once Cancel was pressed

    relay.epoch_event = on_epoch

    if should_stop():
        return None
    provenance = {"trained_with": "workbench", "data_counts": data.counts()}
    if region_kind in FREE_FORM_REGIONS:  # a free-form product stays one: whole frame or pose, as station train
        recipe, stats = fit_free_form(data, engine, name, config, relay, provenance, running)
    else:
        # registration as taught: the newest setup of the Teach dialog, else the running recipe's kind (a blob
        # recipe stays one; a pattern recipe gets its setup proposed again from these images, with its grid)
        taught = latest_setup(workbench.root / "setups")
        setup = Setup.load(taught) if taught is not None else None
        region_mode = "blob" if setup is None and region_kind == "blob" else "pattern"
        recipe, stats = train_recipe(data, "rt" if engine == AUTO else engine, grid, name, engine_config=config,
                                     progress=relay, setup=setup, region_mode=region_mode,
                                     provenance={**provenance, **({"setup_folder": str(taught)} if taught else {})})
    strip = Path(train_dir) / "attention_strip.png"
    return recipe, stats, str(strip) if strip.is_file() else ""


def engine_to_retrain(recipe) -> str:
    """The engine the training view starts from for the running recipe: its own, but for a free-form product
    AUTO, measured again on the new images as station train does; a joined one stays joined (its parts are
    measured again)."""
    name = recipe.doc.engine.name
    return AUTO if recipe.region.mode in FREE_FORM_REGIONS and name != "joined" else name


class TrainingView(QWidget):
    trained = Signal(object)  # the new candidate Recipe

    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.job: Job | None = None
        self.history: list[dict[str, float]] = []
        self.probe_maps: list[tuple[int, np.ndarray]] = []
        self.last_stats: dict | None = None
        self.last_error = ""

        self.engine = QComboBox(self)
        self.engine.addItem(AUTO_SUMMARY, AUTO)
        for name in engine_names():
            self.engine.addItem(capabilities(name).summary or name, name)
        recipe = workbench.service.recipe
        if recipe is not None:
            self.engine.setCurrentIndex(max(0, self.engine.findData(engine_to_retrain(recipe))))
        self.include_original = QCheckBox("Also train on the images the running recipe was trained on", self)
        self.include_original.setChecked(True)
        self.epochs = QSpinBox(self)
        self.epochs.setRange(0, 1000)
        self.epochs.setSpecialValueText("as the data set needs (ViT)")  # 0: the schedule follows the data
        self.epochs.setValue(0)
        self.epochs.setSuffix(" epochs (ViT)")
        self.data_label = QLabel(self)
        self.data_label.setWordWrap(True)
        self.start_button = QPushButton("Train", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setFormat("idle")
        self.bar.setTextVisible(True)
        self.result = QLabel("No training run yet.", self)
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        pg.setConfigOptions(antialias=True)
        self.loss_plot = plot_widget(self, "Training loss per epoch (all loss terms)")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#ff9f43", width=2), name="training loss")
        self.acc_plot = plot_widget(self, "Accuracy per epoch")
        self.acc_plot.setLabel("bottom", "epoch")
        self.acc_plot.setYRange(0, 1.02)
        self.acc_plot.addLegend(offset=(10, 10))  # accuracy starts low: the top left stays free
        self.acc_curve = self.acc_plot.plot([], [], pen=pg.mkPen("#54a0ff", width=2), name="training")
        self.val_curve = self.acc_plot.plot([], [], pen=pg.mkPen("#1dd1a1", width=2), name="validation")
        for plot in (self.loss_plot, self.acc_plot):
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setMinimumHeight(160)
        self.strip_caption = QLabel(STRIP_CAPTION, self)
        self.strip = QLabel(self)
        self.strip.setMinimumHeight(60)
        self.strip.setMaximumHeight(STRIP_HEIGHT + 4)
        self.strip.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

        form = QFormLayout()
        form.addRow("Engine", self.engine)
        form.addRow("", self.include_original)
        form.addRow("Training length", self.epochs)
        form.addRow("Data", self.data_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.bar, 1)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.acc_plot)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        layout.addLayout(plots, 1)
        layout.addWidget(self.strip_caption)
        layout.addWidget(self.strip)

        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.engine.currentIndexChanged.connect(self._on_engine)
        self.include_original.toggled.connect(self._describe_data)
        workbench.dataset_changed.connect(self._describe_data)
        workbench.role_changed.connect(self._on_role)
        self._on_engine()
        self._describe_data()
        self._on_role(workbench.session.role.value)

    # -- form -----------------------------------------------------------------------------------
    def _on_role(self, role: str) -> None:
        self.start_button.setEnabled(role == "engineer" and self.job is None)

    def _on_engine(self) -> None:
        engine = self.engine.currentData()
        trainable = engine != AUTO and capabilities(engine).trainable
        self.epochs.setEnabled(trainable)
        for w in (self.loss_plot, self.acc_plot, self.strip_caption, self.strip):
            w.setVisible(trainable)

    def _describe_data(self) -> None:
        counts = self.workbench.dataset.counts()
        text = f"captured: {', '.join(f'{k} {v}' for k, v in counts.items()) or 'none yet'}  ({self.workbench.dataset.root})"
        original = self.workbench.original_data_path()
        if self.include_original.isChecked():
            text += f"\n+ original training set: {original}" if original else "\n(the original training set is not on this PC)"
        self.data_label.setText(text)

    # -- running --------------------------------------------------------------------------------
    def start(self) -> bool:
        if self.job is not None:
            return False
        try:
            self.workbench.require_engineer("training")
            recipe = self.workbench.service.recipe
            if recipe is None:
                raise WorkbenchError("no recipe is loaded: its grid is what a new recipe is trained on")
        except WorkbenchError as exc:
            self._fail(str(exc))
            return False
        engine = self.engine.currentData()
        self.history, self.probe_maps, self.last_stats, self.last_error = [], [], None, ""
        self._draw_curves()
        self.strip.clear()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        train_dir = self.workbench.root / "training" / f"{engine}-{stamp}"
        config = None
        if engine != AUTO and capabilities(engine).trainable:  # a training run: its folder, and no console progress bar
            config = {"train_dir": str(train_dir),
                      "train": {"progress_bar": False, "threads": 1, "checkpoint_every": 2}}
            if self.epochs.value():
                config["epochs"] = self.epochs.value()
        fit = partial(fit_candidate, self.workbench, engine, self.include_original.isChecked(), recipe.grid,
                      recipe.name, config, train_dir, region_kind=recipe.region.mode, running=recipe)
        self.job = Job(fit, name="station-training", parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.data.connect(self._on_data)
        self.job.done.connect(self._on_done)
        self.job.failed.connect(self._fail)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.bar.setFormat(f"{engine}: reading and registering the images\u2026")
        self.result.setText("Training\u2026 the line keeps running.")
        self.job.start()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.bar.setFormat("cancelling after this epoch\u2026")

    def _on_progress(self, message: str, fraction: float) -> None:
        self.bar.setValue(int(1000 * max(0.0, min(1.0, fraction))))
        self.bar.setFormat(message[:120])

    def _on_data(self, data: dict) -> None:
        if "maps" in data:
            self.probe_maps = data["maps"]
            epochs = ", ".join(str(e) for e, _ in self.probe_maps)
            self.strip_caption.setText(f"{STRIP_CAPTION}: checkpoints at epochs {epochs}")
            strip = strip_image(self.probe_maps)
            if strip is not None:
                self._set_strip(QPixmap.fromImage(to_qimage(strip)))
        else:
            self.history.append(data)
            self._draw_curves()

    def _set_strip(self, pixmap: QPixmap) -> None:
        if pixmap.height() > STRIP_HEIGHT:  # the trainer's strip is full size: show it whole, not cropped
            pixmap = pixmap.scaledToHeight(STRIP_HEIGHT, Qt.TransformationMode.SmoothTransformation)
        self.strip.setPixmap(pixmap)

    def _draw_curves(self) -> None:
        e = [h["epoch"] for h in self.history]
        self.loss_curve.setData(e, [h["loss"] for h in self.history])
        self.acc_curve.setData(e, [h["acc"] for h in self.history])
        self.val_curve.setData(e, [h["val_acc"] for h in self.history])

    def _on_done(self, out) -> None:
        if out is None:
            return
        recipe, stats, strip = out
        self.last_stats = stats
        if strip:
            self._set_strip(QPixmap(strip))
        thresholds = ", ".join(f"{v:.4g}" for v in recipe.thresholds)
        n = ", ".join(f"{k} {v}" for k, v in stats.get("n_train", {}).items())
        what = stats.get("plan") or recipe.doc.engine.name
        self.result.setText(f"Candidate ready: {what}; trained on {n}; fitted in {stats.get('fit_seconds')} s; "
                            f"review / NG thresholds {thresholds}. Tune it in the Threshold tuner, try it in "
                            "Shadow mode, then publish. Nothing has changed on the line yet."
                            + "".join(f"\nWarning: {line}" for line in stats.get("warnings", [])))
        self.bar.setValue(1000)
        self.bar.setFormat("done")
        self.workbench.set_candidate(recipe, stats)
        self.trained.emit(recipe)

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.result.setText(f"Training failed: {message}")
        self.bar.setFormat("failed")
        self.workbench.report("error", f"training failed: {message}")

    def _on_cancelled(self) -> None:
        self.result.setText("Training cancelled; the candidate and the line are unchanged.")
        self.bar.setFormat("cancelled")

    def _on_finished(self) -> None:
        self.job.deleteLater()
        self.job = None
        self.cancel_button.setEnabled(False)
        self._on_role(self.workbench.session.role.value)

    def shutdown(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job.wait()
        release_plots(self.loss_plot, self.acc_plot)
