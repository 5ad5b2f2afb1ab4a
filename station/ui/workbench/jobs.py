"""One-shot background jobs (scoring, refits, ViT training): a QObject worker moved to its own QThread.

The job's function runs in the worker thread and gets `progress(message, fraction)` and
`should_stop()`; results, errors and progress reach the GUI thread only through queued signals.
A cancel sets an event the function polls (or `progress` raises `JobCancelled` on its next call).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from station.core.errors import StationError

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job's function (through `progress`) once the engineer pressed Cancel."""


class _Worker(QObject):
    progress = Signal(str, float)
    data = Signal(object)  # anything extra the function hands out while running (curves, maps)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], stop: threading.Event) -> None:
        super().__init__()
        self._fn = fn
        self._stop = stop

    def _progress(self, message: str, fraction: float) -> None:
        if self._stop.is_set():
            raise JobCancelled()
        self.progress.emit(str(message), float(fraction))

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(progress=self._progress, should_stop=self._stop.is_set, emit=self.data.emit)
        except JobCancelled:
            self.cancelled.emit()
        except StationError as exc:
            if self._stop.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - a job's crash is shown, never lost in a thread
            log.exception("job %s failed", QThread.currentThread().objectName() or "station-job")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            if self._stop.is_set():
                self.cancelled.emit()
            else:
                self.done.emit(result)
        finally:
            self.finished.emit()


class Job(QObject):
    """Run `fn(progress=..., should_stop=..., emit=...)` once in a new QThread.

    Signals arrive in the thread that made the Job (the GUI thread). Keep a reference to the Job
    until `finished`; `wait()` joins the thread (tests, closing windows).
    """

    progress = Signal(str, float)
    data = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], name: str = "station-job", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = _Worker(fn, self._stop)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.data.connect(self.data)
        self._worker.done.connect(self.done)
        self._worker.failed.connect(self.failed)
        self._worker.cancelled.connect(self.cancelled)
        self._worker.finished.connect(self._thread.quit)
        self._worker.finished.connect(self._worker.deleteLater)
        self._thread.finished.connect(self._on_thread_finished)
        self._running = False

    def start(self) -> Job:
        self._running = True
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._running

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms) if self._thread.isRunning() else True

    def _on_thread_finished(self) -> None:
        self._running = False
        self.finished.emit()
