"""The PLC handshake as a state machine, free of any protocol: trigger -> busy -> result + done -> the
PLC acknowledges -> ready. The Modbus server (station/plc/modbus.py) feeds it the PLC's writes and
reads its registers; the station link (station/plc/link.py) feeds it results once they are logged.

Every write the PLC makes gets one defined answer: taken (with the value the register holds after it),
or refused with a Modbus exception code and an ErrorCode in the status block. A refused multi-register
write changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

from station.core.live import Signal
from station.plc.registers import (COMMAND_LEN, MAP_VERSION, STATUS_LEN, U16_MAX, Command, ErrorCode, Result,
                                   Status, join_u32, split_u32)

logger = logging.getLogger(__name__)

# Modbus exception codes (the protocol's numbers; pymodbus names them ExcCodes)
ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_BUSY = 2, 3, 6


class Phase(str, Enum):
    READY = "ready"
    BUSY = "busy"
    DONE = "done"


@dataclass(frozen=True)
class PlcTrigger:
    """A trigger the PLC gave: its part ID (0: none given) and when it came."""

    part_id: int
    at: float  # time.perf_counter()
    wall: datetime


@dataclass(frozen=True)
class Outcome:
    """What the station tells the PLC about one part."""

    result: Result
    defect_class: int = 0
    cell: tuple[int, int] | None = None  # (col, row)
    error: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True)
class Refusal:
    exception: int  # Modbus exception code
    error: ErrorCode
    why: str


class Handshake:
    """Thread-safe: the Modbus server's thread writes commands, the station's threads tell results.

    `on_trigger(PlcTrigger)` and `on_recipe(number)` are called outside the lock, in the thread of the
    PLC's write; they must return quickly. `changed` fires with `snapshot()` after every change.
    """

    def __init__(self, recipes: dict[int, str] | None = None, active_recipe: int = 0) -> None:
        self._lock = threading.Lock()
        self._status = [0] * STATUS_LEN
        self._command = [0] * COMMAND_LEN
        self._status[Status.MAP_VERSION] = MAP_VERSION
        self._status[Status.ACTIVE_RECIPE] = active_recipe
        self.recipes = dict(recipes or {})
        self.phase = Phase.READY
        self.available = False  # the line runs with a recipe: only then is READY 1
        self.switching = 0  # a recipe number being loaded (0: none)
        self.trigger: PlcTrigger | None = None  # the part being inspected
        self.counts = {"total": 0, "ok": 0, "ng": 0, "review": 0}
        self.refused = 0
        self.connections = 0
        self.on_trigger: Callable[[PlcTrigger], None] | None = None
        self.on_recipe: Callable[[int], None] | None = None
        self.changed = Signal()
        self.last: dict = {}  # the last result told: part_id, verdict, ... (for the OPC UA mirror)
        self._show()

    # -- what the PLC reads ----------------------------------------------------------------------
    def status_registers(self) -> list[int]:
        with self._lock:
            return list(self._status)

    def command_registers(self) -> list[int]:
        with self._lock:
            return list(self._command)

    def snapshot(self) -> dict:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict:
        return {"phase": self.phase.value, "ready": bool(self._status[Status.READY]),
                "error_code": self._status[Status.ERROR_CODE], "active_recipe": self._status[Status.ACTIVE_RECIPE],
                "counts": dict(self.counts), "last": dict(self.last), "available": self.available}

    # -- the PLC's writes (Modbus thread) ---------------------------------------------------------
    def write_commands(self, offset: int, values: list[int]) -> tuple[Refusal | None, list[int]]:
        """Apply a write of `values` to the command block at `offset`: (None, the registers' values after
        it) when taken, (Refusal, []) when refused; a refused write changes nothing but ERROR_CODE."""
        calls: list[Callable[[], None]] = []
        with self._lock:
            if offset < 0 or offset + len(values) > COMMAND_LEN:
                refusal = Refusal(ILLEGAL_ADDRESS, ErrorCode.BAD_VALUE, "outside the command block")
            else:
                refusal = self._check(offset, values)
            if refusal is not None:
                self.refused += 1
                self._status[Status.ERROR_CODE] = refusal.error
                if self.refused <= 20 or self.refused % 1000 == 0:  # a PLC that keeps at it does not flood the log
                    logger.warning("PLC write refused (%s): command offset %d = %s (%d refused so far)", refusal.why,
                                   offset, values[:COMMAND_LEN], self.refused)
                snap = self._snapshot()
            else:
                for i, value in enumerate(values):
                    self._command[offset + i] = value
                for i in range(offset, offset + len(values)):
                    calls += self._act(Command(i)) if i in Command._value2member_map_ else []
                self._show()
                snap = self._snapshot()
                after = self._command[offset:offset + len(values)]
        for call in calls:
            call()
        self.changed.emit(snap)
        return (refusal, []) if refusal is not None else (None, after)

    def refuse_status_write(self) -> Refusal:
        with self._lock:
            self.refused += 1
            self._status[Status.ERROR_CODE] = ErrorCode.READ_ONLY
            snap = self._snapshot()
        self.changed.emit(snap)
        return Refusal(ILLEGAL_ADDRESS, ErrorCode.READ_ONLY, "the status block is read-only")

    def _check(self, offset: int, values: list[int]) -> Refusal | None:
        for i, value in enumerate(values):
            reg = offset + i
            if not isinstance(value, int) or not 0 <= value <= U16_MAX:
                return Refusal(ILLEGAL_VALUE, ErrorCode.BAD_VALUE, f"register {reg}: {value!r} is not 0..65535")
            if reg in (Command.TRIGGER, Command.ACK, Command.ERROR_RESET) and value not in (0, 1):
                return Refusal(ILLEGAL_VALUE, ErrorCode.BAD_VALUE, f"{Command(reg).name} takes 0 or 1, not {value}")
            if reg == Command.TRIGGER and value == 1:
                if self.phase is Phase.BUSY or self.switching:
                    return Refusal(DEVICE_BUSY, ErrorCode.TRIGGER_WHILE_BUSY, "a trigger while busy")
                if self.phase is Phase.DONE:
                    return Refusal(DEVICE_BUSY, ErrorCode.TRIGGER_BEFORE_ACK, "a trigger before the last result "
                                   "was acknowledged")
                if not self.available:
                    return Refusal(DEVICE_BUSY, ErrorCode.NOT_RUNNING, "a trigger while the line is not running")
            if reg == Command.RECIPE_SELECT and value:
                if self.phase is Phase.BUSY or self.switching:
                    return Refusal(DEVICE_BUSY, ErrorCode.RECIPE_WHILE_BUSY, "a recipe switch under a part")
                if value not in self.recipes:
                    return Refusal(ILLEGAL_VALUE, ErrorCode.UNKNOWN_RECIPE, f"no recipe has the number {value}")
        return None

    def _act(self, reg: Command) -> list[Callable[[], None]]:
        """The station's answer to a command register just written (lock held)."""
        value = self._command[reg]
        if reg == Command.TRIGGER and value == 1:
            self._command[reg] = 0
            part = join_u32(self._command[Command.PART_ID], self._command[Command.PART_ID + 1])
            trigger = PlcTrigger(part, time.perf_counter(), datetime.now(timezone.utc))
            self.trigger, self.phase = trigger, Phase.BUSY
            if self.on_trigger is not None:
                return [lambda: self.on_trigger(trigger)]
        elif reg == Command.ACK and value == 1:
            self._command[reg] = 0
            if self.phase is Phase.DONE:
                self.phase = Phase.READY
        elif reg == Command.ERROR_RESET and value == 1:
            self._command[reg] = 0
            self._status[Status.ERROR_CODE] = ErrorCode.NONE
        elif reg == Command.RECIPE_SELECT and value:
            self.switching = value
            if self.on_recipe is not None:
                return [lambda: self.on_recipe(value)]
        return []

    # -- the station's side ----------------------------------------------------------------------
    def set_available(self, available: bool) -> None:
        with self._lock:
            self.available = bool(available)
            self._show()
            snap = self._snapshot()
        self.changed.emit(snap)

    def beat(self) -> None:
        with self._lock:
            self._status[Status.HEARTBEAT] = (self._status[Status.HEARTBEAT] + 1) & U16_MAX

    def connected(self, up: bool) -> None:
        """A PLC connected or went away; the handshake keeps its state either way: a PLC that comes back
        reads DONE and the result of the part it triggered."""
        with self._lock:
            self.connections += 1 if up else -1
            phase = self.phase
        logger.info("PLC %s (%s)", "connected" if up else "disconnected", phase.value)

    def recipe_done(self, number: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._status[Status.ACTIVE_RECIPE] = number
            else:
                self._status[Status.ERROR_CODE] = ErrorCode.RECIPE_FAILED
            self.switching = 0
            self._command[Command.RECIPE_SELECT] = 0
            self._show()
            snap = self._snapshot()
        self.changed.emit(snap)

    def finish(self, trigger: PlcTrigger, outcome: Outcome, extra: dict | None = None) -> bool:
        """Tell the PLC the result of `trigger`'s part (only once its row is logged). False when that part
        is no longer the one the PLC waits for (told already, e.g. after a result timeout)."""
        with self._lock:
            if self.phase is not Phase.BUSY or self.trigger is not trigger:
                return False
            latency_ms = (time.perf_counter() - trigger.at) * 1e3
            s = self._status
            s[Status.RESULT] = int(outcome.result)
            s[Status.DEFECT_CLASS] = int(outcome.defect_class) & U16_MAX
            col, row = outcome.cell if outcome.cell is not None else (-1, -1)
            s[Status.DEFECT_COL], s[Status.DEFECT_ROW] = min(col + 1, U16_MAX), min(row + 1, U16_MAX)
            s[Status.RESULT_PART_ID], s[Status.RESULT_PART_ID + 1] = split_u32(trigger.part_id)
            if outcome.error:
                s[Status.ERROR_CODE] = int(outcome.error)
            name = {Result.OK: "ok", Result.NG: "ng", Result.REVIEW: "review"}.get(outcome.result)
            self.counts["total"] += 1
            if name:
                self.counts[name] += 1
            else:
                self.counts["ng"] += 1  # a part that was not judged is never passed
            for reg, key in ((Status.COUNT_TOTAL, "total"), (Status.COUNT_OK, "ok"), (Status.COUNT_NG, "ng"),
                             (Status.COUNT_REVIEW, "review")):
                s[reg], s[reg + 1] = split_u32(self.counts[key])
            s[Status.LATENCY_MS] = min(round(latency_ms), U16_MAX)
            self.last = {"part_id": trigger.part_id, "result": outcome.result.name, "defect_class": int(outcome.defect_class),
                         "cell": outcome.cell, "latency_ms": latency_ms, "trigger_time": trigger.wall,
                         "error_code": int(outcome.error), **(extra or {})}
            self.phase, self.trigger = Phase.DONE, None
            self._show()
            snap = self._snapshot()
        self.changed.emit(snap)
        return True

    def _show(self) -> None:
        """READY / BUSY / DONE from the phase (lock held)."""
        s = self._status
        s[Status.READY] = int(self.phase is Phase.READY and self.available and not self.switching)
        s[Status.BUSY] = int(self.phase is Phase.BUSY or bool(self.switching))
        s[Status.DONE] = int(self.phase is Phase.DONE)
