"""Measuring the line: per-stage latencies over a bounded window that does not grow memory as it fills."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from station.core.live_measure import BENCH_WINDOW_MAX_S, MAX_STAGES, STAGES, StageTimes, bench_window


def test_stage_times_keep_the_last_window_and_answer_as_numpy_would():
    times = StageTimes(maxlen=100)
    values = np.random.default_rng(1).gamma(2.0, 5.0, 350)
    for v in values:
        times.add("engine", v)
    kept = values[-100:]
    p = times.percentiles()["engine"]
    assert p["n"] == 100
    for q in (50, 95, 99):
        assert p[f"p{q}"] == pytest.approx(round(float(np.percentile(kept, q)), 3))
    assert times.median("engine", 30) == pytest.approx(float(np.median(values[-30:])))
    assert times.last("engine") == pytest.approx(values[-1])
    assert times.last("display") is None and times.median("display") is None and "display" not in times.percentiles()
    times.reset()
    assert times.percentiles() == {} and times.last("engine") is None
    times.add("engine", 7.0)
    assert times.percentiles()["engine"]["n"] == 1 and times.median("engine") == 7.0


def test_stage_times_allocate_nothing_per_sample():
    """A deque of Python floats grew 32 bytes a sample: a 600 s bench of ten stages grew its own memory by
    about 6 MB, which the bench then reported as the window's growth."""
    times = StageTimes(maxlen=20000)
    for stage in (*STAGES, "engine:vit", "engine:rt-attention"):
        times.add(stage, 1.0)
    held = times.nbytes
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20000):
            times.add("engine:vit", float(i))
            times.add("painted", float(i))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert times.nbytes == held
    assert grown < 20_000  # a deque would have taken 40000 floats: about 1.3 MB


def test_stage_names_are_bounded():
    times = StageTimes(maxlen=10)
    for i in range(MAX_STAGES * 2):
        times.add(f"engine:{i}", 1.0)
    assert len(times.percentiles()) <= MAX_STAGES


def test_a_bench_window_covers_the_run_up_to_its_cap():
    assert bench_window(600) >= 600 * 60
    assert bench_window(86400) == bench_window(BENCH_WINDOW_MAX_S)
