"""The RT-attention engine (DESIGN §2.2): RT/SOART metrics of every cell against the standard vector
of each mode (good and every defect class) are the cell tokens; attention of each cell over the
reference cells of all modes, with whitening by the unit-space covariances as the projections (no
backprop), gives each cell a class distribution; the most defective cell names the image's class.

With only good training images there is nothing to attend to: the engine then is the RT engine
(one good unit space, RT distance) and says so in its fit report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from station.core.engines.displacement import chroma
from station.core.engines.base import Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet
from station.core.engines.rt_attention.arrays import RecipeArrays
from station.core.engines.rt_attention.maths import ModeSpace, cell_kinship, spread_to_classes, whitener
from station.core.engines.rt_attention.shift import (CHROMA_TOKENS, CONFUSION_PRIOR, CONTRAST_TOKENS, ODDS_CLIP,
                                                    DisplacementHead)
from station.core.engines.rt_attention.tokens import CONTEXT, RTTokenHead
from station.core.engines.rt_engine import RTEngine
from station.core.engines.settings import RTAttentionSettings
from station.core.errors import EngineError
from station.core.engines.rt import METRIC_SETS, UnitSpace, cell_vectors, rt_metrics
from station.core.engines.calibration import good_ng_rate
from station.core.verdict import NG_PLACEMENTS, calibrate_thresholds

# the names other code imports from here, wherever they are defined now
__all__ = ["CHROMA_TOKENS", "CONFUSION_PRIOR", "CONTEXT", "CONTRAST_TOKENS", "MIN_CHROMA_SPREAD", "ODDS_CLIP",
           "OPTIONS", "ModeSpace", "RTAttentionEngine", "cell_kinship"]

OPTIONS = {
    "metrics": tuple(METRIC_SETS),
    "unit_spaces": ("several", "one"),  # standards of every mode, or the good standard alone
    # tokens against every standard, against the good one (anomaly type), or against the defect modes' only
    # (their whitening is pooled over cells, so a defect at a cell no reference was seen at compares fairly)
    "queries": ("all", "good", "modes"),
    "similarity": ("distance", "dot"),  # q.k - |k|^2/2 (a Gaussian kernel), or the plain q.k
    "context": ("cell", "column", "neighbours"),  # a token is the cell alone, with the cells above and below, or 3x3
    "edge": ("replicate", "zero"),  # context beyond the grid: the edge cell again, or the good mean (zero)
    "good_keys": ("cell", "all"),  # good reference cells of the query's own position, or of every position
    "score": ("distance", "attention"),  # the verdict's score: RT distance to good, or the attention's log-odds
    "localize": ("good", "all"),  # the cells' odds (where) from good-type queries, or from the configured ones
    "mode_cells": ("labelled", "evidence"),  # mode standards from the labelled cells, or where a defect shows most
    # a mode's standard at a cell: the kin-weighted mean of its defect cells ("mean"), or the cell's good
    # standard plus the kin-weighted mean residual (defect cell - its good standard), which carries a mode
    # seen in other rows over to a cell whose surroundings differ (the first row's pin tops over the table)
    "mode_standard": ("mean", "residual"),
    # where and how defective (the verdict score and the top cell): RT distance of sub-cell blocks of the
    # unshifted cell against a good unit space of blocks ("blocks": the local search of the tokens would
    # absorb a pushed pin's top moving down by a pixel or two); "both": the mean of that and the searched
    # whole cell's RT distance (a missing first-row pin shows the table, close to a pin top, in the blocks)
    "detect": ("both", "blocks", "tokens"),
    # the displacement head's kernel: shift_scale for every class, per class from its own spread, or
    # shift_pooled_bw times the defect modes' pooled within-class spread of each token dimension (the
    # dimensions after (dx, dy, r), the contrast and chroma changes, shift_contrast_bw times it; null: the same)
    "shift_bandwidth": ("fixed", "adaptive", "pooled"),
    # the displacement head's token: (dx, dy, r), or with the cell's contrast change and the brightness
    # change of its top and bottom halves against its good standard (`cell_contrast`), or also (dx, dy, r)
    # of the crop's warm-minus-cool channel against its good standard (`chroma`; off for grey images), or
    # ("contrast+best") the (dx, dy, r) of whichever of the two channels the cell matches better, with the
    # contrast changes: the chroma channel finds the first row's cream pins in front of the pale table, the
    # grey one the pins in front of the dark housing, where the chroma match is poor and misleads
    "shift_token": ("displacement", "contrast", "contrast+chroma", "contrast+best"),
    # a class's density of tokens: the kernel density over its reference tokens, or the mean of that and
    # a Gaussian (the mode's own unit space of tokens: their mean and covariance; good: the cell's), which
    # carries a mode over the gaps between its few references
    "shift_density": ("kernel", "kernel+gauss"),
    # how the RT-token head and the displacement head at the top cell are joined: a product (the RT head's
    # log-probabilities weighted by rt_head_weight), or each head read through its own cross-validated
    # confusion matrix (what the head says, given each true class), so a head counts where it has been
    # right: the RT metrics for a pin that is gone, the displacement for which way a pin moved (the
    # matrices come from the block detector's held-out top cells; with detect "tokens" the join is a product)
    "join": ("product", "confusion"),
    # the displacement search at the crop's border: over replicated edge pixels, or inside the crop only
    "shift_edge": ("replicate", "inside"),
    # where the NG threshold sits between the held-out good and defect scores: halfway between the highest
    # good and the lowest defect (log scale), or where the two are equally many of their class's standard
    # deviations away ("balanced", `balanced_ng` in station/core/verdict.py): the tails a new part comes from
    "ng_placement": NG_PLACEMENTS,
}
MAX_TOP_CELLS = 16  # the heads are read at up to this many of the most distant cells (each costs a head read)
MIN_CHROMA_SPREAD = 0.01  # below it (spread of the good images' mean chroma) the images count as grey


class RTAttentionEngine(RTTokenHead, DisplacementHead, RecipeArrays, Engine):
    name = "rt-attention"
    kind = "classifier"
    settings_model = RTAttentionSettings
    capabilities = Capabilities(names_classes=True, map_name="RT-attention cell score", summary="RT-attention: refit in seconds; names the defect from labelled cells")
    # what a recipe saved before a setting existed meant by it (a key absent from its config): the fourth
    # round's RT distance alone as the score and heads joined as a product, ..., the sixth round's one
    # bandwidth for every token dimension, NG halfway between the highest good and the lowest defect score,
    # the heads read at the most distant cell only
    saved_before = {"odds_weight": 0.0, "join": "product", "shift_bandwidth": "fixed", "shift_edge": "replicate",
                    "shift_token": "displacement", "shift_density": "kernel", "review_z": 0.0,
                    "shift_contrast_bw": None, "ng_placement": "midpoint", "top_cells": 1}

    scaled_px = {"search_px": 2, "shift_px": 5}  # measured at 24 px cells; other cells scale them

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        # the defaults are the best of the ablations in docs/rt-attention-ablations.md
        return {"metrics": "rt", "unit_spaces": "several", "queries": "all", "similarity": "distance",
                "temperature": 1.0, "balance": True, "context": "cell", "edge": "replicate", "good_keys": "cell",
                "parts": [1, 1], "score": "distance", "localize": "good", "mode_cells": "labelled",
                "mode_standard": "residual", "detect": "both", "detect_parts": [3, 3], "search_px": "auto", "ridge": 1e-3, "folds": 5,
                "shift_px": "auto", "shift_scale": [1.0, 0.3], "rt_head_weight": 0.1, "odds_weight": 0.5,
                "shift_bandwidth": "pooled", "join": "product", "shift_edge": "replicate",
                "shift_token": "contrast+best", "shift_density": "kernel+gauss", "shift_pooled_bw": 0.3,
                "shift_contrast_bw": 0.6,
                "review_z": 2.58, "ng_placement": "balanced", "top_cells": 2}

    def __init__(self, grid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        for key, allowed in OPTIONS.items():
            if self.config[key] not in allowed:
                raise EngineError(f"rt-attention: {key} must be one of {list(allowed)}, not {self.config[key]!r}")
        parts = self.config["parts"]
        whole = isinstance(parts, (list, tuple)) and len(parts) == 2 and all(isinstance(v, int) and v >= 1
                                                                             for v in parts)
        if not (whole and grid.cell_px % parts[0] == 0 and grid.cell_px % parts[1] == 0
                and (grid.cell_px // parts[0]) * (grid.cell_px // parts[1]) >= 2):
            raise EngineError(f"rt-attention: parts must be [rows, cols] dividing the {grid.cell_px} px cell into "
                              f"blocks of at least 2 px, not {parts!r}")
        self.n_parts = int(parts[0]) * int(parts[1])
        dp = self.config["detect_parts"]
        if self.config["detect"] != "tokens" and not (isinstance(dp, (list, tuple)) and len(dp) == 2 and all(isinstance(v, int) and v >= 1 for v in dp)
                and grid.cell_px % dp[0] == 0 and grid.cell_px % dp[1] == 0
                and (grid.cell_px // dp[0]) * (grid.cell_px // dp[1]) >= 2):
            raise EngineError(f"rt-attention: detect_parts must be [rows, cols] dividing the {grid.cell_px} px cell "
                              f"into blocks of at least 2 px, not {dp!r}")
        if self.config["queries"] == "modes" and self.config["unit_spaces"] != "several":
            raise EngineError("rt-attention: queries 'modes' needs unit_spaces 'several'")
        sp, ss, hw = self.config["shift_px"], self.config["shift_scale"], self.config["rt_head_weight"]
        if not (isinstance(sp, int) and not isinstance(sp, bool) and 0 <= sp <= 64):
            raise EngineError(f"rt-attention: shift_px must be a whole number of px from 0 (no displacement head) "
                              f"to 64, not {sp!r}")
        if not (isinstance(ss, (list, tuple)) and len(ss) == 2 and all(isinstance(v, (int, float)) and np.isfinite(v)
                                                                      and v > 0 for v in ss)):
            raise EngineError(f"rt-attention: shift_scale must be [px, correlation], two positive numbers, not {ss!r}")
        if not (isinstance(hw, (int, float)) and np.isfinite(hw) and hw >= 0):
            raise EngineError(f"rt-attention: rt_head_weight must be a number >= 0, not {hw!r}")
        self._number("odds_weight", 0, "a number from 0 (the RT distance alone) to 10")
        self._number("shift_pooled_bw", 0, "a number above 0 and at most 10", above=True)
        if self.config["shift_contrast_bw"] is not None:
            self._number("shift_contrast_bw", 0, "null (as shift_pooled_bw) or a number above 0 and at most 10",
                         above=True)
        k = self.config["top_cells"]
        if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_TOP_CELLS):
            raise EngineError(f"rt-attention: top_cells must be a whole number of cells from 1 to {MAX_TOP_CELLS}, "
                              f"not {k!r}")
        self._number("review_z", 0, "a number from 0 (REVIEW just above the highest held-out good score) to 10")
        tau = self.config["temperature"]
        if not isinstance(tau, (int, float)) or not np.isfinite(tau) or tau <= 0:
            raise EngineError(f"rt-attention: temperature must be a positive number, not {tau!r}")
        self._rt = RTEngine(grid, {k: self.config[k] for k in ("metrics", "search_px", "ridge", "folds")})
        self.classes: list[str] = []  # good first; empty until fitted
        self.modes: dict[str, ModeSpace] = {}
        self.keys: np.ndarray | None = None  # (n_keys, d) reference tokens
        self.key_labels: np.ndarray | None = None  # (n_keys,) class index
        self.good_parts: UnitSpace | None = None  # the good unit space over sub-cell blocks (= cells for 1x1)
        self.detect_space: UnitSpace | None = None  # good unit space over detect_parts blocks, unshifted cells
        self._good_whiten: np.ndarray | None = None
        self._stacked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see _prepare
        self._attn: dict[str, tuple] | None = None
        self._context_index: np.ndarray | None = None
        # the displacement head: tokens (dx, dy, r) of the labelled defect cells, their classes, and of
        # every cell of the good training images (n_good, n_cells, 3)
        self.shift_keys: np.ndarray | None = None
        self.shift_labels: np.ndarray | None = None
        self.shift_good: np.ndarray | None = None
        self.chroma_standard: np.ndarray | None = None  # (n_cells, cell_px**2) mean chroma of the good images
        self._shift_model: dict[str, Any] | None = None  # see _shift_density
        # join "confusion": (2, C, C) P(head says c' | true class c) of the RT head and the displacement head
        self.confusion: np.ndarray | None = None

    def _number(self, key: str, low: float, what: str, high: float = 10.0, above: bool = False) -> None:
        """Refuse a setting that is not a finite number from `low` (above it, with `above`) to `high`."""
        v = self.config[key]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                and (v > low if above else v >= low) and v <= high):
            raise EngineError(f"rt-attention: {key} must be {what}, not {v!r}")

    # -- state -----------------------------------------------------------------------------
    @property
    def fallback(self) -> bool:
        """True when fitted on good images alone: anomaly detection by RT distance."""
        return len(self.classes) < 2

    @property
    def good(self) -> UnitSpace:
        if self._rt.unit_space is None:
            raise EngineError("the rt-attention engine has not been fitted")
        return self._rt.unit_space

    @property
    def standards(self) -> list[str]:
        """Names of the standard vectors each cell is measured against."""
        several = self.config["unit_spaces"] == "several"
        return [self.classes[0] if self.classes else "good", *(list(self.modes) if several else [])]

    def _set_good(self, space: UnitSpace, parts: UnitSpace) -> None:
        self._rt.unit_space = space
        self.good_parts = parts
        self._good_whiten = whitener(parts.cov_inv)
        self._stacked = self._attn = None

    def _fit_good(self, scaled: np.ndarray) -> np.ndarray:
        """Good unit spaces (whole cells, for the local search; and blocks) from good crops; their vectors."""
        space = self._rt._fit_space(scaled)
        vectors = np.stack([self._rt._vectors(s, space.standard) for s in scaled])
        parts = space if self.n_parts == 1 else UnitSpace.fit(self.split(vectors), self.config["metrics"],
                                                              float(self.config["ridge"]))
        self._set_good(space, parts)
        if self.config["detect"] != "tokens":
            plain = cell_vectors(scaled, self.grid.cols, self.grid.rows)
            self.detect_space = UnitSpace.fit(self.split(plain, self.config["detect_parts"]), self.config["metrics"],
                                              float(self.config["ridge"]))
        return vectors

    def detect(self, scaled: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """RT distance D^2 per cell (n_cells,) of one scaled crop: the mean over the cell's detect_parts
        blocks of their distance to the good unit space of blocks, on the unshifted cell."""
        dp = self.config["detect_parts"]
        blocks = self.split(cell_vectors(scaled, self.grid.cols, self.grid.rows), dp)
        d2 = self.detect_space.distance(blocks).reshape(self.grid.n_cells, dp[0] * dp[1]).mean(axis=1)
        if self.config["detect"] == "both":
            vectors = self.vectors(scaled) if vectors is None else vectors
            d2 = 0.5 * (d2 + self.good.distance(vectors))
        return d2

    # -- fitting ---------------------------------------------------------------------------
    def _fit_modes(self, vectors: np.ndarray, labels: np.ndarray, cells: np.ndarray) -> None:
        """Standards and pooled whitening of each defect mode from its labelled cells."""
        m, p = len(METRIC_SETS[self.config["metrics"]]), self.n_parts
        good_cov = np.linalg.inv(self.good_parts.cov_inv.astype(np.float64)).reshape(-1, p, m, m).mean(axis=0)
        self.modes = {}
        for c, name in enumerate(self.classes[1:], start=1):
            idx = np.flatnonzero(labels == c)
            y = vectors[idx, cells[idx]]  # (n_c, k) the defect cells
            kin = cell_kinship(self.good.standard, cells[idx])
            if self.config["mode_standard"] == "residual":
                standard = self.good.standard + kin @ (y - self.good.standard[cells[idx]])
                standard = np.maximum(standard, 1e-3)  # pixels are >= 0.1: never a zero standard
            else:
                standard = kin @ y  # (n_cells, k)
            yb = self.split(y[:, None, :])  # (n_c, P, k/P)
            xb = self.split(standard[cells[idx]][:, None, :])  # (n_c, P, k/P)
            metrics = rt_metrics(yb.reshape(-1, yb.shape[-1]), xb.reshape(-1, xb.shape[-1]),
                                 self.config["metrics"]).reshape(len(idx), p, m)
            mean = metrics.mean(axis=0)  # (P, m)
            centred = metrics - mean
            # shrink towards the good spread, so one image of a mode still gives an invertible covariance
            prior = m + 1
            cov = (np.einsum("ipj,ipl->pjl", centred, centred) + prior * good_cov) / (len(idx) - 1 + prior)
            ridge = float(self.config["ridge"]) * np.trace(cov, axis1=1, axis2=2) / m + 1e-12
            cov += ridge[:, None, None] * np.eye(m)
            self.modes[name] = ModeSpace(standard.astype(np.float32), mean.astype(np.float32),
                                         whitener(np.linalg.inv(cov)))

    def _fit_once(self, scaled: np.ndarray, labels: np.ndarray, cells: np.ndarray | None,
                  colours: np.ndarray | None = None) -> np.ndarray:
        """Fit everything on these images (`colours`: their chroma channels, for shift_token
        "contrast+chroma" or "contrast+best"); returns the defective cell index used for each image."""
        good = labels == 0
        self._fit_good(scaled[good])
        self.chroma_standard = None
        if colours is not None:
            self.chroma_standard = cell_vectors(colours[good], self.grid.cols, self.grid.rows).mean(axis=0)
        vectors = np.stack([self.vectors(s) for s in scaled])
        if cells is None or np.any((cells < 0) & ~good):
            weak = np.argmax(self.good.distance_of_metrics(self.good.metrics_of(vectors)), axis=1)
            cells = np.where(cells >= 0, cells, weak) if cells is not None else weak
        evidence = cells
        if self.config["mode_cells"] == "evidence":
            # the standard of a mode is built where its defects show most: the context cell of largest
            # RT distance (in the demo views the cell above the labelled pin, which carries its top)
            d2 = self.good.distance_of_metrics(self.good.metrics_of(vectors))  # (N, n)
            window = self._neighbours()[cells]  # (N, w)
            evidence = window[np.arange(len(cells)), np.argmax(np.take_along_axis(d2, window, axis=1), axis=1)]
        self._fit_modes(vectors, labels, evidence)
        tokens = self.context(self.tokens(vectors)[0])
        keys = [tokens[good].reshape(-1, tokens.shape[-1])]
        key_labels = [np.zeros(int(good.sum()) * self.grid.n_cells, dtype=np.int32)]
        defect = np.flatnonzero(~good)
        keys.append(tokens[defect, cells[defect]])
        key_labels.append(labels[defect].astype(np.int32))
        self.keys = np.concatenate(keys).astype(np.float32)
        self.key_labels = np.concatenate(key_labels)
        self._set_shift(None, None, None)
        if int(self.config["shift_px"]) > 0:
            n = self.grid.n_cells
            def colour(i: int) -> np.ndarray | None:
                return None if colours is None else colours[i]

            self._set_shift(np.stack([self.shift_token(scaled[i], cells[i], colour(i))
                                      for i in defect]).reshape(-1, self.shift_width),
                            labels[defect].astype(np.int64),
                            np.stack([self.shift_tokens(scaled[i], range(n), colour(i)) for i in np.flatnonzero(good)]))
        self._prepare()
        return cells

    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        self.classes = data.classes
        if data.ok_class not in self.classes:
            raise EngineError(f"the rt-attention engine needs '{data.ok_class}' images")
        if self.fallback:
            report = self._rt.fit(data, seed, progress)
            self._fit_good(np.stack([self._rt._scaled(c) for c in data.crops[data.indices(data.ok_class)]]))
            self.keys, self.key_labels = None, None
            report.info.update({"mode": "anomaly detection (RT distance): only good training images, "
                                        "no defect mode to attend to"})
            return report
        labels = np.array([self.classes.index(lab) for lab in data.labels])
        n_good = int(np.sum(labels == 0))
        if n_good < 3:
            raise EngineError(f"the rt-attention engine needs at least 3 '{data.ok_class}' images, got {n_good}")
        scaled = np.stack([self._rt._scaled(c) for c in data.crops])
        given = np.array([-1 if c is None else self.grid.index(*c) for c in data.cells])
        given[labels == 0] = -1
        colours, colour_note = None, None
        if self.config["shift_token"] in CHROMA_TOKENS:
            colours = np.stack([chroma(c) for c in data.crops])
            spread = float(colours[labels == 0].mean(axis=0).std())
            if spread < MIN_CHROMA_SPREAD:  # grey images, or a grey part on a grey ground: nothing to find there
                self.config["shift_token"] = "contrast"
                colours = None
                colour_note = (f"off: the good images carry no colour (chroma spread {spread:.3f} < "
                               f"{MIN_CHROMA_SPREAD}); shift_token set to 'contrast'")
            else:
                colour_note = f"on (chroma spread of the good images {spread:.3f})"
        scores, predicted, top = self._cross_validate(scaled, labels, given, seed, progress, colours)
        cells = self._fit_once(scaled, labels, given, colours)
        in_sample = np.flatnonzero(predicted < 0)  # too few images of its kind to hold it out
        for i in in_sample:
            out = self._infer_scaled(scaled[i], None if colours is None else colours[i])
            scores[i] = out.score
        good = labels == 0
        thresholds = calibrate_thresholds(scores[good], scores[~good], review_z=float(self.config["review_z"]),
                                          ng_placement=self.config["ng_placement"], defect_labels=labels[~good])
        labelled = (given >= 0) & ~good
        held = predicted >= 0
        known = labelled & held
        if progress:
            progress("attention fitted", 1.0)
        return FitReport(thresholds, {
            "mode": "classifier: attention over reference cells of all modes",
            "cell_label_source": f"{int(labelled.sum())} from the manifest, {int((~good & ~labelled).sum())} weak "
                           "(the cell of largest RT distance)",
            "reference_cells": {name: int(np.sum(self.key_labels == c)) for c, name in enumerate(self.classes)},
            "threshold_scores": "cross-validated" if not in_sample.size else
                                f"cross-validated, {in_sample.size} in-sample (too few to hold out)",
            # the class the attention gives the top cell, whatever the verdict threshold says
            "held_out_accuracy": float(np.mean(predicted[held] == labels[held])) if held.any() else None,
            "held_out_cell_localization": float(np.mean(top[known] == cells[known])) if known.any() else None,
            "held_out_good_max": float(scores[good].max()),
            "held_out_good_ng_rate": good_ng_rate(scores[good], thresholds[1]),
            **({"displacement_chroma": colour_note} if colour_note else {}),
            "held_out_defect_min": float(scores[~good].min()),
            # join "confusion": what each head said of each true class when held out (rows: true class)
            "held_out_head_confusion": None if self.confusion is None else {
                head: {true: {said: round(float(p), 3) for said, p in zip(self.classes, row)}
                       for true, row in zip(self.classes, m)}
                for head, m in zip(("rt", "displacement"), self.confusion)},
        })

    def _cross_validate(self, scaled, labels, given, seed, progress, colours=None):
        """Held-out score, predicted class and top cell of every image, from folds stratified by class
        (each image scored by a model that never saw it); -1 where an image could not be held out."""
        n = len(labels)
        folds = int(self.config["folds"])
        rng = np.random.default_rng(seed)
        fold_of = np.full(n, -1)
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            fold_of[idx] = np.arange(len(idx)) % folds
        scores = np.zeros(n)
        predicted = np.full(n, -1)
        top = np.full(n, -1)
        n_classes = len(self.classes)
        blocks = self.config["detect"] != "tokens" and self.config["score"] == "distance"
        # held-out image -> (the most distant cell's distance, the two heads there and at the pin, in this class order)
        heads: dict[int, tuple] = {}
        self.confusion = None
        for f in range(folds):
            test = fold_of == f
            train = ~test
            train_labels = labels[train]
            if not test.any() or np.sum(train_labels == 0) < 3:
                continue
            present = np.unique(train_labels)
            # a mode missing from this fold's training part: renumber so the classes stay contiguous
            remap = {int(c): i for i, c in enumerate(present)}
            sub = RTAttentionEngine(self.grid, self.config)
            sub.classes = [self.classes[c] for c in present]
            if len(present) < 2:
                continue
            sub._fit_once(scaled[train], np.array([remap[int(c)] for c in train_labels]), given[train],
                          None if colours is None else colours[train])
            for i in np.flatnonzero(test):
                colour = None if colours is None else colours[i]
                if blocks:
                    d2, most, rt, shift, top[i], pin_rt, pin_shift = sub._top_heads(scaled[i], colour=colour)
                    heads[i] = (float(d2[most]), *(None if h is None else spread_to_classes(h, present, n_classes)
                                                   for h in (rt, shift, pin_rt, pin_shift)))
                    continue
                out = sub._infer_scaled(scaled[i], colour)
                scores[i] = out.score
                top[i] = int(np.argmax(out.cell_scores))
                probs = out.class_probs or {}
                predicted[i] = self.classes.index(max(probs, key=probs.get)) if probs else -1
            if progress:
                progress("cross-validating the attention", (f + 1) / (folds + 1))
        if heads:
            held = sorted(heads)
            if self.config["join"] == "confusion" and all(heads[i][2] is not None for i in held):
                self.fit_confusion(labels[held], np.stack([heads[i][1] for i in held]),
                                   np.stack([heads[i][2] for i in held]))
            for i in held:  # scores and classes as this engine will give them, with its join
                d2_top, rt, shift, pin_rt, pin_shift = heads[i]
                log_probs = self._join(pin_rt, pin_shift)  # the class named at the pin
                scores[i] = self._score(d2_top, self._join(rt, shift))[0]
                predicted[i] = int(np.argmax(log_probs))
        return scores, predicted, top

    # -- inference -------------------------------------------------------------------------
    def analyse(self, crop: np.ndarray) -> dict[str, np.ndarray]:
        """Everything the plus-minus analysis shows for one crop: raw metrics (n, S, M) against each
        standard (M = P*m: the m metrics of each of the P blocks of a cell), whitened tokens (n, S, M),
        RT distance D^2 to each standard (n, S, averaged over blocks), class log-probabilities (n, C)
        and the defect log-odds (n,) per cell, the signed deviation (n, S, M) of each metric from
        its unit space's mean, in that space's standard deviations, and with the displacement head the
        token (n, shift_width: see shift_names) and class log-probabilities (n, C) of every cell."""
        scaled = self._rt._scaled(crop)
        vectors = self.vectors(scaled)
        tokens, raw = self.tokens(vectors)
        n, s, m = raw.shape
        blocks = tokens.reshape(n, s, m)
        # signed deviation of each metric from its unit-space mean, in that space's standard deviations
        good = self.good_parts
        good_sd = np.sqrt(np.diagonal(np.linalg.inv(good.cov_inv.astype(np.float64)), axis1=1, axis2=2))
        means, sds = [good.mean.reshape(n, m)], [good_sd.reshape(n, m)]
        for mode in list(self.modes.values())[: s - 1]:
            w = mode.whiten.astype(np.float64)
            sd = np.sqrt(np.diagonal(np.linalg.inv(w @ np.swapaxes(w, -1, -2)), axis1=-2, axis2=-1))
            means.append(np.broadcast_to(mode.mean.reshape(-1), (n, m)))
            sds.append(np.broadcast_to(sd.reshape(-1), (n, m)))
        deviation = (raw - np.stack(means, axis=1)) / np.stack(sds, axis=1)
        out = {"metrics": raw, "deviation": deviation, "tokens": blocks, "distance": np.sum(blocks ** 2, axis=-1) / m}
        if not self.fallback:
            log_probs, _ = self.attention(tokens)
            where = self.attention(tokens, queries="good")[0] if self.config["localize"] == "good" else log_probs
            out.update({"log_probs": log_probs, "odds": self.defect_odds(where)})
        if self.shift_keys is not None and self.shift_good is not None:
            shift = self.shift_tokens(scaled, range(n), self._colour(crop))
            out.update({"shift": shift, "shift_log_probs": np.stack([self.shift_log_probs(t, i)
                                                                     for i, t in enumerate(shift)])})
        return out

    def _infer_scaled(self, scaled: np.ndarray, colour: np.ndarray | None = None) -> EngineOutput:
        vectors = self.vectors(scaled)
        # the block detector gives an RT distance; score "attention" keeps the tokens' odds (token path)
        if self.config["detect"] != "tokens" and self.config["score"] == "distance" and self.detect_space is not None:
            return self._infer_blocks(scaled, vectors, colour)
        if self.config["localize"] == "good":
            # where: anomaly-type queries over all cells; what: the configured queries, at that cell only
            tokens, _ = self.tokens(vectors, good_only=True)
            good_probs, _ = self.attention(tokens, queries="good")
            odds = np.nan_to_num(self.defect_odds(good_probs), nan=np.inf)
            top = int(np.argmax(odds))
            if self.config["queries"] == "good":
                top_probs = good_probs[top]
            else:
                top_probs = self._attend(self._top_query(vectors, top, self.config["queries"]), self.config["queries"],
                                         cells=np.array([top]))[0][0]
        else:
            tokens, _ = self.tokens(vectors)
            log_probs, _ = self.attention(tokens)
            odds = np.nan_to_num(self.defect_odds(log_probs), nan=np.inf)
            top = int(np.argmax(odds))
            top_probs = log_probs[top]
        top_probs = self._with_shift(scaled, top, top_probs, colour)
        probs = np.exp(top_probs)
        m = len(METRIC_SETS[self.config["metrics"]]) * self.n_parts
        d2 = float(np.nan_to_num(np.max(np.sum(tokens[:, :m] ** 2, axis=-1)) / m, nan=np.inf))
        # the verdict's score: the RT distance to the good unit space (anomaly type, it flags a defect
        # no reference cell resembles), or the attention's own log-odds; the cells always show the odds
        # log(1 + p(defect)/p(good)): the odds made positive, as the thresholds' log-space calibration needs
        score = d2 if self.config["score"] == "distance" else float(np.logaddexp(0.0, odds[top]))
        return EngineOutput(score, odds.reshape(self.grid.rows, self.grid.cols),
                            {name: float(p) for name, p in zip(self.classes, probs)},
                            {"rt_distance": d2, "top_odds": float(odds[top])})

    def _infer_blocks(self, scaled: np.ndarray, vectors: np.ndarray, colour: np.ndarray | None = None) -> EngineOutput:
        """Where and how defective from the block RT distance; what from the configured queries at the
        most distant cell, joined with the displacement head, make the score; the pin named and its class
        are the heads' choice among the most distant cells (`_top_heads`). The cells show the RT distance."""
        d2, top, rt, shift, pin, pin_rt, pin_shift = self._top_heads(scaled, vectors, colour)
        score, odds = self._score(d2[top], self._join(rt, shift))
        return EngineOutput(score, d2.reshape(self.grid.rows, self.grid.cols),
                            {name: float(p) for name, p in zip(self.classes, np.exp(self._join(pin_rt, pin_shift)))},
                            {"rt_distance": float(d2[top]), "top_odds": odds}, top_cell=self.grid.cell(pin))

    def infer(self, crop: np.ndarray) -> EngineOutput:
        if self._rt.unit_space is None:
            raise EngineError("the rt-attention engine has not been fitted")
        if self.fallback:
            return self._rt.infer(crop)
        return self._infer_scaled(self._rt._scaled(crop), self._colour(crop))
