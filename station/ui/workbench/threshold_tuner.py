"""The threshold tuner: score a validation set once (worker thread), then move the OK / REVIEW / NG
thresholds on the score histograms and see at once the escape rate (NG passed as OK) with its 95%
upper bound, the false-reject rate and the review rate; a target escape rate places the review
threshold; the result is published as a new recipe version.

Dragging recomputes through `ScoredSet.rates` (numpy on cached scores), throttled by a SignalProxy,
so the window never waits on the model.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from station.core.dataset import is_mvtec, load_dataset
from station.core.errors import StationError
from station.core.recipe import Recipe
from station.core.workbench.errors import WorkbenchError
from station.core.workbench.tuner import ScoredSet, score_dataset, with_thresholds
from station.ui.workbench.jobs import Job
from station.ui.workbench.plots import plot_widget, release_plots
from station.ui.workbench.workbench import Workbench

CLASS_COLOURS = ["#2ecc71", "#e74c3c", "#f39c12", "#9b59b6", "#3498db", "#e67e22", "#1abc9c", "#fd79a8"]
REVIEW_COLOUR, NG_COLOUR = "#f1c40f", "#ff5e57"


def log_ticks(lo: float, hi: float) -> list[list[tuple[float, str]]]:
    """Ticks at 1, 2, 5 x 10^k for an axis in log10 units, labelled with the scores themselves."""
    major, minor = [], []
    for k in range(math.floor(lo) - 1, math.ceil(hi) + 1):
        for m in (1, 2, 5):
            x = k + math.log10(m)
            if lo - 0.3 <= x <= hi + 0.3:
                (major if m == 1 else minor).append((x, f"{m * 10.0 ** k:g}"))
    return [major, minor]


def _pct(x: float | None, digits: int = 2) -> str:
    return "\u2013" if x is None else f"{100 * x:.{digits}f} %"


def score_job(recipe: Recipe, data, progress, should_stop, emit):
    """Worker thread: inspect every validation image once."""
    return recipe, score_dataset(recipe, data, progress=progress, should_stop=should_stop)


class ThresholdTuner(QWidget):
    scored = Signal()
    rates_changed = Signal(dict)

    def __init__(self, workbench: Workbench, validation: str | Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self.job: Job | None = None
        self.scores: ScoredSet | None = None
        self.scored_recipe: Recipe | None = None
        self.log_x = False
        self.current_rates: dict = {}
        self._syncing = False

        # -- what is scored ------------------------------------------------------------------------
        self.recipe_label = QLabel(self)
        self.recipe_label.setWordWrap(True)
        self.folder = QLineEdit(str(validation or self._default_validation() or ""), self)
        self.folder.setPlaceholderText("validation set: a folder with good/ and one folder per defect class")
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._browse)
        self.score_button = QPushButton("Score validation set", self)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setFormat("not scored yet")
        self.bar.setTextVisible(True)

        # -- plots ---------------------------------------------------------------------------------
        self.hist = plot_widget(self, "Score histogram per class (drag the lines)")
        self.hist.setLabel("left", "images")
        self.hist.setLabel("bottom", "score")
        self.hist.showGrid(x=True, y=True, alpha=0.2)
        self.hist_legend = self.hist.addLegend(offset=(-10, 10))
        self.ok_band = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(46, 204, 113, 28))
        self.review_band = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(241, 196, 15, 40))
        self.ng_band = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(255, 94, 87, 28))
        for band in (self.ok_band, self.review_band, self.ng_band):
            band.setZValue(-10)
            for line in band.lines:
                line.setPen(pg.mkPen(None))
            self.hist.addItem(band, ignoreBounds=True)
        self.review_line = pg.InfiniteLine(0, angle=90, movable=True, pen=pg.mkPen(REVIEW_COLOUR, width=2),
                                           hoverPen=pg.mkPen(REVIEW_COLOUR, width=4),
                                           label="OK | REVIEW", labelOpts={"position": 0.93, "color": REVIEW_COLOUR})
        self.ng_line = pg.InfiniteLine(0, angle=90, movable=True, pen=pg.mkPen(NG_COLOUR, width=2),
                                       hoverPen=pg.mkPen(NG_COLOUR, width=4),
                                       label="REVIEW | NG", labelOpts={"position": 0.83, "color": NG_COLOUR})
        for line in (self.review_line, self.ng_line):
            line.setZValue(10)
            self.hist.addItem(line, ignoreBounds=True)
        self.roc = plot_widget(self, "ROC: defects caught vs good parts rejected")
        self.roc.setLabel("bottom", "false-reject rate (good parts not passed)")
        self.roc.setLabel("left", "defects caught (1 \u2212 escape rate)")
        self.roc.setXRange(0, 1)
        self.roc.setYRange(0, 1.02)
        self.roc.showGrid(x=True, y=True, alpha=0.2)
        self.roc_curve = self.roc.plot([], [], pen=pg.mkPen("#54a0ff", width=2))
        self.roc.plot([0, 1], [0, 1], pen=pg.mkPen("#666", style=Qt.PenStyle.DashLine))
        self.roc_point = self.roc.plot([], [], pen=None, symbol="o", symbolSize=11, symbolBrush=REVIEW_COLOUR)
        self.roc.setMaximumWidth(420)

        # -- thresholds and figures ----------------------------------------------------------------
        self.review_box = QDoubleSpinBox(self)
        self.ng_box = QDoubleSpinBox(self)
        for box in (self.review_box, self.ng_box):
            box.setDecimals(4)
            box.setRange(-1e9, 1e9)
            box.setKeyboardTracking(False)
        self.target = QDoubleSpinBox(self)
        self.target.setRange(0.0, 99.0)
        self.target.setDecimals(2)
        self.target.setValue(10.0)
        self.target.setSuffix(" %")
        self.on_upper = QCheckBox("on the 95 % upper bound (what can be promised)", self)
        self.on_upper.setToolTip("Checked: the Clopper-Pearson 95 % upper bound of the escape rate must meet the "
                                 "target. Unchecked: the escape rate observed on this validation set must.")
        self.on_upper.setChecked(True)
        self.place_button = QPushButton("Place review threshold", self)
        self.target_message = QLabel("", self)
        self.target_message.setWordWrap(True)
        self.target_message.setMinimumHeight(3 * self.target_message.fontMetrics().lineSpacing())
        self.target_message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.figures: dict[str, QLabel] = {}
        grid = QGridLayout()
        rows = [("escape", "Escape rate (defects passed as OK)"), ("escape_upper", "\u2026 95 % upper bound"),
                ("false_reject", "False-reject rate (good parts not passed)"), ("review", "Review rate (all parts)")]
        for i, (key, text) in enumerate(rows):
            grid.addWidget(QLabel(text, self), i, 0)
            value = QLabel("\u2013", self)
            value.setObjectName(f"figure-{key}")
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            value.setStyleSheet("font-size:15px; font-weight:600;")
            grid.addWidget(value, i, 1)
            self.figures[key] = value
        self.counts_label = QLabel("", self)
        self.counts_label.setWordWrap(True)
        self.note = QLineEdit(self)
        self.note.setPlaceholderText("why (goes into the version note and the audit log)")
        self.publish_button = QPushButton("Publish as new version", self)
        self.publish_button.setToolTip("Saves the scored recipe with these thresholds as a new version and "
                                       "switches the line to it (audited; roll back in Versions)")
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        thresholds = QGroupBox("Thresholds", self)
        tf = QFormLayout(thresholds)
        rule = QLabel("score < review: OK  \u2013  review \u2264 score < NG: REVIEW  \u2013  score \u2265 NG: NG", self)
        rule.setWordWrap(True)
        tf.addRow(rule)
        tf.addRow("Review threshold", self.review_box)
        tf.addRow("NG threshold", self.ng_box)
        target = QGroupBox("Target escape rate", self)
        tg = QVBoxLayout(target)
        row = QHBoxLayout()
        row.addWidget(self.target)
        row.addWidget(self.place_button)
        tg.addLayout(row)
        tg.addWidget(self.on_upper)
        tg.addWidget(self.target_message)
        figures = QGroupBox("At these thresholds", self)
        fg = QVBoxLayout(figures)
        fg.addLayout(grid)
        fg.addWidget(self.counts_label)
        side = QVBoxLayout()
        side.addWidget(thresholds)
        side.addWidget(target)
        side.addWidget(figures)
        side.addWidget(self.note)
        side.addWidget(self.publish_button)
        side.addWidget(self.status)
        side.addStretch(1)
        side_widget = QWidget(self)
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(420)

        top = QHBoxLayout()
        top.addWidget(QLabel("Validation set", self))
        top.addWidget(self.folder, 1)
        top.addWidget(browse)
        top.addWidget(self.score_button)
        plots = QVBoxLayout()
        plots.addWidget(self.hist, 3)
        bottom = QHBoxLayout()
        bottom.addWidget(self.roc, 2)
        plots.addLayout(bottom, 2)
        body = QHBoxLayout()
        body.addLayout(plots, 1)
        body.addWidget(side_widget)
        layout = QVBoxLayout(self)
        layout.addWidget(self.recipe_label)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addLayout(body, 1)
        bottom.addWidget(self._help(), 1)

        self.score_button.clicked.connect(self.score)
        self.place_button.clicked.connect(self.place_from_target)
        self.publish_button.clicked.connect(self.publish)
        self.review_box.valueChanged.connect(self._on_review_box)
        self.ng_box.valueChanged.connect(self._on_ng_box)
        # dragging: at most 20 recomputations a second (the figures follow the line while it moves)
        self._review_proxy = pg.SignalProxy(self.review_line.sigPositionChanged, rateLimit=20,
                                            slot=self._on_review_dragged)
        self._ng_proxy = pg.SignalProxy(self.ng_line.sigPositionChanged, rateLimit=20, slot=self._on_ng_dragged)
        self.review_line.sigPositionChangeFinished.connect(self._on_review_dragged)
        self.ng_line.sigPositionChangeFinished.connect(self._on_ng_dragged)
        workbench.candidate_changed.connect(self._describe_recipe)
        workbench.service.recipe_changed.connect(self._describe_recipe)
        workbench.role_changed.connect(self._on_role)
        self._describe_recipe()
        self._on_role(workbench.session.role.value)
        self._enable_controls(False)

    def _help(self) -> QLabel:
        label = QLabel("How to read this\n\u2022 Each class's scores are a histogram; good parts should sit left "
                       "of the yellow line, defects right of it.\n\u2022 A defect left of the yellow line is an "
                       "escape (passed as OK).\n\u2022 Between yellow and red: REVIEW (a person looks).\n"
                       "\u2022 The dot on the ROC curve is the current review threshold.\n\u2022 With few defect "
                       "images the 95 % upper bound stays high: capture more defects to promise less.", self)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignTop)
        label.setStyleSheet("color:#b8b8b8;")
        return label

    def _default_validation(self) -> Path | None:
        """The test split beside the running recipe's training images: an MVTec-family set's own root (its
        `test` or `test_public` split is what the tuner reads there), else the `test` folder beside `train`."""
        original = self.workbench.original_data_path()
        if original is None:
            return None
        if is_mvtec(original):
            return original
        return original.parent / "test" if (original.parent / "test").is_dir() else None

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Validation set", self.folder.text())
        if path:
            self.folder.setText(path)

    def _describe_recipe(self) -> None:
        recipe = self.workbench.tuning_recipe
        if recipe is None:
            self.recipe_label.setText("No recipe to tune.")
            return
        which = "the trained candidate (not published)" if recipe is self.workbench.candidate else "the recipe the line runs"
        stale = ""
        if self.scored_recipe is not None and self.scored_recipe is not recipe:
            stale = "  \u2013  the scores below are of another recipe: score again"
        self.recipe_label.setText(f"Tuning {which}: {recipe.name}, engine {recipe.doc.engine.name}, "
                                  f"thresholds {recipe.thresholds[0]:.4g} / {recipe.thresholds[1]:.4g}{stale}")

    def _on_role(self, role: str) -> None:
        engineer = role == "engineer"
        self.publish_button.setEnabled(engineer and self.scores is not None)
        self.score_button.setEnabled(self.job is None)

    def _enable_controls(self, on: bool) -> None:
        for w in (self.review_box, self.ng_box, self.place_button, self.target, self.on_upper):
            w.setEnabled(on)
        self.review_line.setMovable(on)
        self.ng_line.setMovable(on)
        self._on_role(self.workbench.session.role.value)

    # -- scoring (worker) -----------------------------------------------------------------------
    def score(self, dataset=None) -> bool:
        """Score the validation set (a Dataset, or the folder in the box) with the recipe being tuned."""
        recipe = self.workbench.tuning_recipe
        if self.job is not None or recipe is None:
            return False
        try:
            data = dataset if dataset is not None else load_dataset(self.folder.text().strip(), "test")
        except StationError as exc:
            self.status.setText(f"Cannot use the validation set: {exc}")
            return False
        self.job = Job(partial(score_job, recipe, data), name="station-scoring", parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.done.connect(self._on_scored)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        self.score_button.setEnabled(False)
        self.bar.setFormat(f"scoring {len(data.samples)} images\u2026 (the line keeps running)")
        self.job.start()
        return True

    def _on_progress(self, message: str, fraction: float) -> None:
        self.bar.setValue(int(1000 * fraction))

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Scoring failed: {message}")
        self.bar.setFormat("failed")

    def _on_finished(self) -> None:
        self.job.deleteLater()
        self.job = None
        self._on_role(self.workbench.session.role.value)

    def _on_scored(self, out) -> None:
        recipe, scores = out
        self.scored_recipe, self.scores = recipe, scores
        self.bar.setValue(1000)
        self.bar.setFormat(f"scored {len(scores)} images: " + ", ".join(
            f"{c} {sum(1 for lab in scores.labels if lab == c)}" for c in scores.classes))
        self._draw_histograms()
        self._draw_roc()
        self._enable_controls(True)
        self.set_thresholds(*recipe.thresholds)
        self._describe_recipe()
        self.scored.emit()

    # -- drawing --------------------------------------------------------------------------------
    def _x(self, score: float) -> float:
        """Plot coordinate of a score (log10 when the histogram is log-spaced)."""
        return math.log10(max(score, 1e-12)) if self.log_x else score

    def _score(self, x: float) -> float:
        return 10 ** x if self.log_x else x

    def _draw_histograms(self) -> None:
        h = self.scores.histograms()
        self.log_x = h["log"]
        for item in list(self.hist.listDataItems()):
            self.hist.removeItem(item)
        self.hist_legend.clear()
        edges = np.log10(h["edges"]) if self.log_x else h["edges"]
        for i, (label, counts) in enumerate(h["counts"].items()):
            colour = CLASS_COLOURS[0] if label == self.scores.ok_class else CLASS_COLOURS[1 + (i - 1) % 7]
            extra = f" (+{h['not_scored'][label]} no part)" if h["not_scored"].get(label) else ""
            self.hist.plot(edges, counts, stepMode="center", fillLevel=0, fillOutline=True,
                           brush=pg.mkBrush(colour + "40"), pen=pg.mkPen(colour, width=2),
                           name=f"{label}: {int(counts.sum())}{extra}")
        # RT distances span decades: bins and lines live in log10 units, the axis shows the scores themselves
        axis = self.hist.getPlotItem().getAxis("bottom")
        axis.setTicks(log_ticks(float(edges[0]), float(edges[-1])) if self.log_x else None)
        self.hist.setLabel("bottom", "score (log scale)" if self.log_x else "score")
        lo, hi = float(edges[0]), float(edges[-1])
        pad = 0.05 * (hi - lo or 1.0)
        self.hist.setXRange(lo - pad, hi + pad)
        self._x_span = (lo - 10 * pad, hi + 10 * pad)

    def _draw_roc(self) -> None:
        try:
            roc = self.scores.roc()
        except WorkbenchError as exc:
            self.roc_curve.setData([], [])
            self.roc.setTitle(str(exc))
            return
        self._roc = roc
        self.roc_curve.setData(roc["fpr"], roc["tpr"])

    def _draw_bands(self, review: float, ng: float) -> None:
        lo, hi = getattr(self, "_x_span", (self._x(review) - 1, self._x(ng) + 1))
        r, n = self._x(review), self._x(ng)
        self.ok_band.setRegion((min(lo, r), r))
        self.review_band.setRegion((r, n))
        self.ng_band.setRegion((n, max(hi, n)))

    # -- thresholds -----------------------------------------------------------------------------
    @property
    def thresholds(self) -> tuple[float, float]:
        return self.review_box.value(), self.ng_box.value()

    def set_thresholds(self, review: float, ng: float) -> dict:
        """Move both thresholds (review <= NG) and recompute the figures; returns them."""
        ng = max(ng, review)
        self._syncing = True
        try:
            self.review_box.setValue(review)
            self.ng_box.setValue(ng)
            self.review_line.setValue(self._x(review))
            self.ng_line.setValue(self._x(ng))
        finally:
            self._syncing = False
        # the spin boxes round to their decimals: keep the exact values the engineer (or the target) chose
        self._exact = (float(review), float(ng))
        return self._recompute()

    def _current_exact(self) -> tuple[float, float]:
        exact = getattr(self, "_exact", None)
        shown = self.thresholds
        if exact is not None and all(abs(a - b) <= 0.5 * 10 ** -self.review_box.decimals() for a, b in zip(exact, shown)):
            return exact
        return shown

    def _on_review_box(self, value: float) -> None:
        if not self._syncing and self.scores is not None:
            self.set_thresholds(value, max(value, self.ng_box.value()))

    def _on_ng_box(self, value: float) -> None:
        if not self._syncing and self.scores is not None:
            self.set_thresholds(min(value, self.review_box.value()), value)

    def _on_review_dragged(self, *_args) -> None:
        if not self._syncing and self.scores is not None:
            review = self._score(self.review_line.value())
            self.set_thresholds(review, max(review, self._current_exact()[1]))

    def _on_ng_dragged(self, *_args) -> None:
        if not self._syncing and self.scores is not None:
            ng = self._score(self.ng_line.value())
            self.set_thresholds(min(self._current_exact()[0], ng), ng)

    def _recompute(self) -> dict:
        if self.scores is None:
            return {}
        review, ng = self._current_exact()
        rates = self.scores.rates(review, ng)
        self.current_rates = {**rates, "review": review, "ng": ng}
        self.figures["escape"].setText(_pct(rates["escape_rate"]))
        self.figures["escape_upper"].setText(_pct(rates["escape_rate_upper"]))
        self.figures["false_reject"].setText(_pct(rates["false_reject_rate"]))
        self.figures["review"].setText(_pct(rates["review_rate"]))
        colour = "#ff6b6b" if rates["n_escapes"] else "#2ecc71"
        self.figures["escape"].setStyleSheet(f"font-size:15px; font-weight:600; color:{colour};")
        self.counts_label.setText(f"{rates['n_escapes']} of {rates['n_defect']} defect images pass as OK; "
                                  f"{rates['n_false_rejects']} of {rates['n_good']} good images are not passed.")
        self._draw_bands(review, ng)
        roc = getattr(self, "_roc", None)
        if roc is not None and rates["false_reject_rate"] is not None and rates["escape_rate"] is not None:
            self.roc_point.setData([rates["false_reject_rate"]], [1 - rates["escape_rate"]])
        self.rates_changed.emit(self.current_rates)
        return self.current_rates

    def place_from_target(self) -> dict | None:
        """Put the review threshold where the target escape rate is met (on the bound or as observed)."""
        if self.scores is None:
            return None
        try:
            out = self.scores.review_for_escape_rate(self.target.value() / 100,
                                                     on="upper" if self.on_upper.isChecked() else "point")
        except WorkbenchError as exc:
            self.target_message.setText(str(exc))
            return None
        message = out["message"]
        if out["ng"] > out["review"] or out["review"] >= self.scored_recipe.thresholds[1]:
            message += f"; NG threshold {out['ng']:.6g}"
            if out["review"] >= self.scored_recipe.thresholds[1]:
                message += " (raised to the review threshold: no REVIEW band; lower it for one)"
        self.target_message.setText(message)
        self.target_message.setStyleSheet("" if out["met"] else "color:#ff9f43;")
        self.set_thresholds(out["review"], max(out["review"], out["ng"]))
        return out

    # -- publishing -----------------------------------------------------------------------------
    def publish(self) -> bool:
        if self.scores is None or self.scored_recipe is None:
            self.status.setText("Score a validation set first.")
            return False
        review, ng = self._current_exact()
        note = self.note.text().strip() or f"thresholds {review:.6g} / {ng:.6g} from the tuner"
        try:
            recipe = with_thresholds(self.scored_recipe, review, ng, note=note)
            summary = self.scores.summary(review, ng)
            metrics = {k: summary.get(k) for k in ("escape_rate", "escape_rate_upper", "false_reject_rate",
                                                   "review_rate", "n_defect", "n_good", "n_escapes",
                                                   "n_false_rejects", "accuracy", "auroc")}
            metrics["validation_set"] = str(self.scores.paths[0].parents[1]) if self.scores.paths else ""
            info = self.workbench.publish(recipe, note=note, metrics=metrics)
        except StationError as exc:
            self.status.setText(f"Not published: {exc}")
            self.workbench.report("error", f"not published: {exc}")
            return False
        self.status.setText(f"Published {info.name}; the line runs it now.")
        if self.workbench.candidate is self.scored_recipe:
            self.workbench.set_candidate(None)
        self.scored_recipe = recipe
        return True

    def shutdown(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job.wait()
        release_plots(self.hist, self.roc)
