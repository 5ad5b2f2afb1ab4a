"""From a score to a verdict: OK below the review threshold, NG at or above the NG threshold, REVIEW between."""

from __future__ import annotations

from enum import Enum

import numpy as np


NG_PLACEMENTS = ("midpoint", "balanced")  # where the NG threshold sits between the good and defect scores


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
                         escape_weight: float = 5.0, review_z: float = 0.0, ng_placement: str = "midpoint",
                         defect_labels: np.ndarray | None = None) -> tuple[float, float]:
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

    `ng_placement` "balanced" (with the classes apart): NG sits where a good part and a defect are equally
    many of their own class's standard deviations away (log scale, `balanced_ng`, per defect class of
    `defect_labels`), between REVIEW and the lowest defect, instead of halfway between the two extremes: two
    order statistics of a few held-out scores say little of the tails a new part is drawn from. REVIEW is
    the midpoint rule's, so no defect passes that it would have stopped.
    """
    good = np.sort(np.asarray(good, dtype=float))
    good = good[np.isfinite(good)]
    top_good = float(good[-1]) if good.size else 1.0
    review = top_good * 1.05 if top_good > 0 else 1e-9
    if defect is None or len(defect) == 0:
        ng = max(top_good * 1.5 if top_good > 0 else 1e-6, review)
    else:
        if ng_placement not in NG_PLACEMENTS:
            raise ValueError(f"ng_placement must be one of {NG_PLACEMENTS}, not {ng_placement!r}")
        labels = np.zeros(len(defect), dtype=int) if defect_labels is None else np.asarray(defect_labels)
        if labels.shape != (len(defect),):
            raise ValueError("defect_labels must give one label per defect score")
        order = np.argsort(np.asarray(defect, dtype=float), kind="stable")
        defect, labels = np.asarray(defect, dtype=float)[order], labels[order]
        if defect[0] > top_good:
            ng = float(np.sqrt(max(top_good, 1e-12) * defect[0]))
        else:
            candidates = np.unique(np.concatenate([good, defect]))
            costs = [escape_weight * np.mean(defect < t) + np.mean(good >= t) for t in candidates]
            ng = float(candidates[int(np.argmin(costs))])
        if ng_placement == "balanced" and defect[0] > top_good:
            balanced = balanced_ng(good, [defect[labels == c] for c in np.unique(labels)])
            if balanced is not None:  # REVIEW stays where the midpoint put it: only NG moves
                review = min(_review(good, review, review_z), ng)
                return review, float(min(max(balanced, review), defect[0]))
    return min(_review(good, review, review_z), ng), ng


def _review(good: np.ndarray, review: float, review_z: float) -> float:
    """REVIEW no lower than review_z standard deviations above the good scores' mean (log scale)."""
    if review_z > 0 and good.size > 2 and good[0] > 0:
        logs = np.log(good)
        review = max(review, float(np.exp(logs.mean() + review_z * logs.std(ddof=1))))
    return review


def _log_spread(scores: np.ndarray) -> tuple[float, float] | None:
    """(mean, sd) of the logarithms of the positive finite scores; None with fewer than 3 or no spread."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    if s.size < 3:
        return None
    logs = np.log(s)
    sd = float(logs.std(ddof=1))
    return (float(logs.mean()), sd) if sd > 0 else None


def balanced_ng(good: np.ndarray, defect_groups: list[np.ndarray]) -> float | None:
    """The score at which a good part and a defect of the nearest defect class are equally many of their own
    class's standard deviations away, in log scale: exp(mu_g + (mu_d - mu_g) * sd_g / (sd_g + sd_d)), the
    lowest over the classes. None when the good scores or every defect class are too few (under 3) to say."""
    g = _log_spread(good)
    if g is None:
        return None
    points = []
    for group in defect_groups:
        d = _log_spread(group)
        if d is not None and d[0] > g[0]:
            points.append(g[0] + (d[0] - g[0]) * g[1] / (g[1] + d[1]))
    return float(np.exp(min(points))) if points else None


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
