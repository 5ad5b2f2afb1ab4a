"""Garbage collection in the GUI thread only.

Python's cyclic collector runs in whichever thread happens to allocate. When it frees a PySide wrapper in
one of the station's worker threads (capture, inference, result log, training), shiboken hands the C++
deletion to the GUI thread, and that crashed the test process with a segmentation fault inside
`Shiboken::BindingManager::runDeletionInMainThread` (a closed window's objects, collected while the next
window's threads ran). While a station window is open, automatic collection is off and a timer in the GUI
thread collects instead. Reference counting still frees almost everything at once; only cycles wait.
What exists when the window opens (the libraries, the recipe) is frozen out of collection (`gc.freeze`), so
a full collection in the GUI thread scans only what came since: without that, one took 120 ms and stalled
the live view (`station bench --gui --seconds 70`).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

_active = 0  # collectors running; automatic collection is back on when the last one stops


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None, interval_ms: int = 250) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._running = False

    def start(self) -> None:
        global _active
        if self._running:
            return
        self._running = True
        _active += 1
        if _active == 1:
            gc.collect()
            gc.freeze()
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        """Collect once more here, then give collection back to Python if no other window needs it."""
        global _active
        if not self._running:
            return
        self._running = False
        self._timer.stop()
        _active -= 1
        if _active == 0:
            gc.unfreeze()
            gc.collect()
            gc.enable()
        else:
            gc.collect()

    def collect(self) -> None:
        """The collection Python would have made by now, by generation, as its thresholds say."""
        counts, limits = gc.get_count(), gc.get_threshold()
        generation = -1
        for g in range(3):
            if limits[g] and counts[g] > limits[g]:
                generation = g
        if generation >= 0:
            gc.collect(generation)
