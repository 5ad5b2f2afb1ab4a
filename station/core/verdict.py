"""From a score to a verdict: OK below the review threshold, NG at or above the NG threshold, REVIEW between."""

from __future__ import annotations

from enum import Enum

import numpy as np


class Verdict(str, Enum):
    OK = "OK"
    NG = "NG"
    REVIEW = "REVIEW"


def decide(score: float, review: float, ng: float) -> Verdict:
    if not np.isfinite(score):
        return Verdict.REVIEW  # a score we cannot trust is never passed as OK
    if score >= ng:
        return Verdict.NG
    if score >= review:
        return Verdict.REVIEW
    return Verdict.OK


def calibrate_thresholds(good: np.ndarray, defect: np.ndarray | None = None,
                         escape_weight: float = 5.0, review_z: float = 0.0) -> tuple[float, float]:
    """(review, ng) thresholds from held-out good scores and, where there are any, defect scores.

    Without defects the NG threshold sits 50% above the highest held-out good score. With defects
    it is the point that minimises the escape rate (weighted) plus the false-reject rate, placed halfway
    (in log space) across the gap when the classes separate. Rates, not counts: a training set with
    three defect images per good one must not buy one more caught defect with three more good parts
    rejected. REVIEW starts just above the good scores, so
    a part that looks unlike every good part seen is never passed silently. With review_z > 0 it
    starts no lower than z standard deviations above the mean of the good scores' logarithms (a
    log-normal tail): the highest of 20 held-out good scores is only about their 95th percentile, so
    1 good part in 20 would go to REVIEW; never above the NG threshold.
    """
    good = np.sort(np.asarray(good, dtype=float))
    good = good[np.isfinite(good)]
    top_good = float(good[-1]) if good.size else 1.0
    review = top_good * 1.05 if top_good > 0 else 1e-9
    if defect is None or len(defect) == 0:
        ng = max(top_good * 1.5 if top_good > 0 else 1e-6, review)
    else:
        defect = np.sort(np.asarray(defect, dtype=float))
        if defect[0] > top_good:
            ng = float(np.sqrt(max(top_good, 1e-12) * defect[0]))
        else:
            candidates = np.unique(np.concatenate([good, defect]))
            costs = [escape_weight * np.mean(defect < t) + np.mean(good >= t) for t in candidates]
            ng = float(candidates[int(np.argmin(costs))])
    if review_z > 0 and good.size > 2 and good[0] > 0:
        logs = np.log(good)
        review = max(review, float(np.exp(logs.mean() + review_z * logs.std(ddof=1))))
    return min(review, ng), ng


def decide_cells(cell_scores: np.ndarray, cell_review: np.ndarray, cell_ng: np.ndarray) -> Verdict:
    """Per-cell thresholds: each cell judged on its own, the image takes its worst cell
    (NG > REVIEW > OK); a cell whose score is not finite is never passed."""
    cells = np.asarray(cell_scores, dtype=float)
    untrusted = ~np.isfinite(cells)
    if np.any((cells >= cell_ng) & ~untrusted):
        return Verdict.NG
    if np.any(untrusted) or np.any(cells >= cell_review):
        return Verdict.REVIEW
    return Verdict.OK
