"""The RT-attention engine (DESIGN §2.2): RT/SOART metrics of every cell against the standard vector
of each mode (good and every defect class) are the cell tokens; attention of each cell over the
reference cells of all modes, with whitening by the unit-space covariances as the projections (no
backprop), gives each cell a class distribution; the most defective cell names the image's class.

With only good training images there is nothing to attend to: the engine then is the RT engine
(one good unit space, RT distance) and says so in its fit report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from station.core.displacement import better_match, cell_contrast, cell_shifts, chroma
from station.core.engines.base import Engine, EngineOutput, FitReport, Progress, TrainingSet
from station.core.engines.rt_engine import RTEngine
from station.core.errors import EngineError
from station.core.rt import METRIC_SETS, UnitSpace, cell_vectors, rt_metrics
from station.core.verdict import calibrate_thresholds

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
}
CHROMA_TOKENS = ("contrast+chroma", "contrast+best")  # the shift_token settings that read the chroma channel
CONTRAST_TOKENS = ("contrast",) + CHROMA_TOKENS  # those whose token holds the contrast changes
MIN_CHROMA_SPREAD = 0.01  # below it (spread of the good images' mean chroma) the images count as grey
CONFUSION_PRIOR = 1.0  # pseudo-count spread over each row of a head's confusion matrix
ODDS_CLIP = 4.0  # how far (in log-odds) the class heads may move the verdict score, either way
CONTEXT = {"cell": [(0, 0)], "column": [(0, -1), (0, 0), (0, 1)],
           "neighbours": [(dc, dr) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]}


def _whitener(cov_inv: np.ndarray) -> np.ndarray:
    """L with L L^T = V^-1, so that t = L^T (Y - mean) has |t|^2 = m * D^2 (batched over leading axes)."""
    sym = 0.5 * (cov_inv + np.swapaxes(cov_inv, -1, -2))
    return np.linalg.cholesky(sym.astype(np.float64)).astype(np.float32)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)


@dataclass
class ModeSpace:
    """The unit space of one defect mode: a standard vector per cell, metric mean and whitening pooled
    over the labelled cells of that mode (too few to keep them per cell)."""

    standard: np.ndarray  # (n_cells, k)
    mean: np.ndarray  # (P, m): per block of a cell
    whiten: np.ndarray  # (P, m, m)


def _spread(log_probs: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Log-probabilities over the classes `present` (a fold's) spread to all n_classes, -inf elsewhere."""
    out = np.full(n_classes, -np.inf)
    out[present] = log_probs
    return out


def cell_kinship(standards: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(n, len(cells)) weights: how much a defect seen at cell j = cells[i] tells about cell n, from
    how alike their good standards are (a pushed round pin teaches about round pins). Each row sums
    to 1; normalised in log space, so a cell unlike every given one still gets its nearest kin."""
    d = np.mean((standards[:, None, :] - standards[None, :, :]) ** 2, axis=-1)
    off = d[~np.eye(len(d), dtype=bool)]
    h = 0.1 * float(np.median(off)) + 1e-12 if off.size else 1.0
    log_w = -d[:, cells] / h
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


class RTAttentionEngine(Engine):
    name = "rt-attention"
    kind = "classifier"
    # what a recipe saved before a setting existed meant by it (a key absent from its config): the fourth
    # round's RT distance alone as the score and heads joined as a product, ..., the sixth round's one
    # bandwidth for every token dimension
    saved_before = {"odds_weight": 0.0, "join": "product", "shift_bandwidth": "fixed", "shift_edge": "replicate",
                    "shift_token": "displacement", "shift_density": "kernel", "review_z": 0.0,
                    "shift_contrast_bw": None}

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
                "review_z": 2.58}

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
        self._good_whiten = _whitener(parts.cov_inv)
        self._stacked = self._attn = None

    def split(self, vectors: np.ndarray, parts: list[int] | None = None) -> np.ndarray:
        """Cell vectors (..., n, k) to sub-cell block vectors (..., n*P, k/P), blocks of a cell together:
        metrics per block keep where in the cell a change is (a pin top moved down, or gone)."""
        pr, pc = parts or self.config["parts"]
        if pr * pc == 1:
            return vectors
        c = self.grid.cell_px
        *lead, n, _ = vectors.shape
        v = vectors.reshape(*lead, n, pr, c // pr, pc, c // pc)
        v = np.swapaxes(v, -3, -2)  # (..., n, pr, pc, c/pr, c/pc)
        return v.reshape(*lead, n * pr * pc, -1)

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

    # -- tokens ----------------------------------------------------------------------------
    def vectors(self, scaled: np.ndarray) -> np.ndarray:
        """Cell vectors (n_cells, k) of one scaled crop, locally searched against the good standard."""
        return self._rt._vectors(scaled, self.good.standard)

    def tokens(self, vectors: np.ndarray, cells: np.ndarray | None = None,
               good_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Whitened metric tokens (..., n_cells, S*P*m) against every standard, and the raw metrics
        (..., n_cells, S, P*m), for S standards and P blocks per cell. Block 0 is the good standard.
        `cells` limits them to those cells, `good_only` to the good standard (S = 1)."""
        if self._stacked is None:
            self._prepare()
        standard, mean, whiten = self._stacked
        n, p = self.grid.n_cells, self.n_parts
        s = len(standard) // (n * p)
        if good_only and cells is None:
            standard, mean, whiten, s = standard[: n * p], mean[: n * p], whiten[: n * p], 1
        elif good_only or cells is not None:
            cells = np.arange(n) if cells is None else np.asarray(cells)
            s = 1 if good_only else s
            rows = ((np.arange(s)[:, None, None] * n + cells[None, :, None]) * p + np.arange(p)).ravel()
            standard, mean, whiten = standard[rows], mean[rows], whiten[rows]
            vectors, n = vectors[..., cells, :], len(cells)
        blocks = self.split(vectors)
        # all S standards in one pass: the block vectors repeated once per standard
        repeated = np.concatenate([blocks] * s, axis=-2) if s > 1 else blocks
        raw = rt_metrics(repeated, standard, self.config["metrics"])  # (..., S*n*P, m)
        t = np.einsum("...nj,njl->...nl", raw - mean, whiten)
        lead, m = raw.shape[:-2], raw.shape[-1]
        width = self.n_parts * m
        raw = np.swapaxes(raw.reshape(*lead, s, n, width), -3, -2)  # (..., n, S, P*m)
        t = np.swapaxes(t.reshape(*lead, s, n, width), -3, -2).reshape(*lead, n, s * width)
        return t, raw

    def _prepare(self) -> None:
        """Stack the standards and whitenings of every unit space, and sort the reference cells by
        class, so inference is a handful of array operations."""
        n, p = self.grid.n_cells, self.n_parts
        m = len(METRIC_SETS[self.config["metrics"]])
        standards, means, whitens = [self.good_parts.standard], [self.good_parts.mean], [self._good_whiten]
        if self.config["unit_spaces"] == "several":
            for mode in self.modes.values():
                standards.append(self.split(mode.standard))
                means.append(np.broadcast_to(mode.mean, (n, p, m)).reshape(n * p, m))
                whitens.append(np.broadcast_to(mode.whiten, (n, p, m, m)).reshape(n * p, m, m))
        self._stacked = (np.concatenate(standards), np.concatenate(means).astype(np.float32),
                         np.concatenate(whitens).astype(np.float32))
        self._attn = None
        if self.keys is None or self.key_labels is None:
            return
        order = np.argsort(self.key_labels, kind="stable")
        self.keys, self.key_labels = self.keys[order], self.key_labels[order]
        self._attn = {kind: self._attention_cache(kind) for kind in {"good", self.config["queries"]}}

    def _attention_cache(self, queries: str) -> tuple:
        """Query columns, scaled keys and biases for queries of one type ("good": the good standard's
        block of each context cell; "all": every standard's)."""
        dq = self._query_width(queries)
        width = self._stacked[1].shape[-1] * len(self._stacked[0]) // self.grid.n_cells
        w = len(CONTEXT[self.config["context"]])
        offset = self._query_offset(queries)
        qcols = (np.arange(w)[:, None] * width + offset + np.arange(dq)[None, :]).ravel()
        d = len(qcols)
        k = self.keys[:, qcols].astype(np.float64)
        scale = 1.0 / (np.sqrt(d) * float(self.config["temperature"]))
        bias = -0.5 * np.sum(k * k, axis=1) if self.config["similarity"] == "distance" else np.zeros(len(k))
        counts = np.bincount(self.key_labels, minlength=len(self.classes))
        if self.config["balance"]:  # every class the same prior, however many reference cells it has
            bias = bias * scale - np.log(np.maximum(counts, 1))[self.key_labels]
        else:
            bias = bias * scale
        n_good, n = int(counts[0]), self.grid.n_cells
        kt = k.T * scale
        if self.config["good_keys"] == "cell" and n_good % n == 0 and n_good:
            # each cell attends to the good cells at its own position: (n, d, images), biases (n, images)
            g = n_good // n
            good = (kt[:, :n_good].reshape(d, g, n).transpose(2, 0, 1), bias[:n_good].reshape(g, n).T)
            if self.config["balance"]:
                good = (good[0], good[1] + np.log(n_good) - np.log(g))
        else:
            good = (kt[:, :n_good], bias[:n_good])
        labels = self.key_labels[n_good:]
        present = np.unique(labels)
        starts = np.searchsorted(labels, present)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(labels))))
        return (qcols, good, (kt[:, n_good:], bias[n_good:]), present, starts, seg)

    def _query_width(self, queries: str | None = None) -> int:
        m = len(METRIC_SETS[self.config["metrics"]]) * self.n_parts
        kind = queries or self.config["queries"]
        return m if kind == "good" else m * (len(self.standards) - (kind == "modes"))

    def _query_offset(self, queries: str | None = None) -> int:
        """First token column of a query type within a cell's token (the good standard's block comes first)."""
        return len(METRIC_SETS[self.config["metrics"]]) * self.n_parts if (queries or self.config["queries"]) == "modes" \
            else 0

    def _top_query(self, vectors: np.ndarray, top: int, kind: str) -> np.ndarray:
        """The query (1, w*dq) of one cell with its context, for queries of the given type."""
        context = self._context_index if self._context_index is not None else self._neighbours()
        self._context_index = context
        context = context[top]
        inside = context < self.grid.n_cells
        good_only = kind == "good"
        tokens = self.tokens(vectors, cells=context[inside], good_only=good_only)[0]
        off, dq = self._query_offset(kind), self._query_width(kind)
        full = np.zeros((len(context), dq), np.float32)
        full[inside] = tokens[:, off:off + dq]
        return full.reshape(1, -1)

    def _neighbours(self) -> np.ndarray:
        """(n_cells, w) index of each cell's context cells. Beyond the grid: the nearest edge cell (the
        registered crop cuts the tops of the first row's pins, so their evidence sits in the edge cell
        itself), or n_cells, a zero token."""
        g = self.grid
        replicate = self.config["edge"] == "replicate"
        out = np.full((g.n_cells, len(CONTEXT[self.config["context"]])), g.n_cells)
        for i in range(g.n_cells):
            col, row = g.cell(i)
            for j, (dc, dr) in enumerate(CONTEXT[self.config["context"]]):
                c, r = col + dc, row + dr
                if replicate:
                    c, r = min(max(c, 0), g.cols - 1), min(max(r, 0), g.rows - 1)
                if 0 <= c < g.cols and 0 <= r < g.rows:
                    out[i, j] = g.index(c, r)
        return out

    def context(self, tokens: np.ndarray) -> np.ndarray:
        """Cell tokens (..., n, D) to context tokens (..., n, w*D): the cell with its neighbours, whose
        evidence a defect may share (a grid fitted to the housing, not to the pin tops, shows a pin's
        top in the cell above its own)."""
        if self._context_index is None:
            self._context_index = self._neighbours()
        padded = np.concatenate([tokens, np.zeros_like(tokens[..., :1, :])], axis=-2)
        ctx = padded[..., self._context_index, :]
        return ctx.reshape(*ctx.shape[:-2], -1)

    # -- the displacement head -------------------------------------------------------------
    def shift_token(self, scaled: np.ndarray, cell: int, colour: np.ndarray | None = None) -> np.ndarray:
        """The displacement token of one cell (`shift_names`), led by (dx, dy, r): where within shift_px its
        good standard matches the crop best (px, sub-pixel, + is right and down) and how well (Pearson r). The RT metrics say how far a cell is
        from a standard; this says which way its content moved: a pushed pin's top moves along the
        camera's line of sight, a leaning one sideways, a missing pin matches nowhere."""
        return self.shift_tokens(scaled, [cell], colour)[0]

    @property
    def shift_names(self) -> list[str]:
        """What each entry of a displacement token is: (dx, dy, r); with shift_token "contrast" the changes of
        the cell's contrast and of its top and bottom halves' brightness against its good standard; with
        "contrast+chroma" also (dx, dy, r) of the chroma channel against its good standard; with
        "contrast+best" the first three are of the better matching channel, grey or chroma."""
        names = ["dx", "dy", "r"]
        if self.config["shift_token"] in CONTRAST_TOKENS:
            names += ["d_contrast", "d_top", "d_bottom"]
        if self.config["shift_token"] == "contrast+chroma":
            names += ["chroma_dx", "chroma_dy", "chroma_r"]
        return names

    @property
    def shift_width(self) -> int:
        return len(self.shift_names)

    def shift_tokens(self, scaled: np.ndarray, cells, colour: np.ndarray | None = None) -> np.ndarray:
        """(len(cells), shift_width) tokens of `shift_token` for several cells of one crop, padded once.
        `colour` is the crop's `chroma` channel (shift_token "contrast+chroma" or "contrast+best"; None: a
        grey crop)."""
        cells = list(cells)
        kind = self.config["shift_token"]
        px, inside = int(self.config["shift_px"]), self.config["shift_edge"] == "inside"
        parts = [cell_shifts(scaled, self.good.standard, self.grid, px, cells, inside=inside)]
        if kind in CONTRAST_TOKENS:
            parts.append(cell_contrast(scaled, self.good.standard, self.grid, cells))
        if kind in CHROMA_TOKENS:
            if self.chroma_standard is None:
                raise EngineError("the rt-attention engine's chroma standard is missing")
            colour = np.zeros_like(scaled, dtype=np.float32) if colour is None else colour
            tinted = cell_shifts(colour, self.chroma_standard, self.grid, px, cells, inside=inside)
            if kind == "contrast+chroma":
                parts.append(tinted)
            else:
                parts[0] = better_match(parts[0], tinted)
        return np.concatenate(parts, axis=1)

    def _set_shift(self, keys: np.ndarray | None, labels: np.ndarray | None, good: np.ndarray | None) -> None:
        self.shift_keys, self.shift_labels, self.shift_good = keys, labels, good
        self._shift_model = None

    def _shift_density(self) -> dict[str, Any]:
        """What the displacement head's densities need, from its reference tokens (computed once): the
        kernel's bandwidth per token dimension, and with shift_density "kernel+gauss" each class's Gaussian
        (mean, inverse covariance, log-determinant; good's per cell). Covariances take one pseudo-sample
        of the modes' pooled covariance, so a mode of one reference still has an invertible one."""
        if self._shift_model is not None:
            return self._shift_model
        d = self.shift_width
        px, corr = (float(v) for v in self.config["shift_scale"])
        floor = np.array([px, px, corr] + [corr] * (d - 3), dtype=np.float64)
        keys, labels = self.shift_keys.astype(np.float64), self.shift_labels
        groups = [keys[labels == c] for c in range(1, len(self.classes))]
        covs = [np.cov(g.T) for g in groups if len(g) > 1]
        pooled = np.mean(covs, axis=0) if covs else np.diag(floor ** 2)
        pooled = pooled + np.eye(d) * 1e-6 * max(float(np.trace(pooled)) / d, 1e-12)
        scale = floor
        if self.config["shift_bandwidth"] == "pooled":
            bw = np.full(d, float(self.config["shift_pooled_bw"]))
            if self.config["shift_contrast_bw"] is not None:
                bw[3:] = float(self.config["shift_contrast_bw"])
            scale = bw * np.sqrt(np.diag(pooled))
        model: dict[str, Any] = {"scale": scale, "floor": floor}
        if self.config["shift_density"] == "kernel+gauss":
            def gauss(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
                n = len(g)
                cov = ((np.cov(g.T) * (n - 1) if n > 1 else 0.0) + pooled) / n
                sign, logdet = np.linalg.slogdet(cov)
                if sign <= 0:
                    cov, (_, logdet) = pooled, np.linalg.slogdet(pooled)
                return g.mean(axis=0), np.linalg.inv(cov), float(logdet)

            model["modes"] = [gauss(g) if len(g) else None for g in groups]
            model["good"] = [gauss(self.shift_good[:, i].astype(np.float64)) for i in range(self.grid.n_cells)]
        self._shift_model = model
        return model

    def shift_log_probs(self, token: np.ndarray, cell: int) -> np.ndarray:
        """Class log-probabilities (C,) of one cell's displacement token: a Gaussian kernel density over
        the reference tokens of each class (the good training images' tokens at this cell, the labelled
        defect cells' tokens), every class the same prior. Bandwidth shift_scale for every class
        ("fixed"), or per class at least that and Silverman's rule on the class's own spread ("adaptive":
        a mode whose pins move many ways, such as a lean in any of four directions, spreads its few
        references over the gaps between them, while a mode that always moves alike stays sharp), or
        shift_pooled_bw times the modes' pooled within-class spread ("pooled"). With shift_density
        "kernel+gauss" each class's density is the mean of the kernel's and its Gaussian's."""
        model = self._shift_density()
        floor = model["floor"]
        adaptive = self.config["shift_bandwidth"] == "adaptive"
        token = np.asarray(token, dtype=np.float64)
        half_log_2pi = 0.5 * len(token) * np.log(2 * np.pi)
        out = np.full(len(self.classes), -np.inf)
        for c in range(len(self.classes)):
            keys = self.shift_good[:, int(cell)] if c == 0 else self.shift_keys[self.shift_labels == c]
            if not len(keys):
                continue
            keys = keys.astype(np.float64)
            scale = model["scale"]
            if adaptive and len(keys) > 1:
                silverman = (4.0 / (len(floor) + 2) / len(keys)) ** (1.0 / (len(floor) + 4))
                scale = np.maximum(floor, silverman * keys.std(axis=0, ddof=1))
            d2 = 0.5 * np.sum(((token - keys) / scale) ** 2, axis=-1)
            out[c] = _logsumexp(-d2, 0) - np.log(len(keys)) - np.sum(np.log(scale)) - half_log_2pi
            if "modes" in model:
                mean, inv, logdet = model["good"][int(cell)] if c == 0 else model["modes"][c - 1]
                z = token - mean
                gauss = -0.5 * float(z @ inv @ z) - 0.5 * logdet - half_log_2pi
                out[c] = np.logaddexp(out[c], gauss) - np.log(2.0)
        return out - _logsumexp(out, 0)

    def _with_shift(self, scaled: np.ndarray, top: int, log_probs: np.ndarray,
                    colour: np.ndarray | None = None) -> np.ndarray:
        """The RT-token head's class log-probabilities at the top cell, joined with the displacement head's."""
        return self._join(log_probs, self._shift_head(scaled, top, colour))

    def _shift_head(self, scaled: np.ndarray, top: int, colour: np.ndarray | None = None) -> np.ndarray | None:
        if self.shift_keys is None or self.shift_good is None:
            return None
        return self.shift_log_probs(self.shift_token(scaled, top, colour), top)

    def _join(self, rt: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
        """Class log-probabilities from the two heads: a product (the RT head's weighted by
        rt_head_weight), or with join "confusion" and its matrices fitted, p(c) proportional to
        prod_h sum_c' p_h(c') M_h[c, c'], each head read through what it said of each class when held out."""
        if shift is None:
            return rt
        if self.confusion is not None:
            with np.errstate(divide="ignore"):
                joint = sum(np.log(m @ np.exp(lp)) for m, lp in zip(self.confusion, (rt, shift)))
        else:
            joint = float(self.config["rt_head_weight"]) * rt + shift
        joint = np.where(np.isnan(joint), -np.inf, joint)
        return joint - _logsumexp(joint, 0)

    def _score(self, d2_top: float, log_probs: np.ndarray) -> tuple[float, float]:
        """(verdict score, defect log-odds) at the top cell: the cell's RT distance, raised where the class
        heads say defect and lowered where they say good (odds_weight; clipped, so the heads can move it
        by at most e^(w * 4))."""
        odds = float(self.defect_odds(log_probs))
        w = float(self.config["odds_weight"])
        return float(d2_top) * float(np.exp(w * np.clip(np.nan_to_num(odds), -ODDS_CLIP, ODDS_CLIP))), odds

    def _top_heads(self, scaled: np.ndarray, vectors: np.ndarray | None = None, colour: np.ndarray | None = None):
        """The block detector's cell distances (n,), its top cell, and the two heads' class
        log-probabilities there (the displacement head's None when it is off)."""
        vectors = self.vectors(scaled) if vectors is None else vectors
        d2 = np.nan_to_num(self.detect(scaled, vectors), nan=np.inf)
        top = int(np.argmax(d2))
        kind = self.config["queries"]
        rt = self._attend(self._top_query(vectors, top, kind), kind, cells=np.array([top]))[0][0]
        return d2, top, rt, self._shift_head(scaled, top, colour)

    def fit_confusion(self, labels: np.ndarray, rt: np.ndarray, shift: np.ndarray) -> None:
        """Each head's confusion matrix from held-out log-probabilities (N, C) of images of known class:
        row c is the mean of what the head said of class-c images, plus CONFUSION_PRIOR spread evenly."""
        c = len(self.classes)
        mats = []
        for lp in (rt, shift):
            p = np.exp(lp)
            m = np.full((c, c), CONFUSION_PRIOR / c)
            np.add.at(m, labels, p)
            mats.append(m / m.sum(axis=1, keepdims=True))
        self.confusion = np.stack(mats)

    # -- attention -------------------------------------------------------------------------
    def attention(self, tokens: np.ndarray, weights: bool = False,
                  queries: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Class log-probabilities (..., n_cells, C) of each cell and, if asked, the attention weights
        over the reference cells (..., n_cells, n_keys): softmax(q K^T / (sqrt(d) tau)) with V the
        class labels, summed per class (a log-sum-exp per class, so no class underflows to 0)."""
        if self.keys is None or self.key_labels is None:
            raise EngineError("the rt-attention engine has no reference cells")
        if self._attn is None:
            self._prepare()
        kind = queries or self.config["queries"]
        qcols = self._attn[kind][0]
        ctx = self.context(tokens)
        # tokens of the good standard alone (good_only) are already the good-type query columns
        return self._attend(ctx if ctx.shape[-1] == len(qcols) else ctx[..., qcols], kind, weights=weights)

    def _attend(self, q: np.ndarray, kind: str, cells: np.ndarray | None = None,
                weights: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Attention of context queries q (..., c, d) of the given cells (all when None)."""
        _, (kg, bg), (kd, bd), present, starts, seg = self._attn[kind]
        q = q.astype(np.float64)
        # einsum, not @: a BLAS call this small is slower, and much slower when its threads find the cores busy
        if kg.ndim == 3:  # good reference cells of the query's own position
            if cells is not None:
                kg, bg = kg[cells], bg[cells]
            good = np.einsum("...nd,ndg->...ng", q, kg) + bg
        else:
            good = np.einsum("...d,dg->...g", q, kg) + bg
        per_class = np.full((*q.shape[:-1], len(self.classes)), -np.inf)
        per_class[..., 0] = _logsumexp(good, -1)
        logits = np.einsum("...d,dk->...k", q, kd) + bd
        if logits.shape[-1]:
            top = np.maximum.reduceat(logits, starts, axis=-1)  # (..., n_present)
            # terms below e^-60 of their class's largest change nothing and would only cost denormals
            sums = np.add.reduceat(np.exp(np.maximum(logits - top[..., seg], -60.0)), starts, axis=-1)
            per_class[..., present] = np.log(sums) + top
        log_probs = per_class - _logsumexp(per_class, -1)[..., None]
        if not weights:
            return log_probs, None
        both = np.concatenate([good, logits], axis=-1)  # good keys (own position where so), then defect keys
        return log_probs, np.exp(both - _logsumexp(both, -1)[..., None])

    @staticmethod
    def defect_odds(log_probs: np.ndarray) -> np.ndarray:
        """log(p(defect) / p(good)) per cell: the cell score, unbounded and free of ties at 0 and 1."""
        return _logsumexp(log_probs[..., 1:], -1) - log_probs[..., 0]

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
                                         _whitener(np.linalg.inv(cov)))

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
        thresholds = calibrate_thresholds(scores[good], scores[~good], review_z=float(self.config["review_z"]))
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
        heads: dict[int, tuple] = {}  # held-out image -> (top cell's distance, the two heads in this class order)
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
                    d2, top[i], rt, shift = sub._top_heads(scaled[i], colour=colour)
                    heads[i] = (float(d2[top[i]]), _spread(rt, present, n_classes),
                                None if shift is None else _spread(shift, present, n_classes))
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
                d2_top, rt, shift = heads[i]
                log_probs = self._join(rt, shift)
                scores[i] = self._score(d2_top, log_probs)[0]
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

    def _colour(self, crop: np.ndarray) -> np.ndarray | None:
        """The crop's chroma channel where the displacement head reads it, else None."""
        return chroma(crop) if self.config["shift_token"] in CHROMA_TOKENS else None

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
        top cell, joined with the displacement head. The cells show the RT distance."""
        d2, top, rt, shift = self._top_heads(scaled, vectors, colour)
        top_probs = self._join(rt, shift)
        score, odds = self._score(d2[top], top_probs)
        return EngineOutput(score, d2.reshape(self.grid.rows, self.grid.cols),
                            {name: float(p) for name, p in zip(self.classes, np.exp(top_probs))},
                            {"rt_distance": float(d2[top]), "top_odds": odds})

    def infer(self, crop: np.ndarray) -> EngineOutput:
        if self._rt.unit_space is None:
            raise EngineError("the rt-attention engine has not been fitted")
        if self.fallback:
            return self._rt.infer(crop)
        return self._infer_scaled(self._rt._scaled(crop), self._colour(crop))

    # -- arrays ----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        out = self.good.arrays("good.")
        if self.n_parts > 1 and self.good_parts is not None:
            out.update(self.good_parts.arrays("good_parts."))
        if self.config["detect"] != "tokens" and self.detect_space is not None:
            out.update(self.detect_space.arrays("detect."))
        for name, mode in self.modes.items():
            out.update({f"mode.{name}.standard": mode.standard, f"mode.{name}.mean": mode.mean,
                        f"mode.{name}.whiten": mode.whiten})
        if self.keys is not None and self.key_labels is not None:
            out.update({"keys.tokens": self.keys, "keys.labels": self.key_labels})
        if self.shift_keys is not None and self.shift_good is not None:
            out.update({"shift.keys": self.shift_keys, "shift.labels": self.shift_labels.astype(np.int32),
                        "shift.good": self.shift_good})
            if self.chroma_standard is not None:
                out["shift.chroma"] = self.chroma_standard.astype(np.float32)
        if self.confusion is not None:
            out["join.confusion"] = self.confusion.astype(np.float32)
        # class names in order, as code points (safetensors holds numbers only)
        out["classes"] = np.array([ord(ch) for ch in "\n".join(self.classes or ["good"])], dtype=np.int32)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._rt.load_arrays(arrays)
        parts = self._rt.unit_space
        if self.n_parts > 1:
            parts = UnitSpace.from_arrays(arrays, "good_parts.", self.config["metrics"])
            if parts.standard.shape != (self.grid.n_cells * self.n_parts, self.grid.cell_px ** 2 // self.n_parts):
                raise EngineError("rt-attention arrays: the block unit space is for another grid or parts setting")
        self._set_good(self._rt.unit_space, parts)
        self.detect_space = None
        if self.config["detect"] != "tokens":
            if "detect.standard" not in arrays:  # a recipe from before the block detector: its tokens' score
                self.config["detect"] = "tokens"
            else:
                dp = self.config["detect_parts"]
                self.detect_space = UnitSpace.from_arrays(arrays, "detect.", self.config["metrics"])
                if self.detect_space.standard.shape != (self.grid.n_cells * dp[0] * dp[1],
                                                        self.grid.cell_px ** 2 // (dp[0] * dp[1])):
                    raise EngineError("rt-attention arrays: the detector's unit space is for another grid or "
                                      "detect_parts setting")
        codes = arrays.get("classes")
        if codes is None or codes.ndim != 1:
            raise EngineError("rt-attention arrays: the class list is missing")
        self.classes = "".join(chr(int(c)) for c in codes).split("\n")
        n, k = self.good.standard.shape
        m = len(METRIC_SETS[self.config["metrics"]])
        self.modes = {}
        for name in self.classes[1:]:
            try:
                mode = ModeSpace(*(arrays[f"mode.{name}.{part}"] for part in ("standard", "mean", "whiten")))
            except KeyError as exc:
                raise EngineError(f"rt-attention arrays: {exc.args[0]} is missing") from None
            p = self.n_parts
            if mode.standard.shape != (n, k) or mode.mean.shape != (p, m) or mode.whiten.shape != (p, m, m):
                raise EngineError(f"rt-attention arrays: mode {name!r} has inconsistent shapes")
            self.modes[name] = mode
        if self.fallback:
            self.keys = self.key_labels = None
            return
        keys, key_labels = arrays.get("keys.tokens"), arrays.get("keys.labels")
        width = m * self.n_parts * len(self.standards) * len(CONTEXT[self.config["context"]])
        if keys is None or key_labels is None or keys.ndim != 2 or keys.shape[1] != width \
                or key_labels.shape != (len(keys),) or key_labels.min() < 0 or key_labels.max() >= len(self.classes):
            raise EngineError("rt-attention arrays: the reference cells are missing or of the wrong shape")
        self.keys, self.key_labels = keys, key_labels.astype(np.int64)
        self._set_shift(None, None, None)
        self.chroma_standard = None
        if int(self.config["shift_px"]) > 0:
            if "shift.keys" not in arrays:  # a recipe from before the displacement head: the RT head alone
                self.config["shift_px"] = 0
            else:
                sk, sl, sg = arrays["shift.keys"], arrays.get("shift.labels"), arrays.get("shift.good")
                w = self.shift_width
                if sl is None or sg is None or sk.ndim != 2 or sk.shape[1] != w or sl.shape != (len(sk),) \
                        or (len(sl) and (sl.min() < 1 or sl.max() >= len(self.classes))) \
                        or sg.ndim != 3 or sg.shape[1:] != (self.grid.n_cells, w) or not len(sg) \
                        or not (np.all(np.isfinite(sk)) and np.all(np.isfinite(sg))):
                    raise EngineError("rt-attention arrays: the displacement head's reference tokens are missing "
                                      "or of the wrong shape")
                self._set_shift(sk, sl.astype(np.int64), sg)
                if self.config["shift_token"] in CHROMA_TOKENS:
                    cs = arrays.get("shift.chroma")
                    if cs is None or cs.shape != (self.grid.n_cells, self.grid.cell_px ** 2) \
                            or not np.all(np.isfinite(cs)):
                        raise EngineError("rt-attention arrays: the displacement head's chroma standard is missing "
                                          "or of the wrong shape")
                    self.chroma_standard = cs.astype(np.float32)
        self.confusion = None
        conf = arrays.get("join.confusion")
        if conf is not None and self.config["join"] == "confusion" and self.shift_keys is not None:
            c = len(self.classes)
            if conf.shape != (2, c, c) or not np.all(np.isfinite(conf)) or conf.min() < 0 \
                    or not np.allclose(conf.sum(axis=-1), 1.0, atol=1e-3):
                raise EngineError(f"rt-attention arrays: the heads' confusion matrices must be (2, {c}, {c}) "
                                  "rows of probabilities")
            self.confusion = conf.astype(np.float64)
        self._prepare()
