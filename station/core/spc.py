"""Per-pin statistical process control: each cell's score over the parts as an EWMA control chart whose
limits come from the spread of good parts, with a drift alarm when a pin creeps toward NG.

The charted value is log10 of the cell score: RT cell scores are squared distances, skewed to the right (on
the bundled demo recipe their standard deviation is about their mean), and their logarithm is close to
symmetric, which the normal-theory EWMA limits assume. The centre and sigma of each cell come from the
first `baseline_parts` OK parts (phase I of a control chart); after that every part updates

    z_i = lambda * x_i + (1 - lambda) * z_(i-1),  z_0 = centre
    UCL_i = centre + L * sigma * sqrt(lambda / (2 - lambda) * (1 - (1 - lambda)^(2 i)))

(Montgomery, Introduction to Statistical Quality Control, section 9.2). Only the upper limit alarms: a
pin that scores lower than usual looks more like its good standard, not less. An alarm is raised once when
a cell's EWMA has stayed above its upper limit for `hold_parts` parts in a row (one chart per pin makes
chance crossings 27 times as frequent; a drift stays above, chance leaves) and re-armed when the EWMA falls
back below the centre line.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from station.core.errors import StationError

FLOOR = 1e-6  # cell scores at or below this are charted as this (log10 of 0 is not a number)
MAX_CELLS = 1024
MAX_ALARMS = 1000  # alarms kept (the newest)


@dataclass(frozen=True)
class SpcSettings:
    # 27 pins, each a chart, make a textbook 0.2 / 3 sigma / 30 parts alarm every few dozen good parts; these
    # defaults are measured by scripts/spc_demo.py (false alarms on good parts, warning before a drifting pin fails)
    weight: float = 0.1  # lambda: the EWMA's weight of the newest part
    width: float = 4.0  # L: limits at L sigma of the EWMA
    baseline_parts: int = 200  # OK parts whose spread sets the limits (fewer: a centre off by chance alarms)
    hold_parts: int = 5  # the EWMA must stay above its limit for this many parts in a row to alarm

    def __post_init__(self) -> None:
        if not (0 < self.weight <= 1 and math.isfinite(self.weight)):
            raise StationError(f"the SPC weight must be in (0, 1], not {self.weight!r}")
        if not (0 < self.width <= 10 and math.isfinite(self.width)):
            raise StationError(f"the SPC limit width must be in (0, 10] sigma, not {self.width!r}")
        if not 5 <= self.baseline_parts <= 100000:
            raise StationError(f"the SPC baseline needs 5 to 100000 good parts, not {self.baseline_parts!r}")
        if not 1 <= self.hold_parts <= 1000:
            raise StationError(f"the SPC alarm hold must be 1 to 1000 parts, not {self.hold_parts!r}")


@dataclass(frozen=True)
class DriftAlarm:
    cell: tuple[int, int]  # (col, row), as top_cell
    part: int  # index of the part (0 = the first one given, baseline included) whose EWMA crossed the limit
    time: datetime | None
    ewma: float  # log10 score
    limit: float
    unit: str = "pin"  # what a cell is on this part: a pin, or an area of a free-form part ("cell")

    def describe(self) -> str:
        when = f" at {self.time.astimezone() if self.time.tzinfo else self.time:%H:%M:%S}" if self.time else ""
        return (f"{self.unit} {self.cell[0]},{self.cell[1]} drifting toward NG{when} (part {self.part + 1}): "
                f"EWMA {10 ** self.ewma:.3g} above its limit {10 ** self.limit:.3g}")


@dataclass
class CellChart:
    """One cell's chart so far, oldest part first: the charted values (log10 score), the EWMA and its upper
    limit per part."""

    values: np.ndarray
    ewma: np.ndarray
    upper: np.ndarray


class _ChartRing:
    """The last `history` parts of every cell's chart in one preallocated float32 array (parts, 3, rows, cols):
    a part is one row written, not 3 x cells Python floats appended (32 bytes each: 13 MB for 5000 parts of
    27 pins, grown over the first minutes of a shift, and 81 appends per part in the GUI thread)."""

    def __init__(self, history: int, shape: tuple[int, int]) -> None:
        self.data = np.zeros((history, 3, *shape), dtype=np.float32)
        self.n = 0  # parts written since the charts (re)started

    def add(self, values: np.ndarray, ewma: np.ndarray, upper: np.ndarray) -> None:
        row = self.data[self.n % len(self.data)]
        row[0], row[1], row[2] = values, ewma, upper
        self.n += 1

    def chart(self, cell: tuple[int, int]) -> CellChart:
        c, r = cell
        held = min(self.n, len(self.data))
        series = self.data[np.arange(self.n - held, self.n) % len(self.data), :, r, c].astype(float)
        return CellChart(series[:, 0], series[:, 1], series[:, 2])


class _Charts(Mapping):
    """`PinSpc.charts`: each cell's chart by (col, row), read from the ring when asked for."""

    def __init__(self, ring: _ChartRing | None, shape: tuple[int, int] | None) -> None:
        self._ring = ring
        self._cells = [] if ring is None or shape is None else [(c, r) for r in range(shape[0])
                                                                 for c in range(shape[1])]

    def __getitem__(self, cell: tuple[int, int]) -> CellChart:
        if self._ring is None or cell not in self._cells:
            raise KeyError(cell)
        return self._ring.chart(cell)

    def __iter__(self):
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)


def charted(cells: np.ndarray) -> np.ndarray:
    """Cell scores as charted: log10, floored; NaN stays NaN (a cell that was not scored)."""
    cells = np.asarray(cells, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.log10(np.maximum(cells, FLOOR))
    out[~np.isfinite(cells)] = np.nan
    return out


class PinSpc:
    """EWMA charts of every cell, fed one part at a time (`add`), keeping the last `history` parts."""

    def __init__(self, settings: SpcSettings | None = None, history: int = 5000, unit: str = "pin") -> None:
        self.settings = settings or SpcSettings()
        self.history = history
        self.unit = unit  # how the charts name a cell: "pin", or "cell" on a free-form part
        self.shape: tuple[int, int] | None = None
        self.centre: np.ndarray | None = None
        self.sigma: np.ndarray | None = None
        self._baseline: list[np.ndarray] = []
        self._z: np.ndarray | None = None
        self._armed: np.ndarray | None = None
        self.parts = 0  # parts charted since the baseline was set
        self.added = 0  # parts given since the charts (re)started, baseline included
        self.times: deque = deque(maxlen=history)
        self._ring: _ChartRing | None = None
        self.alarms: list[DriftAlarm] = []

    @property
    def ready(self) -> bool:
        return self.centre is not None

    @property
    def baseline_count(self) -> int:
        return len(self._baseline)

    def add(self, cells: np.ndarray | None, ok: bool, time: datetime | None = None) -> list[DriftAlarm]:
        """One part's cell scores (rows x cols); `ok`: the part was judged OK (only OK parts set the limits).
        Returns the alarms this part raised. A part of another grid shape starts the charts afresh."""
        if cells is None:
            return []
        cells = np.asarray(cells, dtype=float)
        if cells.ndim != 2 or cells.size == 0 or cells.size > MAX_CELLS:
            return []
        if self.shape != cells.shape:
            self._reset(cells.shape)
        x = charted(cells)
        self.added += 1
        if self.centre is None:
            if ok and np.all(np.isfinite(x)):
                self._baseline.append(x)
                if len(self._baseline) >= self.settings.baseline_parts:
                    self._set_limits()
            return []
        return self._update(x, time)

    def _reset(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.centre = self.sigma = self._z = self._armed = self._run = None
        self._baseline = []
        self.parts = self.added = 0
        self.times.clear()
        self._ring = _ChartRing(self.history, shape) if self.history else None
        self.alarms = []

    def _set_limits(self) -> None:
        stack = np.stack(self._baseline)
        self.centre = stack.mean(axis=0)
        # a cell whose good parts all score the same would get zero-width limits: a small floor in log10
        self.sigma = np.maximum(stack.std(axis=0, ddof=1), 0.01)
        self._z = self.centre.copy()
        self._armed = np.ones(self.shape, dtype=bool)
        self._run = np.zeros(self.shape, dtype=int)

    def upper_limit(self, part: int) -> np.ndarray:
        lam, width = self.settings.weight, self.settings.width
        factor = math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * (part + 1))))
        return self.centre + width * self.sigma * factor

    def _update(self, x: np.ndarray, time: datetime | None) -> list[DriftAlarm]:
        lam = self.settings.weight
        seen = np.isfinite(x)
        self._z = np.where(seen, lam * np.where(seen, x, 0) + (1 - lam) * self._z, self._z)
        upper = self.upper_limit(self.parts)
        raised = []
        above = self._z > upper
        self._run = np.where(above, self._run + 1, 0)
        for r, c in zip(*np.nonzero((self._run >= self.settings.hold_parts) & self._armed)):
            alarm = DriftAlarm((int(c), int(r)), self.added - 1, time, float(self._z[r, c]), float(upper[r, c]),
                               self.unit)
            raised.append(alarm)
        self._armed = np.where(self._run >= self.settings.hold_parts, False, self._armed | (self._z < self.centre))
        self.alarms.extend(raised)
        del self.alarms[:-MAX_ALARMS]
        if self._ring is not None:
            self._ring.add(x, self._z, upper)
        self.times.append(time)
        self.parts += 1
        return raised

    @property
    def charts(self) -> Mapping[tuple[int, int], CellChart]:
        """Each cell's chart (the last `history` parts), by (col, row)."""
        return _Charts(self._ring, self.shape)

    def status(self) -> np.ndarray:
        """Per cell, how far its EWMA has gone from the centre toward its limit (0 = centre, 1 = at the limit,
        negative below the centre); NaN before the baseline is set."""
        if self.shape is None:
            return np.full((0, 0), np.nan)
        if self.centre is None:
            return np.full(self.shape, np.nan)
        span = self.upper_limit(max(self.parts - 1, 0)) - self.centre
        return (self._z - self.centre) / np.maximum(span, 1e-12)

    def alarmed_cells(self) -> list[tuple[int, int]]:
        """Cells whose EWMA is above its limit now."""
        if self._z is None:
            return []
        above = self._z > self.upper_limit(max(self.parts - 1, 0))
        return [(int(c), int(r)) for r, c in zip(*np.nonzero(above))]


@dataclass
class SpcSeries:
    """Charts of logged parts for a report: per part (after the baseline) the charted values, EWMA and upper
    limit of every cell, arrays (parts, rows, cols) in log10 score."""

    times: list
    values: np.ndarray
    ewma: np.ndarray
    upper: np.ndarray
    centre: np.ndarray
    sigma: np.ndarray
    alarms: list[DriftAlarm]
    baseline_parts: int


def chart_rows(rows, settings: SpcSettings | None = None, max_parts: int = 500_000) -> SpcSeries | None:
    """Charts from logged rows (oldest first), each with `cell_scores` (JSON text or None), `verdict` and
    `time`; None until enough good parts with cell scores set the limits. Rows of the most common grid shape
    are charted; at most `max_parts` of them (the newest)."""
    import json

    parsed = []
    for row in rows:
        if not row.cell_scores or len(row.cell_scores) > 10000:
            continue
        try:
            cells = np.array([[np.nan if v is None else v for v in line] for line in json.loads(row.cell_scores)],
                             dtype=float)
        except (ValueError, TypeError):
            continue  # a damaged cell_scores entry: that part is not charted
        if cells.ndim == 2 and 0 < cells.size <= MAX_CELLS:
            parsed.append((cells, row.verdict == "OK", row.time))
    if not parsed:
        return None
    shapes = [p[0].shape for p in parsed]
    shape = max(set(shapes), key=shapes.count)
    parsed = [p for p in parsed if p[0].shape == shape][-max_parts:]
    spc = PinSpc(settings, history=0)
    out_values, out_ewma, out_upper, times = [], [], [], []
    for cells, ok, time in parsed:
        spc.add(cells, ok, time)
        if spc.ready and spc.parts > len(out_ewma):
            out_values.append(charted(cells))
            out_ewma.append(spc._z.copy())
            out_upper.append(spc.upper_limit(spc.parts - 1))
            times.append(time)
    if not spc.ready:
        return None
    empty = np.zeros((0, *shape))
    return SpcSeries(times, np.array(out_values) if out_values else empty, np.array(out_ewma) if out_ewma else empty,
                     np.array(out_upper) if out_upper else empty, spc.centre, spc.sigma, list(spc.alarms),
                     spc.settings.baseline_parts)
