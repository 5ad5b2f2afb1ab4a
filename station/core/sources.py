"""Image sources behind one interface: a USB/UVC camera (OpenCV), a video file, an image folder,
and the demo line (the bundled images replayed as a live camera).

`read()` never raises: a frame, or None with the source's `state` and `message` telling why.
A camera that is lost, or whose driver raises while opening, is reopened after `retry_s` seconds,
then after twice that, up to `retry_max_s`. Live sources (`live = True`) may have frames dropped by
the consumer; file and folder sources expect every frame to be inspected. A frame that is not an
image that can be inspected (station/core/frame_check.py) comes as a Frame without an image and with
`error` "bad frame: <why>": one bad frame, and the source goes on.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from station.core.errors import SourceError, StationError
from station.core.frame_check import frame_problem
from station.core.imageio import is_image_file, read_image, to_rgb

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"})


class SourceState(str, Enum):
    CLOSED = "closed"
    RUNNING = "running"
    LOST = "camera lost, reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    # said by the live line's watchdog about a source that claims to be running (station/core/live.py)
    STALLED = "camera stalled"
    FROZEN = "camera frozen"


@dataclass
class Frame:
    image: np.ndarray | None  # RGB uint8; None when this item could not be read (see `error`)
    index: int
    timestamp: float  # time.perf_counter() when the frame was captured
    name: str  # file name, or "camera 0 #123"
    error: str = ""


class Source(ABC):
    live: bool = False
    #: frames come from an image sensor, whose noise makes two real frames differ: a bit-identical
    #: repeat means the driver hands over an old buffer (a frozen camera), not a still scene
    sensor: bool = False
    description: str = ""

    def __init__(self) -> None:
        self.state = SourceState.CLOSED
        self.message = ""
        self.reason = ""  # why no frame comes now (e.g. "camera 2 not found"); "" while frames come
        self.nominal_fps: float | None = None  # the frame rate the source states, where it states one
        self._index = 0

    def open(self) -> None:
        """Open the source; failures set `state`/`message` (and raise SourceError for file sources)."""
        self.state = SourceState.RUNNING

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:
        self.state = SourceState.CLOSED

    def _frame(self, image: np.ndarray | None, name: str, error: str = "") -> Frame:
        frame = Frame(image, self._index, time.perf_counter(), name, error)
        self._index += 1
        return frame

    def _checked(self, image: np.ndarray, name: str) -> Frame:
        """A frame of `image` (RGB uint8 already), or a bad frame that says why it cannot be inspected."""
        problem = frame_problem(image)
        return self._frame(None, name, f"bad frame: {problem}") if problem else self._frame(image, name)

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CameraSource(Source):
    """A USB/UVC camera by device index. Unplugging, or a driver that raises while opening, sets LOST;
    it is reopened after `retry_s`, backing off to `retry_max_s` while it stays away."""

    live = True
    sensor = True
    MAX_FPS = 1000.0  # a driver stating more is not believed (the watchdog then measures the rate)

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None,
                 exposure: float | None = None, retry_s: float = 1.0, backend: int = cv2.CAP_ANY,
                 retry_max_s: float = 5.0) -> None:
        super().__init__()
        self.index, self.width, self.height, self.exposure = index, width, height, exposure
        self.retry_s, self.retry_max_s, self.backend = retry_s, max(retry_s, retry_max_s), backend
        self.description = f"camera {index}"
        self._cap: cv2.VideoCapture | None = None
        self._next_try = 0.0
        self._delay = retry_s  # the wait before the next try; doubles while the camera stays away

    def _try_open(self) -> bool:
        """Open the device; on failure `reason` says why and the next try is scheduled."""
        cap = None
        try:
            cap = cv2.VideoCapture(self.index, self.backend)
            if not cap.isOpened():
                cap.release()
                return self._retry_later(f"camera {self.index} not found")
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.exposure is not None:
                cap.set(cv2.CAP_PROP_EXPOSURE, self.exposure)  # ignored by cameras that do not allow it
            fps = float(cap.get(cv2.CAP_PROP_FPS))
        except Exception as exc:  # noqa: BLE001 - a driver may raise anything; the camera is retried, not lost for good
            logger.warning("opening camera %s raised %s: %s", self.index, type(exc).__name__, exc)
            if cap is not None:
                self._release(cap)
            return self._retry_later(f"camera {self.index} could not be opened ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:200]})")
        self.nominal_fps = fps if 0 < fps <= self.MAX_FPS else None
        self._cap, self._delay, self.reason = cap, self.retry_s, ""
        return True

    def _retry_later(self, reason: str) -> bool:
        self.reason = reason
        self.message = f"{reason}; retrying in {self._delay:g} s"
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max_s)
        return False

    def _release(self, cap: cv2.VideoCapture) -> None:
        try:
            cap.release()
        except Exception as exc:  # noqa: BLE001 - a device that will not let go is left to the driver
            logger.warning("releasing camera %s raised %s: %s", self.index, type(exc).__name__, exc)

    def open(self) -> None:
        self._delay = self.retry_s
        if self._try_open():
            self.state, self.message = SourceState.RUNNING, ""
        else:
            self.state = SourceState.LOST

    def read(self) -> Frame | None:
        if self.state is SourceState.CLOSED:
            return None
        if self._cap is None:
            if time.monotonic() < self._next_try:
                time.sleep(min(0.05, self.retry_s))
                return None
            if not self._try_open():
                self.state = SourceState.LOST
                return None
            self.state, self.message = SourceState.RUNNING, ""
        why = "lost"
        try:
            ok, image = self._cap.read()
        except Exception as exc:  # noqa: BLE001 - a driver that raises on read is a lost camera, and is reopened
            logger.warning("reading camera %s raised %s: %s", self.index, type(exc).__name__, exc)
            ok, image, why = False, None, f"lost ({type(exc).__name__})"
        if not ok or image is None:
            self._release(self._cap)
            self._cap = None
            self._delay, self._next_try = self.retry_s, 0.0  # a camera just lost is tried again at once
            self.reason = f"camera {self.index} {why}"
            self.state, self.message = SourceState.LOST, f"{self.reason}; reconnecting"
            return None
        name = f"camera {self.index} #{self._index}"
        problem = frame_problem(image)
        if problem:
            return self._frame(None, name, f"bad frame: {problem}")
        if image.ndim == 3 and image.shape[2] in (3, 4):
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        return self._frame(to_rgb(image), name)

    def close(self) -> None:
        if self._cap is not None:
            self._release(self._cap)
            self._cap = None
        super().close()


class VideoSource(Source):
    def __init__(self, path: str | Path, loop: bool = False) -> None:
        super().__init__()
        self.path, self.loop = Path(path), loop
        self.description = f"video {self.path.name}"
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file {self.path} (unsupported or corrupt)")
        self._cap = cap
        super().open()

    def read(self) -> Frame | None:
        if self._cap is None or self.state is not SourceState.RUNNING:
            return None
        ok, image = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            self.state, self.message = SourceState.ENDED, f"end of {self.path.name}"
            return None
        name = f"{self.path.name} #{self._index}"
        problem = frame_problem(image)
        if problem:
            return self._frame(None, name, f"bad frame: {problem}")
        return self._frame(to_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image), name)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


class FolderSource(Source):
    """Every image file in a folder (recursively, sorted); a corrupt file yields a frame with `error`."""

    def __init__(self, path: str | Path, loop: bool = False, recursive: bool = True) -> None:
        super().__init__()
        self.path, self.loop, self.recursive = Path(path), loop, recursive
        self.description = f"folder {self.path.name}"
        self.files: list[Path] = []
        self._pos = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image folder not found: {self.path}")
        pattern = self.path.rglob("*") if self.recursive else self.path.iterdir()
        self.files = sorted(p for p in pattern if is_image_file(p))
        if not self.files:
            raise SourceError(f"image folder {self.path} has no images")
        self._pos = 0
        super().open()

    def read(self) -> Frame | None:
        if self.state is not SourceState.RUNNING:
            return None
        if self._pos >= len(self.files):
            if not self.loop:
                self.state, self.message = SourceState.ENDED, f"all {len(self.files)} images read"
                return None
            self._pos = 0
        path = self.files[self._pos]
        self._pos += 1
        name = path.relative_to(self.path).as_posix()
        try:
            return self._checked(read_image(path), name)
        except (StationError, cv2.error) as exc:  # one file that cannot be read or decoded: the rest are read
            return self._frame(None, name, " ".join(str(exc).split()))


class DemoLineSource(FolderSource):
    """The bundled demo images replayed as a live camera at `fps`, in a shuffled endless order."""

    live = True

    def __init__(self, path: str | Path | None = None, fps: float = 30.0, seed: int = 0) -> None:
        if path is None:
            from station.core.resources import demo_split

            path = demo_split("test")
        super().__init__(path, loop=True)
        self.fps, self.seed = fps, seed
        self.nominal_fps = fps if fps > 0 else None
        self.description = "demo line"
        self._next = 0.0
        self._cache: dict[Path, np.ndarray] = {}

    def open(self) -> None:
        super().open()
        random.Random(self.seed).shuffle(self.files)
        self._next = time.perf_counter()

    def read(self) -> Frame | None:
        if self.state is not SourceState.RUNNING:
            return None
        if self.fps > 0:  # pace like a camera: block until the next frame is due
            delay = self._next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next + 1.0 / self.fps, time.perf_counter() - 1.0 / self.fps)
        if self._pos >= len(self.files):
            self._pos = 0
        path = self.files[self._pos]
        self._pos += 1
        image = self._cache.get(path)
        if image is None:
            try:
                image = self._cache[path] = read_image(path)
            except (StationError, cv2.error) as exc:
                return self._frame(None, path.name, " ".join(str(exc).split()))
        return self._checked(image.copy(), path.relative_to(self.path).as_posix())


def make_source(spec: str, fps: float = 30.0) -> Source:
    """`demo`, `camera:N` (or a bare device index N), a video file, or an image folder."""
    spec = (spec or "").strip()
    if not spec:
        raise SourceError("no source given (use demo, camera:N, a video file or an image folder)")
    if spec == "demo":
        return DemoLineSource(fps=fps)
    if spec.startswith("demo:"):
        return DemoLineSource(spec[5:], fps=fps)
    index = spec.removeprefix("camera:")
    if index.isdigit():
        return CameraSource(int(index))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return VideoSource(path)
        if is_image_file(path):
            return _SingleImage(path)
        raise SourceError(f"{path} is neither an image, a video nor a folder")
    raise SourceError(f"source not found: {spec} (use demo, camera:N, a video file or an image folder)")


class _SingleImage(FolderSource):
    def __init__(self, path: Path) -> None:
        super().__init__(path.parent)
        self.file = path
        self.description = f"image {path.name}"

    def open(self) -> None:
        self.files, self._pos = [self.file], 0
        Source.open(self)
