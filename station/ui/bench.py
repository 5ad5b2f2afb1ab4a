"""`station bench --gui`: the full window (offscreen where there is no display) on the line, measuring
the paint rate, the capture-to-painted latency and the GUI event loop's longest stall."""

from __future__ import annotations

import collections
import faulthandler
import gc
import os
import re
import tempfile
import sys
import threading
import time
import traceback

from station.core.errors import StationError
from station.core.live_measure import MemoryWatch, StageTimes, bench_report, bench_window


def thread_schedstat() -> tuple[float, float] | None:
    """(ms on a CPU, ms waiting in the run queue for one) of the calling thread so far (Linux); None elsewhere."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as f:
            on_cpu, waiting = f.read().split()[:2]
        return int(on_cpu) / 1e6, int(waiting) / 1e6
    except (OSError, ValueError):
        return None


class GcPauses:
    """Every garbage collection while the bench runs: the longest by generation, and in which thread (a long
    full collection in the GUI thread is a stall; in another thread it holds the GIL the GUI thread needs)."""

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self.longest: dict[int, dict] = {}
        self.over_10ms = 0
        self.count = 0

    def __call__(self, phase: str, info: dict) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = time.perf_counter()
            return
        began = self._started.pop(ident, None)
        if began is None:
            return
        ms = (time.perf_counter() - began) * 1e3
        self.count += 1
        self.over_10ms += ms > 10
        generation = int(info.get("generation", -1))
        if ms > self.longest.get(generation, {}).get("ms", -1.0):
            self.longest[generation] = {"ms": round(ms, 2), "thread": threading.current_thread().name,
                                        "collected": int(info.get("collected", 0))}

    def start(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def reset(self) -> None:
        self.longest, self.over_10ms, self.count = {}, 0, 0

    def stop(self) -> dict:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        return {"collections": self.count, "over_10ms": self.over_10ms,
                "longest_by_generation": {str(g): v for g, v in sorted(self.longest.items())}}


class StallMeter:
    """A precise timer that should fire every `interval_ms`; a late tick is time the GUI was blocked. For the
    longest stall it also says how much of it the GUI thread ran, and how much it waited for a CPU that the
    system gave to something else (on a shared machine most of a long stall is that, not the window's work)."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.last: float | None = None
        self.began = time.perf_counter()
        self.max_stall_ms = 0.0
        self.stalls_over_50 = 0
        self.longest: dict | None = None  # the longest stall: ms, ms running, ms waiting for a CPU, where
        self._sched = thread_schedstat()
        self._samples: list[str] = []  # the GUI thread's stack, sampled while the current tick is late
        self._gui_ident = threading.get_ident()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="bench-stall-sampler", daemon=True)
        # a stall inside one long call that holds the GIL stops the sampler too; faulthandler's watchdog needs no
        # GIL: re-armed by the ticks, it writes every thread's stack when the GUI thread is `dump_after_s` late
        self.dump_after_s = 0.15
        self._dumps = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._armed = 0.0
        self._long_stacks: list[tuple[str, int]] = []

    def start(self) -> None:
        self.last = time.perf_counter()
        self._sched = thread_schedstat()
        self.timer.start()
        self._watchdog.start()

    def stop(self) -> None:
        self.timer.stop()
        self._stop.set()
        faulthandler.cancel_dump_traceback_later()
        if not self._dumps.closed:
            self._long_stacks = self._read_dumps()
            self._dumps.close()

    def _arm(self, now: float) -> None:
        if now - self._armed > 0.05:
            faulthandler.dump_traceback_later(self.dump_after_s, file=self._dumps)
            self._armed = now

    def long_stall_stacks(self) -> list[tuple[str, int]]:
        """The GUI thread's stacks at stalls longer than `dump_after_s`, most frequent first (innermost call first);
        read when the meter stops."""
        return self._long_stacks

    def _read_dumps(self, frames: int = 8) -> list[tuple[str, int]]:
        self._dumps.flush()
        self._dumps.seek(0)
        text = self._dumps.read()
        gui = f"0x{self._gui_ident:016x}"
        stacks = []
        for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text):
            if block.split(" (", 1)[0].endswith(gui):
                lines = [ln.strip() for ln in block.splitlines()[1:] if ln.strip().startswith("File")]
                stacks.append(" < ".join(re.sub(r'File "([^"]*)", line (\d+) in (\S+)',
                                                lambda m: f"{os.path.basename(m[1])}:{m[2]} {m[3]}", ln)
                                         for ln in lines[:frames]))
        return collections.Counter(stacks).most_common(3)

    def _watch(self, late_ms: float = 40.0, every_s: float = 0.01) -> None:
        """While the GUI thread is late by more than `late_ms`, sample its stack: where a long stall is spent."""
        while not self._stop.wait(every_s):
            last = self.last
            if last is None or (time.perf_counter() - last) * 1e3 < late_ms:
                continue
            frame = sys._current_frames().get(self._gui_ident)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-8:]
                self._samples.append(" < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                                                for f in reversed(stack)))

    def reset(self) -> None:
        self.last, self.max_stall_ms, self.stalls_over_50, self.longest = time.perf_counter(), 0.0, 0, None
        self.began = self.last

    def tick(self) -> None:
        now, sched = time.perf_counter(), thread_schedstat()
        if self.last is not None:
            stall = (now - self.last) * 1e3 - self.interval_ms
            if stall > self.max_stall_ms:
                self.max_stall_ms = stall
                ran = waited = None
                if sched is not None and self._sched is not None:
                    ran, waited = round(sched[0] - self._sched[0], 1), round(sched[1] - self._sched[1], 1)
                self.longest = {"ms": round(stall, 2), "gui_thread_running_ms": ran, "waiting_for_a_cpu_ms": waited,
                                "at_s": round(now - self.began, 1),
                                "stack_samples": collections.Counter(self._samples).most_common(3)}
            self.stalls_over_50 += stall > 50
        self.last, self._sched, self._samples = now, sched, []
        self._arm(now)


def run_gui_bench(source: str, recipe: str | list[str] | None, seconds: float, fps: float, warmup_s: float = 3.0,
                  combine: str | None = None) -> dict:
    """Measure the window on `recipe` (one folder or several; None: the window's default line)."""
    app = offscreen_app()
    from PySide6.QtCore import QTimer

    from station.core.settings import make_settings
    from station.ui.app import create_window

    window = create_window(source, recipe, make_settings(demo_fps=fps), save_settings=False, start=False,
                           combine=combine)
    service, pipeline = window.service, window.service.pipeline
    if recipe is not None and not service.engine_names:  # figures of a line that inspects nothing mislead
        error = service.recipe_error or "no recipe could be loaded"
        window.close()
        window.deleteLater()
        app.processEvents()
        raise StationError(f"station bench --gui: {error}")
    window.show()
    pipeline.times = StageTimes(maxlen=bench_window(seconds))  # percentiles over the whole run
    stall, memory, gc_pauses = StallMeter(), MemoryWatch(), GcPauses()
    state = {"t0": 0.0, "frames0": 0, "painted0": 0, "results0": 0, "measuring": False, "gui_cpu0": 0.0,
             "cpu0": 0.0}
    results = _ResultCount()
    service.results_ready.connect(results.add)

    def begin() -> None:
        pipeline.times.reset()
        stall.reset()
        gc_pauses.reset()
        memory.mark_baseline()
        state.update(t0=time.perf_counter(), frames0=pipeline.camera_rate_count, painted0=service.painted_count,
                     results0=results.n, measuring=True, gui_cpu0=time.thread_time(), cpu0=time.process_time())

    def sample() -> None:
        if state["measuring"]:
            memory.sample(time.perf_counter() - state["t0"])
            if time.perf_counter() - state["t0"] >= seconds or service.run_state == "stopped":
                spent = time.perf_counter() - state["t0"]  # CPU read here: this is the GUI thread, still running
                state["cpu"] = {"gui_thread": round(100 * (time.thread_time() - state["gui_cpu0"]) / spent, 1),
                                "process": round(100 * (time.process_time() - state["cpu0"]) / spent, 1)}
                # the measurement ends here, before quitting: closing the window collects everything once (a
                # 260-410 ms full collection), which the stall meter counted when it ticked once more
                state["gc"] = gc_pauses.stop()
                state["elapsed"] = spent
                stall.stop()
                app.quit()

    sampler = QTimer()
    sampler.setInterval(500)
    sampler.timeout.connect(sample)
    QTimer.singleShot(int(warmup_s * 1000), begin)
    service.start()
    stall.start()
    gc_pauses.start()
    sampler.start()
    app.exec()
    elapsed = state.get("elapsed") or time.perf_counter() - state["t0"]
    report = bench_report(pipeline, elapsed, results.n - state["results0"],
                          pipeline.camera_rate_count - state["frames0"], service.painted_count - state["painted0"],
                          round(stall.max_stall_ms, 2), memory, painted=True)
    report["stalls_over_50ms"] = stall.stalls_over_50
    report["longest_stall"] = stall.longest
    report["gc_pauses"] = state.get("gc") or gc_pauses.stop()
    # percent of one core: how busy the GUI thread was (its own work, not waiting), and the whole process
    report["cpu_pct"] = state.get("cpu")
    report["load_average"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    report["qt_platform"] = app.platformName()
    report["engines"] = service.engine_names
    report["combine"] = service.combine if len(service.engine_names) > 1 else None
    stall.stop()
    report["stalls_over_150ms_stacks"] = stall.long_stall_stacks()
    sampler.stop()
    window.close()
    window.deleteLater()
    app.processEvents()
    return report


def offscreen_app():
    """The QApplication of a bench or a screenshot script: offscreen where there is no display, without the
    offscreen plugin's noise, in the Fusion style the window is drawn in."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    qInstallMessageHandler(_quiet_offscreen)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    return app


def _quiet_offscreen(mode, context, message: str) -> None:
    # the offscreen plugin cannot resize windows to their size hints and says so for every window
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


class _ResultCount:
    def __init__(self) -> None:
        self.n = 0

    def add(self, items) -> None:
        self.n += len(items)
