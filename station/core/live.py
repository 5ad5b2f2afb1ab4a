"""The live line without Qt: a capture thread reads the source into a one-slot "latest frame wins"
buffer, an inference thread inspects and renders the overlay, and plain callbacks hand results on.

Live sources (cameras, the demo line) overwrite a frame nobody took yet and count it as dropped;
file and folder sources block instead, so that every image of a replay is inspected. The GUI wraps
this in Qt signals (station/ui/live_service.py); `station bench` uses it directly.

A live source is watched from a third thread: no new frame for N frame intervals is "camera
stalled", even while the capture thread is stuck inside read(); on an image sensor, the same frame
over and over is "camera frozen" and is not inspected again (station/core/watchdog.py). On a live
line a frame that is not an image that can be inspected is one NG "bad frame" result and the line
goes on; a replay reports it as an unreadable file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from station.core.errors import StationError
from station.core.frame_check import Repeats
from station.core.inspector import InspectionResult, Inspector, bad_frame_result
from station.core.live_measure import STAGES, Rate, StageTimes
from station.core.overlay import Overlay, OverlayRenderer, thumbnail
from station.core.sources import Frame, Source, SourceState
from station.core.trigger import FreeRun, Shot
from station.core.verdict import Verdict
from station.core.watchdog import TERMINAL, CameraWatch, FrameClock

if TYPE_CHECKING:
    from station.core.multi import MultiInspector
    from station.core.results import LogTicket, ResultStore

logger = logging.getLogger(__name__)



class Signal:
    """A minimal callback list (the station core has no psygnal); callbacks run in the emitting thread."""

    def __init__(self) -> None:
        self._slots: list[Callable] = []
        self._lock = threading.Lock()

    def connect(self, slot: Callable) -> None:
        with self._lock:
            if slot not in self._slots:
                self._slots.append(slot)

    def disconnect(self, slot: Callable | None = None) -> None:
        with self._lock:
            if slot is None:
                self._slots.clear()
            elif slot in self._slots:
                self._slots.remove(slot)

    def emit(self, *args) -> None:
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            slot(*args)


class LatestFrameSlot:
    """A one-frame buffer between capture and inference.

    `put(block=False)` replaces a frame not yet taken (returns True: one frame dropped);
    `put(block=True)` waits until the slot is free, so no frame is lost. `close()` wakes everybody.
    """

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, frame: Frame, block: bool) -> bool:
        with self._cond:
            if block:
                while self._frame is not None and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            dropped = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return dropped

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    @property
    def empty(self) -> bool:
        with self._cond:
            return self._frame is None

    def clear(self) -> None:
        with self._cond:
            self._frame = None
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class LiveResult:
    """One inspected frame, ready to paint: the frame, its result and its rendered overlay."""

    seq: int
    frame: Frame
    result: InspectionResult | None  # None when the frame could not be read or no recipe is loaded
    overlay: Overlay | None
    thumb: np.ndarray | None  # small composite for the strip of recent results
    timings_ms: dict[str, float]
    done_at: float  # perf_counter() when the result was ready
    error: str = ""  # the frame could not be read (frame.error) or inspected
    log: LogTicket | None = None  # the result's row on its way to the result log (None: not logged)
    shot: Shot | None = None  # the part: its ID and trigger time (station/core/trigger.py)
    #: each engine's own map on a line of several recipes, by name (`overlay` is the one the verdict follows)
    overlays: dict[str, Overlay] = field(default_factory=dict)
    #: the picture a GUI draws, made by its listener in the inference thread (station/ui/display.py); None: none
    display: object | None = None

    @property
    def verdict(self) -> Verdict | None:
        return None if self.result is None else self.result.verdict

    @property
    def logged(self) -> bool:
        """The result's row is safe on disk: only now may the verdict be told to the line."""
        return self.log is not None and self.log.durable


@dataclass
class Tally:
    """The shift's counters. Updated by the inference thread, read and reset by the GUI."""

    total: int = 0
    ok: int = 0
    ng: int = 0
    review: int = 0
    unreadable: int = 0
    bad_files: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, item: LiveResult) -> None:
        with self._lock:
            if item.result is None:
                if item.error:
                    self.unreadable += 1
                    self.bad_files.append(f"{item.frame.name}: {item.error}")
                return
            self.total += 1
            verdict = item.result.verdict
            if verdict is Verdict.OK:
                self.ok += 1
            elif verdict is Verdict.NG:
                self.ng += 1
            else:
                self.review += 1

    @property
    def yield_pct(self) -> float | None:
        return 100.0 * self.ok / self.total if self.total else None

    def snapshot(self) -> dict:
        with self._lock:
            return {"total": self.total, "ok": self.ok, "ng": self.ng, "review": self.review,
                    "unreadable": self.unreadable, "yield_pct": self.yield_pct, "bad_files": list(self.bad_files)}

    def reset(self) -> None:
        with self._lock:
            self.total = self.ok = self.ng = self.review = self.unreadable = 0
            self.bad_files.clear()


class LivePipeline:
    """Capture thread -> one-slot buffer -> inference thread -> `result_ready(LiveResult)`.

    Callbacks (`result_ready`, `state_changed(SourceState, message)`, `finished()`) run in the worker
    threads: a GUI must hand them over to its own thread. `inspector` may be None (no recipe yet):
    frames are then shown without a verdict. It may be a MultiInspector (station/core/multi.py): every
    frame then gets each recipe's result and map, and the verdict of the line's combine rule.
    """

    def __init__(self, source: Source, inspector: Inspector | MultiInspector | None, thumb_height: int = 72,
                 watch: CameraWatch | None = None, store: ResultStore | None = None, gate=None) -> None:
        self.store = store  # each result is handed to it before result_ready; store.committed follows
        self.gate = gate if gate is not None else FreeRun()  # which frames are parts (station/core/trigger.py)
        self.result_ready = Signal()
        self.state_changed = Signal()
        self.finished = Signal()
        self.tally = Tally()
        self.times = StageTimes()
        self.camera_rate, self.inference_rate = Rate(), Rate()
        self.dropped = 0
        self.camera_rate_count = 0  # frames captured since this pipeline was made
        self.thumb_height = thumb_height
        self._source = source
        self._inspector = inspector
        self._renderers = self._make_renderers(inspector)
        self._slot = LatestFrameSlot()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._shots = 0
        self._shot_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._capture_done = threading.Event()
        self.state, self.message = SourceState.CLOSED, ""
        self.watch = watch or CameraWatch()
        self.repeated = 0  # frames of a frozen camera that were not inspected again
        self._state_lock = threading.RLock()  # the capture, inference and watchdog threads all set the state
        self._clock = FrameClock(self.watch)

    # -- what the operator sees -----------------------------------------------------------------
    @property
    def source(self) -> Source:
        return self._source

    @property
    def inspector(self) -> Inspector | MultiInspector | None:
        return self._inspector

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # -- control --------------------------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        if self.running:
            return
        self._stop.clear()
        self._capture_done.clear()
        self._slot = LatestFrameSlot()
        (self._paused.set if paused else self._paused.clear)()
        self.camera_rate.reset()
        self.inference_rate.reset()
        self._clock = FrameClock(self.watch)
        self._threads = [threading.Thread(target=self._capture_loop, name="station-capture", daemon=True),
                         threading.Thread(target=self._inference_loop, name="station-inference", daemon=True)]
        if self._source.live:  # a replay may wait for the inspection between frames; a camera may not
            self._threads.append(threading.Thread(target=self._watch_loop, name="station-watchdog", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop both threads and close the source; True when they ended within `timeout` seconds."""
        self._stop.set()
        self._slot.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        self._threads = alive
        return not alive

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def trigger(self) -> None:
        """Software trigger: inspect the next frame, also while paused (started paused if stopped)."""
        with self._shot_lock:
            self._shots += 1
        if not self.running:
            self.start(paused=True)

    def set_source(self, source: Source) -> None:
        """Swap the source; a running line is stopped and started again on the new one."""
        was_running = self.running
        was_paused = self.paused
        self.stop()
        self._source = source
        self.dropped = 0
        if was_running:
            self.start(paused=was_paused)

    def set_inspector(self, inspector: Inspector | MultiInspector | None) -> None:
        self._inspector, self._renderers = inspector, self._make_renderers(inspector)

    # -- the two threads ------------------------------------------------------------------------
    @staticmethod
    def _make_renderers(inspector: Inspector | MultiInspector | None) -> dict[str, OverlayRenderer]:
        """One renderer per recipe of the line, by name: each map in its own engine's scale."""
        if inspector is None:
            return {}
        return {name: OverlayRenderer(i.recipe.grid, i.recipe.thresholds, i.recipe.engine.capabilities.cell_scale)
                for name, i in named(inspector).items()}

    def _set_state(self, state: SourceState, message: str) -> None:
        with self._state_lock:
            if (state, message) != (self.state, self.message):
                self.state, self.message = state, message
                self.state_changed.emit(state, message)

    def _capture_loop(self) -> None:
        source = self._source
        try:
            try:
                source.open()
            except StationError as exc:
                self._set_state(SourceState.FAILED, str(exc))
                return
            self._clock = FrameClock(self.watch, source.nominal_fps)
            self._set_state(source.state, source.message or source.description)
            block = not source.live
            repeats = Repeats() if source.sensor else None
            while not self._stop.is_set():
                frame = source.read()
                now = time.monotonic()
                if frame is None:
                    if source.state is not SourceState.RUNNING:  # lost, ended, failed: the source says why
                        self._clock.restart(now)  # the silence of a lost camera is its own state, not a stall
                        self._set_state(source.state, source.message or source.description)
                    if source.state in TERMINAL:
                        return
                    if source.state is SourceState.RUNNING:
                        time.sleep(0.005)  # a source with nothing new yet: do not spin
                    continue
                if repeats is not None and frame.image is not None:
                    repeated_for = repeats.seen(frame.image, now)
                    if repeated_for is not None:  # the same buffer again: nothing new to inspect
                        self.repeated += 1
                        if repeated_for >= self.watch.frozen_after_s:
                            self._set_state(SourceState.FROZEN, f"{source.description} frozen: the same frame "
                                            f"for {self.watch.frozen_after_s:g} s or more")
                        continue
                self._clock.frame(now)
                self._set_state(source.state, source.message or source.description)
                self.camera_rate.tick()
                self.camera_rate_count += 1
                if self._slot.put(frame, block=block) and not self._paused.is_set():
                    self.dropped += 1
        except Exception as exc:  # noqa: BLE001 - a crashed capture thread must show, not vanish
            logger.exception("the capture thread failed")
            self._set_state(SourceState.FAILED, f"capture failed: {type(exc).__name__}: {exc}")
        finally:
            try:
                source.close()
            except Exception as exc:  # noqa: BLE001 - the thread ends either way; a source that will not close is logged
                logger.warning("closing the source failed: %s: %s", type(exc).__name__, exc)
            self._capture_done.set()

    def _watch_loop(self) -> None:
        """Say "camera stalled" when a running source has sent no new frame for too long, wherever the
        capture thread is (a read() that blocks included); the next new frame makes it "running" again."""
        while not self._stop.wait(0.05) and not self._capture_done.is_set():
            now = time.monotonic()
            with self._state_lock:
                if self.state is SourceState.RUNNING and self._clock.silent_for(now) >= self._clock.timeout_s:
                    self._set_state(SourceState.STALLED, f"{self._source.description} stalled: no new frame for "
                                    f"{self._clock.timeout_s:.1f} s")

    def _take_shot(self) -> bool:
        with self._shot_lock:
            if self._shots:
                self._shots -= 1
                return True
            return False

    def _inference_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    with self._shot_lock:
                        shot_pending = self._shots > 0
                    if not shot_pending:
                        if self._capture_done.is_set() and self._slot.empty:
                            break
                        time.sleep(0.01)
                        continue
                if self.store is not None and self.store.hold_line:
                    time.sleep(0.05)  # on_failure=stop: no part is inspected that cannot be logged
                    continue
                frame = self._slot.take(timeout=0.05)
                if frame is None:
                    if self._capture_done.is_set():
                        frame = self._slot.take(timeout=0)
                        if frame is None:
                            break
                    else:
                        continue
                if self._paused.is_set() and not self._take_shot():
                    continue
                if not self._paused.is_set():
                    self._take_shot()  # a trigger while running is served by this frame
                shot = self.gate.admit(frame)
                if shot is None:  # not a part to inspect (hold mode, or no trigger waiting)
                    continue
                self.result_ready.emit(self._log(self._process(frame, shot)))
        except Exception as exc:  # noqa: BLE001 - shown in the status bar, its traceback in the log
            logger.exception("the inference thread failed")
            self._set_state(SourceState.FAILED, f"inspection failed: {type(exc).__name__}: {exc}")
        finally:
            if not self._stop.is_set():  # the source ran out (or failed); a stop asked for is not news
                self.finished.emit()

    def _process(self, frame: Frame, shot: Shot | None = None) -> LiveResult:
        t0 = time.perf_counter()
        timings = {"capture": (t0 - frame.timestamp) * 1e3}
        result, overlay, thumb, error = None, None, None, frame.error
        inspector, renderers = self._inspector, self._renderers
        overlays: dict[str, Overlay] = {}
        if frame.image is not None:
            if inspector is not None:
                try:
                    result = inspector.inspect(frame.image)
                except StationError as exc:
                    error = str(exc)
                except Exception as exc:  # noqa: BLE001 - a frame the inspection cannot take is one bad frame
                    logger.exception("inspecting %s failed", frame.name)
                    why = " ".join(str(exc).split())[:300]  # OpenCV's messages run over several lines
                    result = bad_frame_result(f"bad frame: inspection failed ({type(exc).__name__}: {why})",
                                              line_hash(inspector))
                if result is not None:
                    timings["registration"] = result.timings_ms.get("registration", 0.0)
                    timings["engine"] = result.timings_ms.get("engine", 0.0)
                    timings.update({k: v for k, v in result.timings_ms.items() if k.startswith("engine:")})
                    t1 = time.perf_counter()
                    overlays = {name: renderers[name].render(own, frame.image.shape)
                                for name, own in result.engines.items()}
                    if overlays:  # the map the verdict follows
                        overlay = overlays[result.extra.get("engine", next(iter(overlays)))]
                    else:
                        overlay = next(iter(renderers.values())).render(result, frame.image.shape)
                    thumb = thumbnail(frame.image, overlay, self.thumb_height)
                    timings["overlay"] = (time.perf_counter() - t1) * 1e3
            else:
                thumb = thumbnail(frame.image, None, self.thumb_height)
        elif frame.error and self._source.live and inspector is not None:  # a part that could not be judged
            result = bad_frame_result(frame.error, line_hash(inspector))
        done = time.perf_counter()
        timings["end_to_end"] = (done - frame.timestamp) * 1e3
        if shot is not None:
            timings["trigger_to_result"] = (done - shot.at) * 1e3
        for stage, ms in timings.items():
            self.times.add(stage, ms)
        self.inference_rate.tick(done)
        self._seq += 1
        item = LiveResult(self._seq, frame, result, overlay, thumb, timings, done, error, shot=shot,
                          overlays=overlays)
        self.tally.count(item)
        return item

    def _log(self, item: LiveResult) -> LiveResult:
        """Hand the result to the result log first: whoever gets it next can wait for its row."""
        if self.store is not None and item.result is not None:
            inspector = self._inspector
            shot = item.shot
            item.log = self.store.add(item.result, item.frame.name, item.frame.image,
                                      line_name(inspector) if inspector is not None else "",
                                      part_id=shot.part_id if shot else None, trigger_time=shot.wall if shot else None)
        return item

    def stats(self) -> dict:
        """What the status bar shows: rates, the recent median latency per stage, drops, state."""
        return {"camera_fps": self.camera_rate.rate(), "inference_fps": self.inference_rate.rate(),
                "latency_ms": {s: self.times.median(s) for s in STAGES}, "dropped_frames": self.dropped,
                "state": self.state.value, "message": self.message}


def named(inspector) -> dict:
    """The line's recipes by name: an Inspector's one, a MultiInspector's several (a wrapper with only a
    `recipe` and `inspect`, as tests make, counts as one)."""
    return inspector.named() if hasattr(inspector, "named") else {inspector.recipe.name: inspector}


def line_hash(inspector) -> str:
    return getattr(inspector, "content_hash", None) or inspector.recipe.content_hash


def line_name(inspector) -> str:
    return getattr(inspector, "name", None) or inspector.recipe.name
