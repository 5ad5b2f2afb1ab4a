"""The RT-attention engine's RT-token head: each cell's RT metrics against every mode's standard,
whitened into a token, and the token's attention over the reference cells of every class."""

from __future__ import annotations

import numpy as np

from station.core.engines.rt_attention.maths import logsumexp
from station.core.errors import EngineError
from station.core.engines.rt import METRIC_SETS, rt_metrics

CONTEXT = {"cell": [(0, 0)], "column": [(0, -1), (0, 0), (0, 1)],
           "neighbours": [(dc, dr) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]}


class RTTokenHead:
    """The part of `RTAttentionEngine` that makes cell tokens and attends with them; it reads the
    engine's config, grid, unit spaces and reference cells."""

    # -- tokens ----------------------------------------------------------------------------
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
        per_class[..., 0] = logsumexp(good, -1)
        logits = np.einsum("...d,dk->...k", q, kd) + bd
        if logits.shape[-1]:
            top = np.maximum.reduceat(logits, starts, axis=-1)  # (..., n_present)
            # terms below e^-60 of their class's largest change nothing and would only cost denormals
            sums = np.add.reduceat(np.exp(np.maximum(logits - top[..., seg], -60.0)), starts, axis=-1)
            per_class[..., present] = np.log(sums) + top
        log_probs = per_class - logsumexp(per_class, -1)[..., None]
        if not weights:
            return log_probs, None
        both = np.concatenate([good, logits], axis=-1)  # good keys (own position where so), then defect keys
        return log_probs, np.exp(both - logsumexp(both, -1)[..., None])

    @staticmethod
    def defect_odds(log_probs: np.ndarray) -> np.ndarray:
        """log(p(defect) / p(good)) per cell: the cell score, unbounded and free of ties at 0 and 1."""
        return logsumexp(log_probs[..., 1:], -1) - log_probs[..., 0]
