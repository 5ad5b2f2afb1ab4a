"""The RT-attention engine's displacement head: which way a cell's content moved against its good
standard (and how its contrast and colour changed), as class log-probabilities, joined with the
RT-token head's at the top cell."""

from __future__ import annotations

from typing import Any

import numpy as np

from station.core.engines.displacement import better_match, cell_contrast, cell_shifts, chroma
from station.core.engines.rt_attention.maths import logsumexp
from station.core.errors import EngineError

CHROMA_TOKENS = ("contrast+chroma", "contrast+best")  # the shift_token settings that read the chroma channel
CONTRAST_TOKENS = ("contrast",) + CHROMA_TOKENS  # those whose token holds the contrast changes
CONFUSION_PRIOR = 1.0  # pseudo-count spread over each row of a head's confusion matrix
ODDS_CLIP = 4.0  # how far (in log-odds) the class heads may move the verdict score, either way


class DisplacementHead:
    """The part of `RTAttentionEngine` that reads the displacement tokens, joins the two heads and
    scores the top cell; it reads the engine's config, grid, unit spaces, classes and reference tokens."""

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
            out[c] = logsumexp(-d2, 0) - np.log(len(keys)) - np.sum(np.log(scale)) - half_log_2pi
            if "modes" in model:
                mean, inv, logdet = model["good"][int(cell)] if c == 0 else model["modes"][c - 1]
                z = token - mean
                gauss = -0.5 * float(z @ inv @ z) - 0.5 * logdet - half_log_2pi
                out[c] = np.logaddexp(out[c], gauss) - np.log(2.0)
        return out - logsumexp(out, 0)

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
        return joint - logsumexp(joint, 0)

    def _score(self, d2_top: float, log_probs: np.ndarray) -> tuple[float, float]:
        """(verdict score, defect log-odds) at the top cell: the cell's RT distance, raised where the class
        heads say defect and lowered where they say good (odds_weight; clipped, so the heads can move it
        by at most e^(w * 4))."""
        odds = float(self.defect_odds(log_probs))
        w = float(self.config["odds_weight"])
        return float(d2_top) * float(np.exp(w * np.clip(np.nan_to_num(odds), -ODDS_CLIP, ODDS_CLIP))), odds

    def _top_heads(self, scaled: np.ndarray, vectors: np.ndarray | None = None, colour: np.ndarray | None = None):
        """The block detector's cell distances (n,), the most distant cell and the two heads' class
        log-probabilities there (the displacement head's None when it is off: they make the verdict score),
        and the pin with the heads' log-probabilities there (they name the pin and its class).

        The pin: the heads are read at the `top_cells` cells of largest distance and the pin is the one where
        they find the defect likeliest (defect log-odds, unclipped): a tilted pin's top leaning into the next
        cell can make that cell the more distant one, while the heads, fitted on the labelled cells, know the
        pin's own. The score stays the most distant cell's, so a defect no reference resembles is still
        judged by how unlike good it is."""
        vectors = self.vectors(scaled) if vectors is None else vectors
        d2 = np.nan_to_num(self.detect(scaled, vectors), nan=np.inf)
        kind = self.config["queries"]
        read = []  # (cell, rt, shift, defect log-odds), the most distant first
        for cell in np.argsort(-d2, kind="stable")[: int(self.config["top_cells"])]:
            cell = int(cell)
            rt = self._attend(self._top_query(vectors, cell, kind), kind, cells=np.array([cell]))[0][0]
            shift = self._shift_head(scaled, cell, colour)
            odds = float(np.nan_to_num(self.defect_odds(self._join(rt, shift)), nan=-np.inf))
            read.append((cell, rt, shift, odds))
        pin = max(read, key=lambda r: r[3])  # a tie keeps the more distant cell
        top = read[0]
        return d2, top[0], top[1], top[2], pin[0], pin[1], pin[2]

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

    def _colour(self, crop: np.ndarray) -> np.ndarray | None:
        """The crop's chroma channel where the displacement head reads it, else None."""
        return chroma(crop) if self.config["shift_token"] in CHROMA_TOKENS else None
