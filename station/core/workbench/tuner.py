"""The threshold tuner: score a validation set once, then re-threshold the cached scores on every slider move.

Rates come from `station.core.evaluate.summarize`, the function `station eval` uses, so the tuner
and `station eval` report the same escape, false-reject and review rates for the same recipe, data
and thresholds. An escape is a defective part passed as OK, i.e. a defect scored below the
*review* threshold (a REVIEW part is not passed), so the target escape rate places the review
threshold; the NG threshold is then kept at or above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from station.core.dataset import Dataset
from station.core.engines.base import ok_first
from station.core.errors import StationError
from station.core.evaluate import summarize, true_cell
from station.core.imageio import read_image
from station.core.inspector import NO_PART, Inspector
from station.core.recipe import Recipe, Thresholds
from station.core.verdict import Verdict, calibrate_thresholds, decide, decide_cells
from station.core.workbench.errors import WorkbenchError

Progress = Callable[[str, float], None]


# -- exact binomial confidence bound ---------------------------------------------------------------
def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space so large n does not underflow."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float | None:
    """One-sided exact (Clopper-Pearson) upper bound on a rate seen as k events in n trials.

    The p at which seeing k or fewer events has probability 1 - confidence (bisection on the
    binomial CDF, which falls monotonically in p). 0 of 30 at 95% gives 0.0950.
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise WorkbenchError(f"{k} events in {n} trials is not a rate")
    if not 0.0 < confidence < 1.0:
        raise WorkbenchError("the confidence level must be between 0 and 1")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = k / n, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


# -- scoring once ----------------------------------------------------------------------------------
@dataclass
class ScoredSet:
    """Per-image results of one recipe on a validation set, everything re-thresholding needs."""

    paths: list[Path]
    labels: list[str]
    scores: np.ndarray  # (N,) image scores; inf where no part was found
    cell_scores: np.ndarray  # (N, rows, cols); NaN where no part was found
    class_probs: list[dict[str, float] | None]
    no_part: np.ndarray  # (N,) bool: always NG, whatever the thresholds
    top_cells: list[tuple[int, int] | None]
    true_cells: list[tuple[int, int] | None]
    ok_class: str
    recipe_hash: str
    thresholds: tuple[float, float]  # the recipe's own, as scored
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return ok_first(self.labels, self.ok_class)

    @property
    def is_good(self) -> np.ndarray:
        return np.array([lab == self.ok_class for lab in self.labels], dtype=bool)

    # -- verdicts at given thresholds --------------------------------------------------------------
    def verdicts(self, review: float, ng: float, cell_thresholds: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> list[Verdict]:
        """What the station would say at these thresholds (the same rule as `Inspector.inspect`).

        With `cell_thresholds` = (review, ng) arrays of the grid's shape, each cell is judged on its
        own threshold and the image takes its worst cell (NG > REVIEW > OK).
        """
        _check_pair(review, ng)
        if cell_thresholds is None:
            out = [Verdict.NG if bad else decide(float(s), review, ng) for s, bad in zip(self.scores, self.no_part)]
            return out
        cell_review, cell_ng = (np.asarray(a, dtype=float) for a in cell_thresholds)
        shape = self.cell_scores.shape[1:]
        if cell_review.shape != shape or cell_ng.shape != shape:
            raise WorkbenchError(f"per-cell thresholds must be {shape[1]} x {shape[0]} (the recipe's grid)")
        if np.any(cell_review > cell_ng) or not (np.all(np.isfinite(cell_review)) and np.all(np.isfinite(cell_ng))):
            raise WorkbenchError("every cell's review threshold must be finite and not above its NG threshold")
        return [Verdict.NG if bad else decide_cells(cells, cell_review, cell_ng)
                for cells, bad in zip(self.cell_scores, self.no_part)]

    def predicted(self, verdicts: list[Verdict]) -> list[str]:
        """The class `station eval` would record for each image (the Inspector's labelling rule)."""
        out = []
        for v, probs, bad in zip(verdicts, self.class_probs, self.no_part):
            if v is Verdict.REVIEW:
                out.append("review")
            elif bad:
                out.append(NO_PART)
            elif v is Verdict.OK:
                out.append(self.ok_class)
            else:
                defects = {k: p for k, p in (probs or {}).items() if k != self.ok_class}
                out.append(max(defects, key=defects.get) if defects else "defect")
        return out

    def summary(self, review: float, ng: float, cell_thresholds=None, confidence: float = 0.95) -> dict[str, Any]:
        """`station eval`'s figures at these thresholds, plus counts and the escape rate's upper bound."""
        verdicts = self.verdicts(review, ng, cell_thresholds)
        out = summarize(self.labels, self.predicted(verdicts), verdicts, list(self.scores), self.ok_class,
                        self.top_cells, self.true_cells)
        good = self.is_good
        v = np.array([x.value for x in verdicts])
        n_escapes = int(np.sum(~good & (v == Verdict.OK.value)))
        n_false_rejects = int(np.sum(good & (v != Verdict.OK.value)))
        n_defect, n_good = int((~good).sum()), int(good.sum())
        out.update({
            "thresholds": {"review": float(review), "ng": float(ng)},
            "per_cell": cell_thresholds is not None,
            "n_defect": n_defect, "n_good": n_good,
            "n_escapes": n_escapes, "n_false_rejects": n_false_rejects,
            "n_review": int(np.sum(v == Verdict.REVIEW.value)), "n_ng": int(np.sum(v == Verdict.NG.value)),
            "escape_rate_upper": clopper_pearson_upper(n_escapes, n_defect, confidence),
            "false_reject_rate_upper": clopper_pearson_upper(n_false_rejects, n_good, confidence),
            "confidence": confidence,
            "recipe_hash": self.recipe_hash,
        })
        return out

    def rates(self, review: float, ng: float, confidence: float = 0.95) -> dict[str, Any]:
        """The few figures a slider move needs, computed with numpy only (microseconds for thousands of images).

        Equal to `summary(...)`'s rates (a test checks it); use this on every slider move and
        `summary` when the engineer stops dragging.
        """
        _check_pair(review, ng)
        s = self.scores
        finite = np.isfinite(s) & ~self.no_part
        ok = finite & (s < review)
        review_band = (~self.no_part & ~np.isfinite(s)) | (finite & (s >= review) & (s < ng))
        good = self.is_good
        n_defect, n_good, n = int((~good).sum()), int(good.sum()), len(s)
        k_esc, k_fr = int(np.sum(ok & ~good)), int(np.sum(~ok & good))
        return {
            "escape_rate": k_esc / n_defect if n_defect else None,
            "escape_rate_upper": clopper_pearson_upper(k_esc, n_defect, confidence),
            "false_reject_rate": k_fr / n_good if n_good else None,
            "review_rate": int(review_band.sum()) / n if n else None,
            "n_escapes": k_esc, "n_defect": n_defect, "n_false_rejects": k_fr, "n_good": n_good,
        }

    # -- plots -----------------------------------------------------------------------------------
    def histograms(self, bins: int = 40, log: bool | None = None) -> dict[str, Any]:
        """Score histograms per class on shared bin edges: {'edges': (bins+1,), 'counts': {class: (bins,)},
        'log': bool, 'not_scored': {class: count}}. Log-spaced when scores span decades (RT distances)."""
        finite = np.isfinite(self.scores) & ~self.no_part
        values = self.scores[finite]
        if values.size == 0:
            raise WorkbenchError("no image of the validation set has a usable score")
        lo, hi = float(values.min()), float(values.max())
        if log is None:
            log = lo > 0 and hi / lo > 100
        if log:
            edges = np.geomspace(lo, hi * (1 + 1e-9), bins + 1)
        else:
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        labels = np.array(self.labels)
        counts = {c: np.histogram(self.scores[finite & (labels == c)], edges)[0] for c in self.classes}
        not_scored = {c: int(np.sum(~finite & (labels == c))) for c in self.classes}
        return {"edges": edges, "counts": counts, "log": bool(log), "not_scored": not_scored}

    def roc(self) -> dict[str, np.ndarray]:
        """ROC points of "not OK" (score >= t) against the labels, one per distinct score, from (0,0) to (1,1).

        `fpr` = false-reject rate, `tpr` = 1 - escape rate, `thresholds[i]` the review threshold giving point i.
        """
        good = self.is_good
        if good.all() or (~good).all():
            raise WorkbenchError("an ROC curve needs both good and defect images in the validation set")
        # no part, NaN or infinite scores are never passed as OK: they rank above every threshold
        s = np.where(self.no_part | ~np.isfinite(self.scores), np.inf, self.scores)
        cuts = np.unique(s[np.isfinite(s)])[::-1]
        thresholds = np.concatenate([[np.inf], cuts, [-np.inf]])
        flagged = s[None, :] >= thresholds[:, None]
        tpr = flagged[:, ~good].mean(axis=1)
        fpr = flagged[:, good].mean(axis=1)
        return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}

    # -- placing thresholds ------------------------------------------------------------------------
    def review_for_escape_rate(self, target: float, on: Literal["upper", "point"] = "upper",
                               confidence: float = 0.95) -> dict[str, Any]:
        """The highest review threshold whose escape rate meets `target`.

        `on="upper"`: the Clopper-Pearson upper bound at `confidence` must be <= target (what can
        be promised from this many defect images). `on="point"`: the observed escape rate must be
        <= target. The threshold sits halfway across the score gap below the first defect it must
        catch, so that nearby scores fall the same way. Returns {'review', 'met', 'allowed_escapes',
        'message', and the rates at that threshold}; when no threshold can meet the target (too few
        defect images for the bound) 'met' is False and 'review' is the threshold that lets no defect pass.
        """
        if not 0.0 <= target < 1.0:
            raise WorkbenchError("the target escape rate must be between 0 and 1")
        if on not in ("upper", "point"):
            raise WorkbenchError("the target is met either on the 'upper' bound or on the 'point' estimate")
        good = self.is_good
        usable = np.isfinite(self.scores) & ~self.no_part
        defect = np.sort(self.scores[~good & usable])
        n_defect = int((~good).sum())
        if n_defect == 0:
            raise WorkbenchError("the validation set has no defect images: escape rates cannot be measured")
        allowed = -1
        for k in range(n_defect + 1):
            rate = clopper_pearson_upper(k, n_defect, confidence) if on == "upper" else k / n_defect
            if rate <= target + 1e-12:
                allowed = k
            else:
                break
        met = allowed >= 0
        k = max(allowed, 0)
        if k >= defect.size:  # every defect with a finite score may pass: the threshold is not bound by defects
            above = float(np.max(self.scores[usable])) if usable.any() else 0.0
            review = _next_up(above)
        else:
            catch = float(defect[k])
            below = self.scores[usable & (self.scores < catch)]
            review = 0.5 * (float(below.max()) + catch) if below.size else catch
        ng = max(review, self.thresholds[1])
        out = {"review": review, "ng": ng, "met": met, "on": on, "target": target, "allowed_escapes": k,
               **self.rates(review, ng, confidence)}
        if met:
            out["message"] = (f"review threshold {review:.6g}: {out['n_escapes']} of {n_defect} defects pass "
                              f"(upper {100 * out['escape_rate_upper']:.2f}% at {100 * confidence:.0f}%)")
        else:
            best = clopper_pearson_upper(0, n_defect, confidence)
            out["message"] = (f"with {n_defect} defect images the best provable escape rate is {100 * best:.2f}% "
                              f"(no escape seen); capture more defect images to promise {100 * target:.2f}%")
        return out


    def suggest_cell_thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell (review, ng) arrays, each cell calibrated like the recipe's own thresholds
        (`calibrate_thresholds`) on its good scores and on the defect images labelled at that cell."""
        good = self.is_good & ~self.no_part
        rows, cols = self.cell_scores.shape[1:]
        review, ng = np.zeros((rows, cols)), np.zeros((rows, cols))
        for r in range(rows):
            for c in range(cols):
                g = self.cell_scores[good, r, c]
                d = np.array([cells[r, c] for cells, lab, tc, bad in
                              zip(self.cell_scores, self.labels, self.true_cells, self.no_part)
                              if lab != self.ok_class and tc == (c, r) and not bad])
                g, d = g[np.isfinite(g)], d[np.isfinite(d)] if d.size else d
                if g.size == 0:
                    raise WorkbenchError(f"cell {(c, r)} has no usable good score: per-cell thresholds "
                                         "need good images")
                review[r, c], ng[r, c] = calibrate_thresholds(g, d if d.size else None)
        return review, ng


def _next_up(x: float) -> float:
    return float(np.nextafter(x, np.inf)) if x != 0 else 1e-12


def _check_pair(review: float, ng: float) -> None:
    if not (np.isfinite(review) and np.isfinite(ng)):
        raise WorkbenchError("thresholds must be finite numbers")
    if review > ng:
        raise WorkbenchError("the review threshold must not exceed the NG threshold")


def score_dataset(recipe: Recipe, data: Dataset, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> ScoredSet:
    """Inspect every image of `data` once with `recipe` (the same steps as `station eval`) and cache the results.

    `progress(message, fraction)` is called per image; `should_stop()` returning True cancels
    (raises WorkbenchError). Run it in a worker thread: this is the slow part.
    """
    if not data.samples:
        raise WorkbenchError(f"the validation set {data.root} has no images")
    inspector = Inspector(own_copy(recipe))  # the line may be running this recipe's engine meanwhile
    rows, cols = recipe.grid.rows, recipe.grid.cols
    n = len(data.samples)
    scores = np.empty(n)
    cell_scores = np.full((n, rows, cols), np.nan)
    no_part = np.zeros(n, dtype=bool)
    probs, top_cells, true_cells = [], [], []
    for i, sample in enumerate(data.samples):
        if should_stop is not None and should_stop():
            raise WorkbenchError("scoring the validation set was cancelled")
        image = read_image(sample.path)
        result = inspector.inspect(image)
        scores[i] = result.score
        no_part[i] = result.label == NO_PART and result.registered is None
        if result.cell_scores is not None:
            cell_scores[i] = result.cell_scores
        probs.append(result.class_probs)
        top_cells.append(result.top_cell)
        true_cells.append(true_cell(inspector, sample, result, image.shape[:2]))
        if progress is not None:
            progress(f"scored {sample.path.name}", (i + 1) / n)
    return ScoredSet([s.path for s in data.samples], [s.label for s in data.samples], scores, cell_scores, probs,
                     no_part, top_cells, true_cells, recipe.doc.ok_class, recipe.content_hash, recipe.thresholds)


def own_copy(recipe: Recipe) -> Recipe:
    """`recipe` with an engine of its own, unless the engine says one instance may serve two threads."""
    if recipe.engine.capabilities.thread_safe:
        return recipe
    return Recipe(recipe.doc, recipe.region, recipe.engine.copy(), recipe.path)


def with_thresholds(recipe: Recipe, review: float, ng: float, note: str = "",
                    cell_thresholds: tuple[np.ndarray, np.ndarray] | None = None) -> Recipe:
    """A copy of `recipe` (same engine and region) with new thresholds, unsaved: save it as a new version."""
    cells = {} if cell_thresholds is None else {
        "cell_review": np.asarray(cell_thresholds[0], dtype=float).tolist(),
        "cell_ng": np.asarray(cell_thresholds[1], dtype=float).tolist()}
    try:
        thresholds = Thresholds(review=float(review), ng=float(ng), **cells)
    except (ValueError, StationError) as exc:
        raise WorkbenchError(f"thresholds {review:g} / {ng:g} are not usable: review must not exceed NG") from exc
    provenance = {**recipe.doc.provenance, "thresholds_from": {
        "recipe_hash": recipe.content_hash, "old": list(recipe.thresholds), "note": note}}
    doc = recipe.doc.model_copy(update={"thresholds": thresholds, "provenance": provenance, "content_hash": ""})
    return Recipe(doc, recipe.region, recipe.engine, None)
