"""Where the NG threshold sits between the held-out good and defect scores (`ng_placement`)."""

from __future__ import annotations

import numpy as np
import pytest

from station.core.engines.rt_attention import RTAttentionEngine
from station.core.errors import EngineError
from station.core.grid import CellGrid
from station.core.verdict import balanced_ng, calibrate_thresholds

GRID = CellGrid(3, 9)


def _log_normal(mu: float, sd: float, n: int, seed: int) -> np.ndarray:
    """n scores whose logarithms have exactly mean mu and standard deviation sd (ddof 1)."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return np.exp(mu + sd * z)


def test_balanced_ng_is_where_good_and_the_nearest_defect_class_are_equally_many_sds_away():
    good = _log_normal(0.0, 0.5, 20, 0)
    near = _log_normal(4.0, 1.5, 20, 1)  # wide: its lower tail reaches down
    far = _log_normal(7.0, 0.5, 20, 2)
    # log t = 0 + (4 - 0) * 0.5 / (0.5 + 1.5) = 1.0 for the near class; 3.5 for the far one
    assert balanced_ng(good, [near, far]) == pytest.approx(np.e)
    assert balanced_ng(good, [far]) == pytest.approx(np.exp(3.5))
    assert balanced_ng(good[:2], [near]) is None  # too few good scores to know their spread
    assert balanced_ng(good, [near[:2]]) is None


def test_balanced_ng_moves_only_ng_and_stays_between_review_and_the_lowest_defect():
    good = _log_normal(0.0, 0.2, 20, 3)
    near = _log_normal(4.0, 0.8, 20, 4)
    far = _log_normal(7.0, 0.5, 20, 5)
    defect = np.concatenate([near, far])
    labels = np.repeat([1, 2], 20)
    assert good.max() < defect.min()  # the classes are apart, as on the demo
    review, ng = calibrate_thresholds(good, defect, review_z=2.58)
    assert ng == pytest.approx(np.sqrt(good.max() * defect.min()))  # the default: halfway between the extremes
    review_b, ng_b = calibrate_thresholds(good, defect, review_z=2.58, ng_placement="balanced",
                                          defect_labels=labels)
    assert review_b == pytest.approx(review)  # REVIEW is the midpoint rule's: no defect passes that it stopped
    expect = np.exp(0.0 + 4.0 * 0.2 / (0.2 + 0.8))
    assert review < expect < defect.min() and ng_b == pytest.approx(expect)
    assert ng_b != pytest.approx(ng)  # the case it is for: the two extremes put NG elsewhere
    # pooled, the two defect classes look like one wide class: labels matter
    assert calibrate_thresholds(good, defect, review_z=2.58, ng_placement="balanced")[1] != pytest.approx(ng_b)
    # a balanced point below REVIEW gives NG at REVIEW; above the lowest defect, NG at that defect
    scattered = np.exp([0.6, 0.7, 10.0, 12.0, 15.0])  # just above the good scores, and far
    r_low, ng_low = calibrate_thresholds(good, scattered, review_z=2.58, ng_placement="balanced")
    assert balanced_ng(good, [scattered]) < r_low
    assert ng_low == pytest.approx(r_low) and r_low == pytest.approx(calibrate_thresholds(good, scattered, review_z=2.58)[0])
    one_high = np.exp([0.0, 0.0, 0.0, 0.0, 2.5])  # a good part far out; one defect just above it
    bunched = np.exp([2.6] + [3.2] * 10)
    assert balanced_ng(one_high, [bunched]) > bunched.min()
    assert calibrate_thresholds(one_high, bunched, ng_placement="balanced")[1] == pytest.approx(bunched.min())
    # classes that overlap keep the cost-minimising threshold
    overlap = np.concatenate([good[-3:], near])
    assert (calibrate_thresholds(good, overlap, ng_placement="balanced")
            == pytest.approx(calibrate_thresholds(good, overlap)))
    with pytest.raises(ValueError, match="ng_placement"):
        calibrate_thresholds(good, defect, ng_placement="halfway")


def test_rt_attention_places_ng_by_the_classes_spread_and_old_recipes_keep_the_midpoint(monkeypatch):
    from station.core.engines.rt_attention import engine as module

    from test_rt_attention import training_set  # the drawn connector crops of the engine tests

    assert RTAttentionEngine(GRID).config["ng_placement"] == "balanced"
    assert RTAttentionEngine.from_saved(GRID, {}).config["ng_placement"] == "midpoint"  # a recipe without the key
    with pytest.raises(EngineError, match="ng_placement"):
        RTAttentionEngine(GRID, {"ng_placement": "halfway"})
    seen = {}

    def spy(good, defect, **kwargs):
        seen.update(kwargs, good=good, defect=defect)
        return calibrate_thresholds(good, defect, **kwargs)

    monkeypatch.setattr(module, "calibrate_thresholds", spy)
    data = training_set({"good": 8, "pushed": 4, "tilted": 4, "missing": 4})
    report = RTAttentionEngine(GRID).fit(data)
    assert seen["ng_placement"] == "balanced"
    classes = data.classes
    named = [classes[int(c)] for c in seen["defect_labels"]]
    assert sorted(named) == sorted(lab for lab in data.labels if lab != "good")  # one label per defect score
    assert report.thresholds == pytest.approx(calibrate_thresholds(
        seen["good"], seen["defect"], review_z=2.58, ng_placement="balanced", defect_labels=seen["defect_labels"]))
