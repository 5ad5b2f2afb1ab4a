"""The live line as the GUI sees it: LivePipeline's thread callbacks turned into queued Qt signals.

Results are not pushed one signal per frame: the inference thread adds them to a small pending list
and posts one notification; the GUI takes everything pending when it gets to it (latest frame wins
for the picture, every result for the strip). A slow GUI therefore never builds a queue.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque

from PySide6.QtCore import QObject, Qt, Signal

from station.core.combine import DEFAULT_RULE
from station.core.inspector import Inspector
from station.core.live import LivePipeline, LiveResult, named
from station.core.live_measure import Rate
from station.core.recipe import Recipe
from station.core.results import ResultStore
from station.core.errors import StationError
from station.core.sources import Source, SourceState
from station.core.trigger import TriggerMode
from station.core.watchdog import CameraWatch
from station.ui.display import ViewChoice, compose

logger = logging.getLogger(__name__)

def make_inspector(recipes: list[Recipe], combine: str = DEFAULT_RULE, parallel: bool = False,
                   engine_threads: int = 0):
    """The line's inspector: None without a recipe, an Inspector for one, a MultiInspector for several (its
    engines on a thread each when `parallel`). `engine_threads` > 0 sets torch's CPU threads when an engine of
    the line runs on torch (a process-wide setting; 0 leaves torch's default)."""
    from station.core.multi import MultiInspector

    if not recipes:
        return None
    if engine_threads > 0 and "torch" in sys.modules:  # only an engine that runs on torch has imported it
        sys.modules["torch"].set_num_threads(engine_threads)
    return Inspector(recipes[0]) if len(recipes) == 1 else MultiInspector(recipes, combine, parallel)


class LiveService(QObject):
    """One station line: source, its recipes (one, or several run together on every frame and combined by
    the line's rule) and the pipeline between them, with Qt signals."""

    results_ready = Signal(object)  # list[LiveResult], oldest first; at most one emission per GUI turn
    state_changed = Signal(str, str)  # source state, message
    line_finished = Signal()  # the source ran out (end of a folder or a video) or failed
    run_state_changed = Signal(str)  # "running", "paused", "stopped"
    recipe_changed = Signal()
    source_changed = Signal()
    results_committed = Signal()  # rows reached the result log: a shown verdict may now be marked logged
    logging_changed = Signal(str)  # the result log's problem ("" when healthy again)

    _notify = Signal()
    _state = Signal(str, str)
    _finished = Signal()
    _committed = Signal()
    _logging = Signal(str)

    def __init__(self, source: Source, recipe: Recipe | list[Recipe] | None, recipe_error: str = "", parent=None,
                 max_pending: int = 64, results: ResultStore | None = None, results_error: str = "",
                 watch: CameraWatch | None = None, combine: str = DEFAULT_RULE, gate=None, parallel: bool = False,
                 engine_threads: int = 0) -> None:
        super().__init__(parent)
        self.recipes = _as_list(recipe)
        self.recipe = self.recipes[0] if self.recipes else None  # the lead recipe (its registration is the line's)
        self.recipe_error, self.combine = recipe_error, combine
        self.parallel, self.engine_threads = parallel, engine_threads  # how the line's engines run (settings)
        self.results, self.results_error = results, results_error
        self.pipeline = LivePipeline(source, self._make_inspector(), watch=watch, store=results,
                                     gate=gate)
        self.plc = None  # the PLC link (station/plc/service.py) when the settings enable it; stopped first
        self._shutdown_ok: bool | None = None  # set by shutdown()
        self.logging_close_message = ""  # what closing the result log could not save (set by shutdown)
        self._commit_posted = False
        self.displayed_rate = Rate()
        self.painted_count = 0
        self._pending: deque[LiveResult] = deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._posted = False
        self._run_state = "stopped"
        #: what the live view shows over the frame; the GUI replaces it whole, the inference thread reads it
        self.view_choice = ViewChoice()
        # worker threads emit these private signals; Qt queues them to this object's (the GUI) thread
        self._notify.connect(self._on_notify, Qt.ConnectionType.QueuedConnection)
        self._state.connect(self._on_state, Qt.ConnectionType.QueuedConnection)
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._committed.connect(self._on_committed, Qt.ConnectionType.QueuedConnection)
        self._logging.connect(self.logging_changed, Qt.ConnectionType.QueuedConnection)
        self.pipeline.result_ready.connect(self._from_worker_result)
        if results is not None:
            results.committed.connect(self._from_writer_committed)
            results.problem_changed.connect(self._from_writer_problem)
        self.pipeline.state_changed.connect(self._from_worker_state)
        self.pipeline.finished.connect(self._from_worker_finished)

    # -- worker side (never touches a widget) ------------------------------------------------------
    def _from_writer_committed(self, _tickets) -> None:
        """In the result writer: one notification at a time, however many batches commit meanwhile."""
        with self._lock:
            post, self._commit_posted = not self._commit_posted, True
        if post:
            self._committed.emit()

    def _from_writer_problem(self, problem: str) -> None:
        self._logging.emit(problem)

    @property
    def logging_problem(self) -> str:
        """What the operator must know about the result log ("" while every result is logged)."""
        if self.results is None:
            return self.results_error or "results are not being logged"
        return self.results.problem

    def _from_worker_result(self, item: LiveResult) -> None:
        try:  # the picture is composed here, beside the engines: the GUI thread only draws it
            item.display = compose(item, self.view_choice)
        except Exception:  # noqa: BLE001 - the verdict still goes out; the live view composes the picture itself
            logger.exception("composing the live picture of %s failed", item.frame.name)
        with self._lock:
            self._pending.append(item)
            post, self._posted = not self._posted, True
        if post:
            self._notify.emit()

    def _from_worker_state(self, state: SourceState, message: str) -> None:
        self._state.emit(state.value, message)

    def _from_worker_finished(self) -> None:
        self._finished.emit()

    # -- GUI side -----------------------------------------------------------------------------------
    def _on_committed(self) -> None:
        with self._lock:
            self._commit_posted = False
        self.results_committed.emit()

    def _on_notify(self) -> None:
        items = self.take_results()
        if items:
            self.results_ready.emit(items)

    def take_results(self) -> list[LiveResult]:
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._posted = False
        return items

    def _on_state(self, state: str, message: str) -> None:
        self.state_changed.emit(state, message)

    def _on_finished(self) -> None:
        self.pipeline.stop()
        self._set_run_state("stopped")
        self.line_finished.emit()

    def _set_run_state(self, state: str) -> None:
        if state != self._run_state:
            self._run_state = state
            self.run_state_changed.emit(state)

    @property
    def run_state(self) -> str:
        return self._run_state

    @property
    def source(self) -> Source:
        return self.pipeline.source

    def start(self) -> None:
        if self.pipeline.running:
            self.pipeline.resume()
        else:
            self.pipeline.start()
        self._set_run_state("running")

    def stop(self) -> None:
        self.pipeline.stop()
        self.take_results()
        self._set_run_state("stopped")

    def pause(self) -> None:
        if self._run_state == "running":
            self.pipeline.pause()
            self._set_run_state("paused")

    def toggle_pause(self) -> None:
        if self._run_state == "paused":
            self.start()
        else:
            self.pause()

    def trigger(self) -> None:
        """Inspect one frame now (software trigger); a stopped line starts paused for it."""
        gate = self.pipeline.gate
        if getattr(gate, "mode", None) is TriggerMode.SOFTWARE:
            try:
                gate.fire()  # the button is this line's trigger: the next frame captured is the part
            except StationError as exc:
                self.state_changed.emit(self.pipeline.state.value, str(exc))
        self.pipeline.trigger()
        if self._run_state == "stopped":
            self._set_run_state("paused")

    def set_source(self, source: Source) -> None:
        self.pipeline.set_source(source)
        self.take_results()
        self.displayed_rate.reset()
        self.source_changed.emit()

    def set_recipe(self, recipe: Recipe | list[Recipe] | None, error: str = "", combine: str | None = None) -> None:
        """Run the line on `recipe` (one or several); `combine` keeps the line's rule unless given."""
        self.recipes = _as_list(recipe)
        self.recipe, self.recipe_error = (self.recipes[0] if self.recipes else None), error
        self.combine = combine or self.combine
        old = self.pipeline.inspector
        self.pipeline.set_inspector(self._make_inspector())
        if old is not None and hasattr(old, "close") and not self.pipeline.running:
            old.close()  # its engine threads (parallel); one a running line may still be inside keeps them, idle
        self.recipe_changed.emit()

    def _make_inspector(self):
        return make_inspector(self.recipes, self.combine, self.parallel, self.engine_threads)

    def recipe_of(self, engine: str) -> Recipe | None:
        """The line's recipe of `engine`, if it runs one."""
        return next((r for r in self.recipes if r.doc.engine.name == engine), None)

    def replace_recipe(self, recipe: Recipe) -> None:
        """Put `recipe` in place of the line's recipe of the same engine (the lead's when none is), keeping the
        line's other recipes and rule: how the workbench publishes, activates or rolls back one engine's recipe."""
        recipes = list(self.recipes)
        same = self.recipe_of(recipe.doc.engine.name)
        if same is not None:
            recipes[recipes.index(same)] = recipe
        elif recipes:
            recipes[0] = recipe
        else:
            recipes = [recipe]
        self.set_recipe(recipes)

    @property
    def engine_names(self) -> list[str]:
        """The names of the line's recipes, in its order (what each result's `engines` is keyed by)."""
        inspector = self.pipeline.inspector
        return [] if inspector is None else list(named(inspector))

    def record_painted(self, item: LiveResult) -> None:
        """Called by the live view once it has painted a new result: display rate and latency."""
        now = time.perf_counter()
        self.painted_count += 1
        self.displayed_rate.tick(now)
        self.pipeline.times.add("display", (now - item.done_at) * 1e3)
        self.pipeline.times.add("painted", (now - item.frame.timestamp) * 1e3)

    def shutdown(self) -> bool:
        """Stop the line's threads (the window is closing); True when none is left behind. The result log
        is then flushed as far as it can be; what it could not save is in `logging_close_message` (a
        logging problem, never the camera's). A second call answers what the first found."""
        if self._shutdown_ok is not None:
            return self._shutdown_ok
        plc_ok = self.plc.stop() if self.plc is not None else True  # no trigger is taken for a closing line
        stopped = self.pipeline.stop()
        ok = stopped and plc_ok
        inspector = self.pipeline.inspector
        if stopped and hasattr(inspector, "close"):
            inspector.close()  # the engines' threads of a parallel line; nothing is inside it any more
        for signal, slot in ((self.pipeline.result_ready, self._from_worker_result),
                             (self.pipeline.state_changed, self._from_worker_state),
                             (self.pipeline.finished, self._from_worker_finished)):
            signal.disconnect(slot)  # a thread that outlived the join must not reach a deleted QObject
        if self.results is not None:
            self.results.committed.disconnect(self._from_writer_committed)
            self.results.problem_changed.disconnect(self._from_writer_problem)
            self.results.close()
            self.logging_close_message = self.results.close_message
        self.take_results()
        self._set_run_state("stopped")
        self._shutdown_ok = ok
        return ok


def _as_list(recipe: Recipe | list[Recipe] | None) -> list[Recipe]:
    if recipe is None:
        return []
    return list(recipe) if isinstance(recipe, (list, tuple)) else [recipe]
