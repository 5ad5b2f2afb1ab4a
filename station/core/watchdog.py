"""Watching a source from outside its read(): a camera that stops delivering is a state within a
bounded time, even while the thread that reads it is stuck inside a driver call.

`FrameClock` knows how long a silence may last (N frame intervals, the interval from the source's
frame rate or measured, never under a floor); the live pipeline's watchdog thread asks it.
`FrameReader` reads a source in a thread of its own, so that `station inspect` can give up on a
source that never delivers (a camera that is not there, a read that blocks) with a clear error.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from station.core.errors import SourceError
from station.core.sources import Frame, Source, SourceState

logger = logging.getLogger(__name__)

TERMINAL = (SourceState.ENDED, SourceState.FAILED, SourceState.CLOSED)


@dataclass(frozen=True)
class CameraWatch:
    """How the live line watches a live source (StationSettings holds the operator's values)."""

    stall_after_frames: float = 10.0  # no new frame for this many frame intervals: "camera stalled"
    stall_min_s: float = 1.0  # ... and never sooner than this (a busy PC may pause a thread for a moment)
    frozen_after_s: float = 2.0  # the same frame, bit for bit, for this long: "camera frozen"

    @classmethod
    def from_settings(cls, settings) -> CameraWatch:
        return cls(settings.stall_after_frames, settings.stall_min_s, settings.frozen_after_s)


class FrameClock:
    """The frame interval of a source (the larger of its stated one and the median of the last ones
    measured) and how long a silence may last before the source counts as stalled."""

    def __init__(self, watch: CameraWatch, nominal_fps: float | None = None, window: int = 30) -> None:
        self.watch = watch
        self.nominal_s = 1.0 / nominal_fps if nominal_fps and nominal_fps > 0 else None
        self._intervals: deque[float] = deque(maxlen=window)
        self._last_frame: float | None = None
        self._alive_at = time.monotonic()
        self._lock = threading.Lock()  # the capture thread writes, the watchdog thread reads

    def frame(self, now: float) -> None:
        """A new frame arrived at `now` (time.monotonic())."""
        with self._lock:
            if self._last_frame is not None:
                self._intervals.append(now - self._last_frame)
            self._last_frame = self._alive_at = now

    def restart(self, now: float) -> None:
        """The source (re)started at `now`: the silence is counted from here; the gap before is no interval."""
        with self._lock:
            self._last_frame, self._alive_at = None, now

    @property
    def interval_s(self) -> float | None:
        with self._lock:
            measured = statistics.median(self._intervals) if self._intervals else None
        known = [v for v in (self.nominal_s, measured) if v is not None]
        return max(known) if known else None

    @property
    def timeout_s(self) -> float:
        interval = self.interval_s
        by_frames = self.watch.stall_after_frames * interval if interval is not None else 0.0
        return max(by_frames, self.watch.stall_min_s)

    def silent_for(self, now: float) -> float:
        return now - self._alive_at


class FrameReader:
    """Frames of an opened source, read in a thread of its own that also closes the source at the end.

    `next()` returns the next frame, None when the source has ended, and raises SourceError when no
    frame arrived within `timeout_s` seconds (from the start, then from the frame before), blocked
    read() or not. `notice(state, message)` is called, in the caller's thread, when the source's state
    changes while waiting. Use it as a context manager: leaving it stops the reading thread.
    """

    def __init__(self, source: Source, timeout_s: float, notice: Callable[[SourceState, str], None] | None = None,
                 poll_s: float = 0.2) -> None:
        if not timeout_s > 0:
            raise SourceError(f"the frame timeout must be a positive number of seconds, not {timeout_s}")
        self.source, self.timeout_s, self.notice, self.poll_s = source, timeout_s, notice, poll_s
        self._frames: queue.Queue[Frame | None] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._ended: tuple[SourceState, str] | None = None  # the source's state when it stopped delivering
        self._seen: tuple[SourceState | None, str] = (None, "")  # the state as open() left it is news too
        self._thread = threading.Thread(target=self._run, name="station-reader", daemon=True)

    def __enter__(self) -> FrameReader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(1.0)
        if self._thread.is_alive():  # stuck in a driver call: the process ends without it
            logger.warning("%s is still inside read(); it is left to the operating system", self.source.description)

    def _put(self, item: Frame | None) -> None:
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is not None:
                    self._put(frame)
                elif self.source.state in TERMINAL:
                    break
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, which reports it
            logger.exception("reading %s failed", self.source.description)
            self._error = exc
        finally:
            self._ended = (self.source.state, self.source.message)
            try:
                self.source.close()
            except Exception as exc:  # noqa: BLE001 - the thread ends either way
                logger.warning("closing %s failed: %s: %s", self.source.description, type(exc).__name__, exc)
            self._put(None)

    def next(self) -> Frame | None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                item = self._frames.get(timeout=max(0.0, min(self.poll_s, deadline - time.monotonic())))
            except queue.Empty:
                item = False
            self._tell()
            if item is not False:
                if item is None and self._error is not None:
                    raise SourceError(f"{self.source.description} failed: {type(self._error).__name__}: "
                                      f"{self._error}") from None
                if item is None and self._ended is not None and self._ended[0] is SourceState.FAILED:
                    raise SourceError(self._ended[1] or f"{self.source.description} failed")
                return item
            if time.monotonic() >= deadline:
                why = f" ({self.source.reason})" if self.source.reason else ""
                raise SourceError(f"{self.source.description} did not deliver a frame within {self.timeout_s:g} s{why}")

    def _tell(self) -> None:
        seen = (self.source.state, self.source.message)
        if seen != self._seen:
            self._seen = seen
            if self.notice is not None:
                self.notice(*seen)
