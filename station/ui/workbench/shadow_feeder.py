"""Shadow mode on the live line: the inference thread hands each result to a bounded queue (it never
waits), a worker thread judges the frame with the candidate recipe, and changed verdicts reach the
GUI as queued signals. When the worker falls behind, the oldest waiting frames are skipped and counted.
"""

from __future__ import annotations

import queue
import threading

from PySide6.QtCore import QObject, Qt, Signal

from station.core.errors import StationError
from station.core.live import LiveResult
from station.core.recipe import Recipe
from station.core.workbench import ShadowRun
from station.ui.live_service import LiveService

QUEUE_SIZE = 8


class ShadowFeeder(QObject):
    changed = Signal(object)  # VerdictChange
    stopped = Signal(str)  # why it stopped ("" when asked to)

    _change_from_worker = Signal(object)
    _stopped_from_worker = Signal(str)

    def __init__(self, service: LiveService, candidate: Recipe, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if service.recipe is None:
            raise StationError("the line runs no recipe: shadow mode needs one to compare with")
        self.service = service
        self.run = ShadowRun(service.recipe, candidate)
        self.skipped = 0
        self._queue: queue.Queue[LiveResult | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._stop = threading.Event()
        self._change_from_worker.connect(self.changed, Qt.ConnectionType.QueuedConnection)
        self._stopped_from_worker.connect(self._on_stopped, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.Thread(target=self._loop, name="station-shadow", daemon=True)
        self._thread.start()
        service.pipeline.result_ready.connect(self._offer)

    # -- inference thread -----------------------------------------------------------------------
    def _offer(self, item: LiveResult) -> None:
        if item.result is None or item.frame.image is None or self._stop.is_set():
            return
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()  # drop the oldest: shadow mode must not slow the line
                    self.skipped += 1
                except queue.Empty:
                    pass

    # -- shadow worker --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                break
            if item.result.recipe_hash != self.run.active.content_hash:
                self._stopped_from_worker.emit("the line switched recipe; start shadow mode again to compare "
                                               "with the new active recipe")
                return
            try:
                change = self.run.observe(item.frame.image, item.result, frame_id=item.frame.name)
            except StationError as exc:
                self._stopped_from_worker.emit(f"shadow mode stopped: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - shown, never lost in a thread
                self._stopped_from_worker.emit(f"shadow mode stopped: {type(exc).__name__}: {exc}")
                return
            if change is not None:
                self._change_from_worker.emit(change)

    # -- GUI thread -----------------------------------------------------------------------------
    def _on_stopped(self, why: str) -> None:
        self.stop()
        self.stopped.emit(why)

    def stop(self, timeout: float = 5.0) -> None:
        self.service.pipeline.result_ready.disconnect(self._offer)
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
