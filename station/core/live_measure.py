"""Measuring the live line: event rates, per-stage latencies, resident memory, and the headless
`station bench` run and its report (station/core/live.py is the line itself)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from station.core.live import LivePipeline

#: the stages whose latency is measured, in the order a frame passes them
#: end_to_end: capture to result ready; display and painted (capture to painted) are added by a GUI
STAGES = ("capture", "registration", "engine", "overlay", "end_to_end", "display", "painted")
MAX_STAGES = 64  # stages kept at most: the above, one per engine of the line ("engine:NAME") and a few more


class Rate:
    """Events per second over a sliding window of the last `window_s` seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._times.append(now)
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        with self._lock:
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], 1e-6)
            return (len(self._times) - 1) / span if span < self.window_s * 0.5 else len(self._times) / self.window_s

    def reset(self) -> None:
        with self._lock:
            self._times.clear()


class _Ring:
    """The last `size` values in one preallocated float64 array: adding a value allocates nothing. The array
    is written through when made, so its pages are resident from the start, not taken one by one later."""

    def __init__(self, size: int) -> None:
        self.data = np.full(max(int(size), 1), np.nan)
        self.n = 0  # values added since the last clear (the ring holds the last min(n, size))

    def add(self, value: float) -> None:
        self.data[self.n % self.data.size] = value
        self.n += 1

    def __len__(self) -> int:
        return min(self.n, self.data.size)

    def last(self, k: int | None = None) -> np.ndarray:
        """The newest `k` values (all held when None), oldest first, as a copy."""
        size = self.data.size
        k = len(self) if k is None else min(k, len(self))
        at = np.arange(self.n - k, self.n) % size
        return self.data[at]


class StageTimes:
    """Recent latencies per stage: a bounded window in preallocated arrays, so neither a long shift nor a
    long bench grows memory (a deque of Python floats grew by 32 bytes a sample: about 6 MB in a 600 s
    bench of ten stages)."""

    def __init__(self, maxlen: int = 2000) -> None:
        self.maxlen = maxlen
        self._values: dict[str, _Ring] = {s: _Ring(maxlen) for s in STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            ring = self._values.get(stage)
            if ring is None:
                if len(self._values) >= MAX_STAGES:
                    return  # a stage name per engine: bounded all the same
                ring = self._values[stage] = _Ring(self.maxlen)
            ring.add(float(ms))

    def last(self, stage: str) -> float | None:
        with self._lock:
            ring = self._values.get(stage)
            return float(ring.last(1)[0]) if ring else None

    def median(self, stage: str, n: int = 30) -> float | None:
        with self._lock:
            ring = self._values.get(stage)
            values = ring.last(n) if ring else None
        return float(np.median(values)) if values is not None else None

    def percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snapshot = {k: v.last() for k, v in self._values.items() if len(v)}
        return {k: {"p50": round(float(np.percentile(v, 50)), 3), "p95": round(float(np.percentile(v, 95)), 3),
                    "p99": round(float(np.percentile(v, 99)), 3), "n": int(v.size)} for k, v in snapshot.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the samples (fixed once every stage has been seen)."""
        with self._lock:
            return sum(v.data.nbytes for v in self._values.values())

    def reset(self) -> None:
        with self._lock:
            for v in self._values.values():
                v.n = 0


# -- measuring the line (`station bench`) ------------------------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux /proc; elsewhere resource)."""
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status", encoding="ascii"))
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


class MemoryWatch:
    """Resident memory sampled over a run: baseline after warm-up, peak, final."""

    def __init__(self) -> None:
        self.baseline: float | None = None
        self.samples: list[tuple[float, float]] = []

    def sample(self, t: float) -> None:
        self.samples.append((round(t, 1), round(rss_mb()[0], 1)))
        del self.samples[:-20000]

    def mark_baseline(self) -> None:
        self.baseline = rss_mb()[0]

    def series(self, marks=(10, 30, 60, 120, 300, 600, 1800, 3600)) -> dict[str, float]:
        """Resident MB at a few moments of the run (the first sample at or after each mark)."""
        out = {}
        for mark in marks:
            later = [mb for t, mb in self.samples if t >= mark]
            if later:
                out[f"{mark}s"] = later[0]
        return out

    def report(self) -> dict:
        final, peak = rss_mb()
        # the demo line caches its images during the first minute; growth after that is what leaks
        later = [mb for t, mb in self.samples if t >= 60.0]
        return {"peak_rss_mb": round(peak, 1), "final_rss_mb": round(final, 1),
                "rss_growth_after_60s_mb": round(final - later[0], 1) if later else None,
                "rss_after_warmup_mb": None if self.baseline is None else round(self.baseline, 1),
                "rss_growth_mb": None if self.baseline is None else round(final - self.baseline, 1),
                "rss_mb_at": self.series()}


def bench_report(pipeline: LivePipeline, elapsed: float, results: int, frames: int, displayed: int | None,
                 max_stall_ms: float | None, memory: MemoryWatch, painted: bool) -> dict:
    lat = pipeline.times.percentiles()
    e2e = lat.get("painted" if painted else "end_to_end", {}).get("p95")
    return {"seconds": round(elapsed, 2), "camera_fps": round(frames / elapsed, 2),
            "inference_fps": round(results / elapsed, 2),
            "displayed_fps": None if displayed is None else round(displayed / elapsed, 2),
            "latency_ms": lat, "end_to_end_p95_ms": e2e,
            "end_to_end_is": "capture to painted verdict" if painted else "capture to verdict ready (no display)",
            "dropped_frames": pipeline.dropped, "max_stall_ms": max_stall_ms, **memory.report(),
            "counts": {k: v for k, v in pipeline.tally.snapshot().items() if k != "bad_files"},
            "source": pipeline.source.description, "state": pipeline.state.value}


def bench_window(seconds: float) -> int:
    """Latency samples kept per stage in a bench: the whole run at up to 60 fps (8 bytes a sample, allocated
    when the bench starts), at most the last 4 hours of a longer one."""
    return int(min(max(seconds, 10), BENCH_WINDOW_MAX_S) * 60) + 1000


BENCH_WINDOW_MAX_S = 4 * 3600


def run_bench(pipeline: LivePipeline, seconds: float, warmup_s: float = 2.0) -> dict:
    """Run the line headless for `seconds` after a warm-up and measure it."""
    counter = _Counter()
    pipeline.times = StageTimes(maxlen=bench_window(seconds))
    pipeline.result_ready.connect(counter.add)
    memory = MemoryWatch()
    pipeline.start()
    ended = threading.Event()
    pipeline.finished.connect(ended.set)
    ended.wait(warmup_s)
    pipeline.times.reset()
    memory.mark_baseline()
    counter.reset()
    frames0, t0 = pipeline.camera_rate_count, time.perf_counter()
    while not ended.is_set() and time.perf_counter() - t0 < seconds:
        ended.wait(0.5)
        memory.sample(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    pipeline.stop()
    pipeline.result_ready.disconnect(counter.add)
    return bench_report(pipeline, elapsed, counter.n, pipeline.camera_rate_count - frames0, None, None, memory,
                        painted=False)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, _item) -> None:
        self.n += 1

    def reset(self) -> None:
        self.n = 0
