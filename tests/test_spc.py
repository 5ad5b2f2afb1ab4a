"""Per-pin SPC: EWMA limits from good parts' spread, a drift alarm on the pin that creeps (and only there),
quiet charts for a stable process, and the demo line's drifting pin."""

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from station.core.errors import StationError
from station.core.spc import PinSpc, SpcSettings, chart_rows, charted


def _good(rng, n, shape=(9, 3)):
    """Cell scores of good parts: log-normal around 1, as RT squared distances roughly are."""
    return np.exp(rng.normal(0.0, 0.5, (n, *shape)))


def test_the_limits_are_the_ewma_limits_from_the_good_parts_spread():
    rng = np.random.default_rng(0)
    base = _good(rng, 100)
    spc = PinSpc(SpcSettings(weight=0.1, width=4.0, baseline_parts=100))
    for cells in base:
        spc.add(cells, ok=True)
    assert spc.ready
    logs = np.log10(base)
    np.testing.assert_allclose(spc.centre, logs.mean(0))
    np.testing.assert_allclose(spc.sigma, logs.std(0, ddof=1))
    first = spc.centre + 4.0 * spc.sigma * math.sqrt(0.1 / 1.9 * (1 - 0.9 ** 2))
    steady = spc.centre + 4.0 * spc.sigma * math.sqrt(0.1 / 1.9)
    np.testing.assert_allclose(spc.upper_limit(0), first)
    np.testing.assert_allclose(spc.upper_limit(10_000), steady)


def test_a_stable_process_stays_quiet_and_a_creeping_pin_alarms_before_it_fails():
    rng = np.random.default_rng(1)
    spc = PinSpc()
    for cells in _good(rng, 200):
        spc.add(cells, ok=True)
    quiet = [a for cells in _good(rng, 3000) for a in spc.add(cells, ok=True)]
    assert quiet == []
    textbook = PinSpc(SpcSettings(weight=0.2, width=3.0, baseline_parts=30, hold_parts=1))
    assert sum(len(textbook.add(cells, ok=True)) for cells in _good(np.random.default_rng(1), 3030)) > 50
    ng_threshold = 10.0  # the score at which this pin's part would be NG
    alarm, failed_at = None, None
    for i, cells in enumerate(_good(rng, 400)):
        cells[4, 1] *= 1.0 + i * 0.02  # the pin at col 1, row 4 creeps up by 2 % per part
        if failed_at is None and cells[4, 1] >= ng_threshold:
            failed_at = i
        raised = spc.add(cells, ok=cells[4, 1] < ng_threshold)
        alarm = alarm or next((a for a in raised if a.cell == (1, 4)), None)
    assert alarm is not None and failed_at is not None
    assert alarm.part - 3200 < failed_at  # warned before the first failing part
    assert "pin 1,4 drifting toward NG" in alarm.describe()
    assert replace(alarm, unit="cell").describe().startswith("cell 1,4 drifting toward NG")  # a free-form part
    assert (1, 4) in spc.alarmed_cells() and spc.status()[4, 1] > 1


def test_only_ok_parts_set_the_limits_and_a_cell_without_a_score_keeps_its_ewma():
    rng = np.random.default_rng(2)
    spc = PinSpc(SpcSettings(baseline_parts=10))
    for cells in _good(rng, 9):
        spc.add(cells, ok=True)
    spc.add(np.full((9, 3), 1e6), ok=False)  # an NG part does not widen the good spread
    assert not spc.ready and spc.baseline_count == 9
    spc.add(_good(rng, 1)[0], ok=True)
    assert spc.ready and np.all(spc.centre < 1)
    before = spc._z.copy()
    cells = _good(rng, 1)[0]
    cells[0, 0] = np.nan
    spc.add(cells, ok=True)
    assert spc._z[0, 0] == before[0, 0] and spc._z[1, 1] != before[1, 1]


def test_another_grid_starts_the_charts_afresh_and_odd_input_is_ignored():
    spc = PinSpc(SpcSettings(baseline_parts=5))
    for _ in range(6):
        spc.add(np.ones((9, 3)), ok=True)
    assert spc.ready
    spc.add(np.ones((4, 4)), ok=True)
    assert not spc.ready and spc.shape == (4, 4)
    assert spc.add(None, ok=True) == [] and spc.add(np.ones(5), ok=True) == []
    assert spc.add(np.ones((2000, 2)), ok=True) == []  # more cells than any grid has
    assert np.isnan(charted(np.array([[0.0, np.inf]])))[0, 1] and charted(np.array([[0.0]]))[0, 0] == -6


def test_charts_keep_the_last_parts_in_a_fixed_block_of_memory():
    """A chart held 3 Python floats per cell and part (13 MB for 5000 parts of 27 pins, grown over the first
    minutes of a shift): now one preallocated block, the same whatever the number of parts."""
    import tracemalloc

    rng = np.random.default_rng(3)
    spc = PinSpc(SpcSettings(baseline_parts=20), history=50)
    parts = _good(rng, 200)
    for cells in parts[:120]:
        spc.add(cells, ok=True)
    chart = spc.charts[(2, 8)]
    assert len(chart.ewma) == len(chart.values) == len(chart.upper) == 50
    np.testing.assert_allclose(chart.values, np.log10(parts[70:120, 8, 2]), rtol=1e-6)
    assert chart.ewma[-1] == pytest.approx(spc._z[8, 2], rel=1e-6)
    assert np.all(np.diff(chart.upper) >= -1e-6)  # the limit widens toward its steady value
    assert set(spc.charts) == {(c, r) for r in range(9) for c in range(3)} and len(spc.charts) == 27
    with pytest.raises(KeyError):
        spc.charts[(3, 0)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for cells in parts[120:]:
            spc.add(cells, ok=True)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000  # 80 parts x 27 cells x 3 floats in deques: about 200 kB


@pytest.mark.parametrize("bad", [dict(weight=0), dict(weight=1.5), dict(width=-1), dict(width=float("nan")),
                                 dict(baseline_parts=2), dict(hold_parts=0)])
def test_bad_settings_are_one_line(bad):
    with pytest.raises(StationError):
        SpcSettings(**bad)


def test_charts_from_logged_rows_skip_damaged_entries():
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 11, 30, 6, tzinfo=timezone.utc)
    rows = []
    for i, cells in enumerate(_good(rng, 300)):
        if i >= 250:
            cells[2, 0] *= 50  # a pin that went bad at the end of the shift
        rows.append(SimpleNamespace(cell_scores=json.dumps(cells.round(4).tolist()), verdict="OK",
                                    time=t0 + timedelta(seconds=i)))
    rows.insert(5, SimpleNamespace(cell_scores="[[1, 2", verdict="OK", time=t0))  # damaged: not charted
    rows.insert(6, SimpleNamespace(cell_scores=None, verdict="OK", time=t0))  # an older row without cells
    series = chart_rows(rows)
    assert series is not None and series.ewma.shape == (100, 9, 3) == series.upper.shape
    assert {a.cell for a in series.alarms} == {(0, 2)}
    assert series.alarms[0].time >= t0 + timedelta(seconds=250)
    assert chart_rows(rows[:150]) is None  # not enough good parts for limits


def test_the_demo_lines_drifting_pin_fades_only_inside_its_cell():
    from station.core.drift_source import DriftingPinSource
    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe

    recipe = Recipe.load(bundled_recipe("rt"))
    source = DriftingPinSource(recipe, cell=(1, 4), start=2, ramp=4)
    assert [source.weight(i) for i in (0, 2, 4, 6, 9)] == [0, 0, 0.5, 1, 1]
    source.open()
    plain = DriftingPinSource(recipe, cell=(1, 4), start=10**6, ramp=1)
    plain.open()
    frames = [(source.read().image, plain.read().image) for _ in range(7)]
    assert np.array_equal(*frames[0])  # before the drift starts
    faded, original = frames[6]
    changed = np.any(faded != original, axis=2)
    ys, xs = np.nonzero(changed)
    assert 50 < changed.sum() < 0.02 * changed.size  # one cell's worth of pixels, not the part
    assert np.ptp(xs) < 40 and np.ptp(ys) < 40
    assert faded[changed].mean() < original[changed].mean()  # the pin darkens into the housing
    with pytest.raises(StationError, match="outside"):
        DriftingPinSource(recipe, cell=(3, 0))
