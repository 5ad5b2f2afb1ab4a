"""Cameras that misbehave on purpose: a read that blocks, a frozen sensor, bad frames, a driver that raises.

`FakeCapture` stands in for cv2.VideoCapture under CameraSource (monkeypatch `cv2.VideoCapture` with
`fake_video_capture(...)`); the Source subclasses feed LivePipeline directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from station.core.sources import Frame, Source, SourceState


def noisy(image: np.ndarray, seed: int) -> np.ndarray:
    """`image` with sensor-like noise: the lowest bit of every pixel drawn at random."""
    rng = np.random.default_rng(seed)
    return image ^ rng.integers(0, 2, image.shape, dtype=np.uint8)


BAD_FRAMES = {
    "two channels": lambda: np.zeros((48, 64, 2), np.uint8),
    "one row": lambda: np.zeros((1, 1000, 3), np.uint8),
    "signed 16 bit": lambda: np.zeros((48, 64, 3), np.int16),
    "float": lambda: np.zeros((48, 64, 3), np.float32),
    "empty": lambda: np.zeros((0, 0, 3), np.uint8),
}


class FakeCapture:
    """What CameraSource uses of cv2.VideoCapture: frame i is `frame_at(i)`; None there means unplugged.
    While `hold` is set, read() blocks until `release` is set (a driver stuck in a call)."""

    def __init__(self, frame_at: Callable[[int], np.ndarray | None], fps: float = 50.0, opened: bool = True,
                 hold: threading.Event | None = None, release: threading.Event | None = None) -> None:
        self.frame_at, self.fps, self.opened = frame_at, fps, opened
        self.hold, self.release_event = hold, release
        self.reads = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.hold is not None and self.hold.is_set():
            self.release_event.wait(30)
        time.sleep(1.0 / self.fps)
        image = self.frame_at(self.reads)
        self.reads += 1
        return (image is not None), image

    def release(self) -> None:
        self.opened = False


def fake_video_capture(captures: list, raises: int = 0):
    """A stand-in for cv2.VideoCapture: the first `raises` calls raise cv2.error (a driver failing while
    opening), then each call hands out the next of `captures` (the last one again when they run out)."""
    calls = {"n": 0}

    def make(index, backend=None):
        calls["n"] += 1
        if calls["n"] <= raises:
            raise cv2.error("VIDEOIO(V4L2): can't open camera by index (driver busy)")
        return captures[min(calls["n"] - raises, len(captures)) - 1]

    make.calls = calls
    return make


class StallingCamera(Source):
    """A live camera of noisy frames whose read() blocks while `hold` is set, until `release` is set."""

    live = True
    sensor = True

    def __init__(self, image: np.ndarray, fps: float = 50.0) -> None:
        super().__init__()
        self.image, self.fps = image, fps
        self.nominal_fps = fps
        self.description = "stalling camera"
        self.hold, self.release = threading.Event(), threading.Event()
        self.blocked = threading.Event()  # set while a read() is stuck

    def read(self) -> Frame | None:
        if self.state is SourceState.CLOSED:
            return None
        if self.hold.is_set():
            self.blocked.set()
            self.release.wait(30)
            self.blocked.clear()
        time.sleep(1.0 / self.fps)
        return self._frame(noisy(self.image, self._index), f"stalling #{self._index}")


class FrozenCamera(Source):
    """A live sensor that sends `fresh` new frames, then one buffer over and over for `frozen_s` seconds,
    then new frames again."""

    live = True
    sensor = True

    def __init__(self, image: np.ndarray, fresh: int = 5, frozen_s: float = 1.0, fps: float = 50.0) -> None:
        super().__init__()
        self.image, self.fresh, self.frozen_s, self.fps = image, fresh, frozen_s, fps
        self.description = "frozen camera"
        self._frozen: np.ndarray | None = None
        self._frozen_until: float | None = None
        self.names: list[str] = []  # every frame delivered, in order, and whether it was a repeat
        self.repeats = 0

    def read(self) -> Frame | None:
        if self.state is SourceState.CLOSED:
            return None
        time.sleep(1.0 / self.fps)
        if self._index == self.fresh and self._frozen_until is None:
            self._frozen = noisy(self.image, 10_000)
            self._frozen_until = time.monotonic() + self.frozen_s
        if self._frozen_until is not None and time.monotonic() < self._frozen_until:
            self.repeats += 1
            return self._frame(self._frozen.copy(), f"frozen #{self._index}")
        return self._frame(noisy(self.image, self._index), f"fresh #{self._index}")
