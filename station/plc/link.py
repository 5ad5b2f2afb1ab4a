"""The PLC link: PLC triggers become shots on the live line, and each result is told to the PLC only
once its row is safe in the result log (log before tell). Also loads the recipe the PLC selects, keeps
the heartbeat and READY in step with the line, and answers a part that gets no result in time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from station.core.errors import StationError
from station.core.inspector import Inspector
from station.core.live import LivePipeline, LiveResult
from station.core.sources import SourceState
from station.core.trigger import ExternalTrigger
from station.core.verdict import Verdict
from station.plc.handshake import Handshake, Outcome, PlcTrigger
from station.plc.registers import ErrorCode, Result, defect_code

logger = logging.getLogger(__name__)

BEAT_S = 0.25
RESULTS = {Verdict.OK: Result.OK, Verdict.NG: Result.NG, Verdict.REVIEW: Result.REVIEW}


def outcome_of(item: LiveResult, classes: list[str] | tuple[str, ...] = ()) -> Outcome:
    """What the PLC is told about an inspected part (a part with no result is NO_RESULT, never OK)."""
    result = item.result
    if result is None:
        return Outcome(Result.NO_RESULT, error=ErrorCode.NO_RECIPE)
    code = RESULTS.get(result.verdict, Result.NG)
    return Outcome(code, defect_code(result.label, code is Result.OK, classes),
                   None if code is Result.OK else result.top_cell)


class PlcLink:
    """Connects a Handshake to a LivePipeline whose gate is an ExternalTrigger. `load_recipe(number)`
    gives the Inspector for a recipe number the PLC selects (StationError when it cannot)."""

    def __init__(self, pipeline: LivePipeline, handshake: Handshake, result_timeout_s: float = 5.0,
                 load_recipe: Callable[[int], Inspector] | None = None) -> None:
        if not isinstance(pipeline.gate, ExternalTrigger):
            raise StationError("the PLC triggers the line: its trigger mode must be plc")
        if not 0.1 <= result_timeout_s <= 600:
            raise StationError(f"the PLC result timeout must be 0.1..600 s, not {result_timeout_s:g}")
        self.pipeline, self.handshake, self.gate = pipeline, handshake, pipeline.gate
        self.result_timeout_s, self.load_recipe = result_timeout_s, load_recipe
        self.told = self.late = 0  # results told; results that came after their part was answered
        self.latencies_ms: list[float] = []  # trigger to told, per part (bounded below)
        self._results: queue.Queue[LiveResult] = queue.Queue(maxsize=256)
        self._recipes: queue.Queue[int] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        handshake.on_trigger = self._on_trigger
        handshake.on_recipe = self._on_recipe
        pipeline.result_ready.connect(self._on_result)
        self._thread = threading.Thread(target=self._run, name="plc-teller", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 3.0) -> bool:
        self._stop.set()
        self.pipeline.result_ready.disconnect(self._on_result)
        self.handshake.on_trigger = self.handshake.on_recipe = None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def line_ready(self) -> bool:
        """A trigger can be served now: the line runs with a recipe, its camera delivers, and its result
        log takes rows (with on_failure=stop a failing log holds the line: triggers are refused, not lost)."""
        p = self.pipeline
        return (p.running and p.inspector is not None and p.state is SourceState.RUNNING
                and not (p.store is not None and p.store.hold_line))

    # -- called from the Modbus thread and the inference thread: quick ------------------------------
    def _on_trigger(self, trigger: PlcTrigger) -> None:
        try:
            self.gate.fire(trigger.part_id or None, token=trigger, at=trigger.at)
        except StationError as exc:
            logger.error("PLC trigger not taken: %s", exc)
            self.handshake.finish(trigger, Outcome(Result.NO_RESULT, error=ErrorCode.RESULT_TIMEOUT))

    def _on_recipe(self, number: int) -> None:
        try:
            self._recipes.put_nowait(number)
        except queue.Full:
            self.handshake.recipe_done(number, False)

    def _on_result(self, item: LiveResult) -> None:
        if item.shot is not None and isinstance(item.shot.token, PlcTrigger):
            try:
                self._results.put(item, timeout=1.0)
            except queue.Full:  # the teller is far behind: the part's timeout answers the PLC
                logger.error("PLC result of part %s dropped: the PLC link cannot keep up", item.shot.part_id)

    # -- the teller thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + BEAT_S
                    if self.pipeline.running:
                        self.handshake.beat()
                    self.handshake.set_available(self.line_ready())
                self._serve_recipe()
                try:
                    item = self._results.get(timeout=0.05)
                except queue.Empty:
                    self._check_timeout()
                    continue
                self._tell(item)
            except Exception:  # noqa: BLE001 - the teller must not die: the PLC would wait forever
                logger.exception("PLC link error")
                time.sleep(0.1)

    def _tell(self, item: LiveResult) -> None:
        trigger: PlcTrigger = item.shot.token
        inspector = self.pipeline.inspector
        outcome = outcome_of(item, inspector.recipe.doc.classes if inspector is not None else ())
        if item.result is not None and self.pipeline.store is not None:
            left = self.result_timeout_s - (time.perf_counter() - trigger.at)
            if item.log is None or not item.log.wait(max(0.0, left)):
                state = item.log.state if item.log is not None else "not handed to the log"
                logger.error("part %s: its row is not safe (%s): the PLC is told NO_RESULT", item.shot.part_id, state)
                outcome = Outcome(Result.NO_RESULT, error=ErrorCode.NOT_LOGGED)
        extra = {"part": item.shot.part_id, "verdict": item.verdict.value if item.verdict else "",
                 "score": float(item.result.score) if item.result is not None else None}
        if self.handshake.finish(trigger, outcome, extra):
            self.told += 1
            if len(self.latencies_ms) < 1_000_000:
                self.latencies_ms.append(self.handshake.last["latency_ms"])
        else:
            self.late += 1
            logger.warning("part %s: result came after the PLC was answered (its row is logged)", item.shot.part_id)

    def _check_timeout(self) -> None:
        trigger = self.handshake.trigger
        if trigger is None or time.perf_counter() - trigger.at < self.result_timeout_s:
            return
        self.gate.cancel(trigger)
        if self.handshake.finish(trigger, Outcome(Result.NO_RESULT, error=ErrorCode.RESULT_TIMEOUT)):
            logger.error("PLC part %s: no result within %.1f s", trigger.part_id, self.result_timeout_s)

    def _serve_recipe(self) -> None:
        try:
            number = self._recipes.get_nowait()
        except queue.Empty:
            return
        ok = False
        if self.load_recipe is not None:
            try:
                self.pipeline.set_inspector(self.load_recipe(number))
                ok = True
                logger.info("PLC selected recipe %d", number)
            except StationError as exc:
                logger.error("PLC recipe %d cannot be loaded: %s", number, exc)
        self.handshake.recipe_done(number, ok)
