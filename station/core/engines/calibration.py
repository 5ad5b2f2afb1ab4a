"""Held-out good scores for calibration, with the far outliers set aside: one odd good image among
hundreds (a smudge on the lens, a part photographed twice) must not lift the thresholds above every defect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from station.core.verdict import calibrate_thresholds

OUTLIER_MADS = 3.0  # robust z beyond which a held-out good score is set aside (log scale)


def without_outliers(scores: np.ndarray, min_kept: int = 10) -> tuple[np.ndarray, int]:
    """(the scores within OUTLIER_MADS robust deviations of their median in log scale, how many were set
    aside); all of them when there are too few to judge or the spread is nil."""
    s = np.asarray(scores, dtype=float)
    finite = s[np.isfinite(s) & (s > 0)]
    if finite.size < min_kept:
        return s, 0
    logs = np.log(finite)
    med = float(np.median(logs))
    mad = float(np.median(np.abs(logs - med))) * 1.4826
    if mad <= 0:
        return s, 0
    bound = float(np.exp(med + OUTLIER_MADS * mad))
    far = np.isfinite(s) & (s > bound)
    return s[~far], int(far.sum())


def good_ng_rate(good_scores: np.ndarray, ng: float) -> float:
    """The share of held-out good scores at or above the NG threshold: good parts the recipe would stop."""
    good = np.asarray(good_scores, dtype=float)
    return float(np.mean(good >= ng)) if good.size else 0.0


def held_out_thresholds(held_out: np.ndarray,
                        defect_scores: np.ndarray) -> tuple[tuple[float, float], dict[str, Any]]:
    """(review, NG) thresholds from held-out good scores (far outliers set aside) and any defect scores, with
    what a fit report says of them."""
    kept, set_aside = without_outliers(held_out)
    thresholds = calibrate_thresholds(kept, defect_scores)
    return thresholds, {
        "held_out_good_max": float(kept.max()), "held_out_good_set_aside": set_aside,
        "held_out_good_ng_rate": good_ng_rate(kept, thresholds[1]),
        "defect_min": float(defect_scores.min()) if defect_scores.size else None}


def camera_step(measure: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """How far `measure` (uint8 crops to an array per crop) moves when the camera reads every pixel one grey level
    brighter or darker, whichever moves it more, averaged over the crops (`measured`: measure(crops), already
    computed). Added to a good part's spread, no quantity is trusted to be steadier than the camera can tell."""
    moved = [np.abs(measure(np.clip(crops.astype(np.int16) + d, 0, 255).astype(np.uint8)) - measured)
             for d in (1, -1)]
    return np.maximum(*moved).mean(axis=0)
