"""The station's Modbus register map: where each value lives, what each code means, and the checks on
what a PLC may write. Documented for integrators in docs/integration.md (keep the two in step).

Two blocks of holding registers (function codes 3 and 4 read them, 6 and 16 write): the status block,
which the station writes and the PLC reads, and the command block, which the PLC writes. Each block
starts at an address that is a setting. 32-bit values are two registers, high word first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from station.core.errors import StationError

MAP_VERSION = 1
U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF


class Status(IntEnum):
    """Offsets in the status block (station -> PLC)."""

    HEARTBEAT = 0  # counts up every 250 ms while the inspection line runs (wraps at 65535)
    READY = 1  # 1: a trigger is accepted now
    BUSY = 2  # 1: a part is being inspected
    DONE = 3  # 1: RESULT.. hold the result of RESULT_PART_ID; waits for ACK
    RESULT = 4  # Result code
    DEFECT_CLASS = 5  # DefectClass code (0 with an OK result)
    DEFECT_COL = 6  # the most suspicious cell, column + 1 (0: none)
    DEFECT_ROW = 7  # its row + 1 (0: none)
    RESULT_PART_ID = 8  # 2 registers: the part ID this result belongs to
    COUNT_TOTAL = 10  # 2 registers each: the counters since the station started
    COUNT_OK = 12
    COUNT_NG = 14
    COUNT_REVIEW = 16
    ACTIVE_RECIPE = 18  # the recipe number in use (0: a recipe with no number)
    ERROR_CODE = 19  # ErrorCode of the last refused command or failed part; cleared by ERROR_RESET
    LATENCY_MS = 20  # trigger to DONE of the last part, in ms (65535: longer)
    MAP_VERSION = 21  # this map's version (1)


STATUS_LEN = 22


class Command(IntEnum):
    """Offsets in the command block (PLC -> station)."""

    PART_ID = 0  # 2 registers; written before TRIGGER (or in the same write). 0: the station counts
    TRIGGER = 2  # write 1 to inspect the next part; the station sets it back to 0 when taken
    ACK = 3  # write 1 once the result is read; the station clears DONE, sets READY and this back to 0
    RECIPE_SELECT = 4  # write a recipe number; the station sets it back to 0 when done (see ACTIVE_RECIPE)
    ERROR_RESET = 5  # write 1 to clear ERROR_CODE; set back to 0 by the station


COMMAND_LEN = 6


class Result(IntEnum):
    NONE = 0  # no result yet (after start)
    OK = 1
    NG = 2
    REVIEW = 3
    NO_RESULT = 4  # the part was not judged (see ERROR_CODE): treat as NG


class DefectClass(IntEnum):
    NONE = 0  # an OK part
    DEFECT = 1  # an anomaly engine's "defect"
    NO_PART = 2  # no part in view
    BAD_FRAME = 3  # the frame could not be inspected
    OTHER = 99  # a defect class of the recipe not in its class list
    # a classifier recipe's defect classes: 100 + the class's index in the recipe's class list


class ErrorCode(IntEnum):
    NONE = 0
    TRIGGER_WHILE_BUSY = 1  # refused (Modbus exception 6): a part is being inspected
    TRIGGER_BEFORE_ACK = 2  # refused (exception 6): the last result was not acknowledged
    BAD_VALUE = 3  # refused (exception 3): a command register written with a value it does not take
    READ_ONLY = 4  # refused (exception 2): a write to the status block
    UNKNOWN_RECIPE = 5  # refused (exception 3): no recipe has that number
    RECIPE_WHILE_BUSY = 6  # refused (exception 6): the recipe is not switched under a part
    NO_RECIPE = 7  # the part was not judged: no recipe is loaded (RESULT = NO_RESULT)
    NOT_LOGGED = 8  # the part was judged but its row could not be made safe: RESULT = NO_RESULT
    RESULT_TIMEOUT = 9  # no result within the result timeout: RESULT = NO_RESULT
    RECIPE_FAILED = 10  # the selected recipe could not be loaded; the old one stays
    NOT_RUNNING = 11  # refused (exception 6): the inspection line is not running or has no recipe


def defect_code(label: str, ok: bool, classes: list[str] | tuple[str, ...] = ()) -> int:
    """The DEFECT_CLASS code of a result's label."""
    if ok:
        return DefectClass.NONE
    fixed = {"defect": DefectClass.DEFECT, "no_part": DefectClass.NO_PART, "bad_frame": DefectClass.BAD_FRAME}
    if label in fixed:
        return fixed[label]
    if label in classes:
        return min(100 + list(classes).index(label), U16_MAX)
    return DefectClass.OTHER


def split_u32(value: int) -> tuple[int, int]:
    value = max(0, min(int(value), U32_MAX))
    return value >> 16, value & U16_MAX


def join_u32(high: int, low: int) -> int:
    return ((high & U16_MAX) << 16) | (low & U16_MAX)


@dataclass(frozen=True)
class RegisterMap:
    """Where the two blocks start (settings `plc_status_address`, `plc_command_address`)."""

    status_address: int = 0
    command_address: int = 100

    def __post_init__(self) -> None:
        for name, start, length in (("status", self.status_address, STATUS_LEN),
                                    ("command", self.command_address, COMMAND_LEN)):
            if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= 0x10000 - length:
                raise StationError(f"the PLC {name} block must start at 0..{0x10000 - length}, not {start!r}")
        s, c = self.status_address, self.command_address
        if s < c + COMMAND_LEN and c < s + STATUS_LEN:
            raise StationError(f"the PLC status block ({s}..{s + STATUS_LEN - 1}) and command block "
                               f"({c}..{c + COMMAND_LEN - 1}) overlap")

    def status(self, offset: Status) -> int:
        return self.status_address + int(offset)

    def command(self, offset: Command) -> int:
        return self.command_address + int(offset)
