"""What makes the station inspect a part, and which part it is: free-run (every frame is a part),
a software or PLC trigger (the next frame captured after the trigger), or hold mode (a part that stays
in view is inspected once: its arrival and departure are seen in the frames).

Each inspected frame gets a Shot: the part's ID (the PLC's, or counted here) and the trigger's time,
from which the live line measures trigger-to-result latency.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

import cv2
import numpy as np

from station.core.errors import StationError
from station.core.sources import Frame

logger = logging.getLogger(__name__)

MAX_PENDING_TRIGGERS = 64  # triggers waiting for a frame; more means the line cannot keep up
MAX_PART_ID = 64  # characters


class TriggerMode(str, Enum):
    FREE_RUN = "free-run"
    SOFTWARE = "software"
    PLC = "plc"
    HOLD = "hold"


def wall_time(at: float) -> datetime:
    """The UTC time of a perf_counter() reading taken a moment ago."""
    return datetime.now(timezone.utc) - timedelta(seconds=max(0.0, time.perf_counter() - at))


@dataclass(frozen=True)
class Shot:
    """One part to inspect: its ID, when it was triggered (perf_counter and UTC) and by what."""

    part_id: str
    at: float
    wall: datetime
    origin: str
    token: Any = None  # whoever fired it (the PLC link's trigger) finds it again on the result


class PartCounter:
    """Part IDs for parts nobody named: 1, 2, 3, ... (thread-safe)."""

    def __init__(self, start: int = 1) -> None:
        self._next = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return str(next(self._next))


class FreeRun:
    """Every frame is a part (today's line): its trigger time is its capture time."""

    mode = TriggerMode.FREE_RUN

    def __init__(self, counter: PartCounter | None = None) -> None:
        self.counter = counter or PartCounter()

    def admit(self, frame: Frame) -> Shot | None:
        return Shot(self.counter.next(), frame.timestamp, wall_time(frame.timestamp), self.mode.value)


class ExternalTrigger:
    """Software and PLC triggers: each one inspects the first frame captured after it, never an older one
    (a frame from before the trigger may show the previous part)."""

    def __init__(self, mode: TriggerMode = TriggerMode.SOFTWARE, counter: PartCounter | None = None,
                 max_pending: int = MAX_PENDING_TRIGGERS) -> None:
        self.mode = mode
        self.counter = counter or PartCounter()
        self.max_pending = max_pending
        self._pending: deque[Shot] = deque()
        self._lock = threading.Lock()
        self.stale_frames = 0  # frames passed over because they were captured before the trigger

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def fire(self, part_id: str | int | None = None, token: Any = None, at: float | None = None) -> Shot:
        """Queue a trigger; `part_id` None or 0: the station counts. StationError when too many wait."""
        name = self.counter.next() if part_id in (None, 0, "") else str(part_id)
        if len(name) > MAX_PART_ID or not name.isprintable():
            raise StationError(f"a part ID is up to {MAX_PART_ID} printable characters, not {name[:80]!r}")
        at = time.perf_counter() if at is None else at
        shot = Shot(name, at, wall_time(at), self.mode.value, token)
        with self._lock:
            if len(self._pending) >= self.max_pending:
                raise StationError(f"{self.max_pending} triggers wait for a frame already: the camera or the "
                                   "inspection cannot keep up")
            self._pending.append(shot)
        return shot

    def cancel(self, token: Any) -> bool:
        """Drop the waiting trigger fired with `token` (a PLC trigger whose result timed out)."""
        with self._lock:
            for shot in self._pending:
                if shot.token is token:
                    self._pending.remove(shot)
                    return True
        return False

    def admit(self, frame: Frame) -> Shot | None:
        with self._lock:
            if not self._pending:
                return None
            if frame.timestamp < self._pending[0].at:
                self.stale_frames += 1
                return None
            return self._pending.popleft()


def _small_gray(image: np.ndarray, width: int = 64) -> np.ndarray:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape[:2]
    size = (width, max(1, round(h * width / max(w, 1))))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


class HoldTracker:
    """Hold mode: one verdict per part, not per frame. A part has arrived when the scene, after changing,
    holds still for `settle_frames` frames (and, if the empty scene is known, differs from it); it has left
    when the scene moves again or shows the empty scene. Differences are the mean absolute difference of
    small grey images, 0..1."""

    mode = TriggerMode.HOLD

    def __init__(self, counter: PartCounter | None = None, motion_threshold: float = 0.02,
                 presence_threshold: float = 0.04, settle_frames: int = 3) -> None:
        if not 0 < motion_threshold < 1 or not 0 < presence_threshold < 1:
            raise StationError("hold mode's thresholds are between 0 and 1")
        if not 1 <= settle_frames <= 1000:
            raise StationError("hold mode's settle frames are 1..1000")
        self.counter = counter or PartCounter()
        self.motion_threshold, self.presence_threshold = motion_threshold, presence_threshold
        self.settle_frames = settle_frames
        self.empty: np.ndarray | None = None
        self.holding = False
        self.arrivals = self.departures = 0
        self._previous: np.ndarray | None = None
        self._still = 0
        self._lock = threading.Lock()

    def learn_empty(self, image: np.ndarray) -> None:
        """The scene with no part in view: a still scene like it is not a part."""
        with self._lock:
            self.empty = _small_gray(image)

    def _differs_from_empty(self, small: np.ndarray) -> bool:
        if self.empty is None or self.empty.shape != small.shape:
            return True
        return float(np.mean(np.abs(small - self.empty))) > self.presence_threshold

    def admit(self, frame: Frame) -> Shot | None:
        if frame.image is None:  # a bad frame says nothing about the part in view
            return None
        small = _small_gray(frame.image)
        with self._lock:
            previous, self._previous = self._previous, small
            moving = (previous is None or previous.shape != small.shape
                      or float(np.mean(np.abs(small - previous))) > self.motion_threshold)
            if self.holding:
                if moving or not self._differs_from_empty(small):
                    self.holding, self._still = False, 0
                    self.departures += 1
                    logger.debug("hold: part left (%d)", self.departures)
                return None
            self._still = 0 if moving else self._still + 1
            if self._still >= self.settle_frames and self._differs_from_empty(small):
                self.holding = True
                self.arrivals += 1
                return Shot(self.counter.next(), frame.timestamp, wall_time(frame.timestamp), self.mode.value)
            return None


def make_gate(mode: str, counter: PartCounter | None = None, **hold: float) -> FreeRun | ExternalTrigger | HoldTracker:
    """The gate for a trigger mode's name."""
    try:
        kind = TriggerMode(mode)
    except ValueError:
        raise StationError(f"trigger mode must be one of {', '.join(m.value for m in TriggerMode)}, "
                           f"not {str(mode)[:40]!r}") from None
    if kind is TriggerMode.FREE_RUN:
        return FreeRun(counter)
    if kind is TriggerMode.HOLD:
        return HoldTracker(counter, **hold)
    return ExternalTrigger(kind, counter)


def gate_from_settings(settings, counter: PartCounter | None = None) -> FreeRun | ExternalTrigger | HoldTracker:
    """The gate the settings' `trigger_mode` names (hold mode with its thresholds)."""
    hold = {"motion_threshold": settings.hold_motion_threshold, "presence_threshold": settings.hold_presence_threshold,
            "settle_frames": settings.hold_settle_frames} if settings.trigger_mode == TriggerMode.HOLD.value else {}
    return make_gate(settings.trigger_mode, counter, **hold)
