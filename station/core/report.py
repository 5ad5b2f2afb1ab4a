"""The shift report: from the result log over a period, the yield, the Pareto of defects by class and by pin,
the per-pin control charts with their drift alarms, the escape-rate bound of the thresholds that ran, and
the recipe versions used; as HTML (this module) or PDF (station.ui.report_pdf), and the rows as CSV."""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from station.core.database import open_engine
from station.core.errors import StationError
from station.core.report_charts import control_chart_svg, pareto_svg
from station.core.result_rows import InspectionRow
from station.core.results import shown_url
from station.core.spc import SpcSeries, SpcSettings, chart_rows

logger = logging.getLogger(__name__)

MAX_ROWS = 2_000_000  # a report over more parts than this asks for a shorter period
CHARTED_PINS = 6  # control charts drawn: the alarmed pins first, then the pins nearest their limit
COLUMNS = ("id", "uid", "time", "station", "frame", "verdict", "label", "score", "top_cell", "recipe_name",
           "recipe_hash", "timings", "image_path", "message", "cell_scores")
_RELATIVE = re.compile(r"^(\d{1,5})\s*([mhd])$")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A time for --since / --until, as an aware datetime: ISO (`2026-11-30`, `2026-11-30T06:00`, with or
    without an offset; without one it is the station's local time) or a span back from now (`8h`, `30m`, `2d`)."""
    now = now or datetime.now(timezone.utc)
    text = (text or "").strip()
    match = _RELATIVE.match(text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise StationError(f"not a time: {text!r} (use 2026-11-30T06:00, 2026-11-30, or 8h / 30m / 2d back "
                           "from now)") from None
    return when.astimezone() if when.tzinfo is None else when


@dataclass
class Recipes:
    name: str
    content_hash: str
    parts: int
    first: datetime
    last: datetime
    escape: str = "not measured: no published metrics for this recipe version"


@dataclass
class ShiftReport:
    database: str
    since: datetime
    until: datetime
    stations: list[str]
    total: int
    verdicts: Counter
    by_class: list[tuple[str, int]]
    by_pin: list[tuple[str, int]]
    recipes: list[Recipes]
    spc: SpcSeries | None
    spc_settings: SpcSettings = field(default_factory=SpcSettings)
    charts: list[tuple[str, str]] = field(default_factory=list)  # (title, svg)

    @property
    def yield_pct(self) -> float | None:
        return 100.0 * self.verdicts["OK"] / self.total if self.total else None


def _utc(when: datetime) -> datetime:
    return when.astimezone(timezone.utc)


def _as_aware(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when  # SQLite gives back naive UTC


def _bounds(engine, since: datetime, until: datetime):
    lo, hi = _utc(since), _utc(until)
    if engine.dialect.name == "sqlite":  # stored as naive UTC text
        return lo.replace(tzinfo=None), hi.replace(tzinfo=None)
    return lo, hi


def load_rows(url: str, since: datetime, until: datetime) -> list:
    """The rows logged in [since, until), oldest first."""
    if until <= since:
        raise StationError("the report's period is empty: --until must be after --since")
    try:
        engine = open_engine(url)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise StationError(f"cannot open the result database {shown_url(url)}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    try:
        lo, hi = _bounds(engine, since, until)
        with engine.connect() as conn:
            rows = conn.execute(select(*[getattr(InspectionRow, c) for c in COLUMNS])
                                .where(InspectionRow.time >= lo, InspectionRow.time < hi)
                                .order_by(InspectionRow.time, InspectionRow.id).limit(MAX_ROWS + 1)).all()
    except SQLAlchemyError as exc:
        raise StationError(f"cannot read the result database {shown_url(url)}: {type(exc).__name__}") from None
    finally:
        engine.dispose()
    if len(rows) > MAX_ROWS:
        raise StationError(f"more than {MAX_ROWS} results in this period: ask for a shorter one")
    return rows


def escape_bounds(versions_root: Path | None) -> dict[str, str]:
    """Per recipe content hash, the escape rate and its 95 % upper bound measured when its thresholds were
    published (the workbench's version store), as a line."""
    if versions_root is None or not Path(versions_root).is_dir():
        return {}
    from station.core.workbench.errors import VersionStoreError
    from station.core.workbench.versions import VersionStore

    try:
        versions = VersionStore(versions_root).versions()
    except (VersionStoreError, OSError) as exc:
        logger.warning("report: the recipe versions in %s could not be read: %s", versions_root, exc)
        return {}
    out = {}
    for info in versions:
        m = info.metrics or {}
        upper, rate = m.get("escape_rate_upper"), m.get("escape_rate")
        if info.content_hash and isinstance(upper, (int, float)):
            n = m.get("n_defect")
            out[info.content_hash] = (f"{100 * upper:.2f} % (95 % upper bound; observed "
                                      f"{'' if rate is None else f'{100 * rate:.2f} % '}on {n} defect images, "
                                      f"{info.name})")
    return out


def build_report(url: str, since: datetime, until: datetime, versions_root: Path | None = None,
                 spc_settings: SpcSettings | None = None) -> ShiftReport:
    rows = load_rows(url, since, until)
    verdicts = Counter(r.verdict for r in rows)
    failed = [r for r in rows if r.verdict != "OK"]
    by_class = Counter(r.label or "?" for r in failed).most_common()
    by_pin = Counter(r.top_cell for r in failed if r.top_cell).most_common()
    bounds = escape_bounds(versions_root)
    groups: dict[tuple[str, str], Recipes] = {}
    for r in rows:
        key = (r.recipe_name, r.recipe_hash)
        when = _as_aware(r.time)
        if key not in groups:
            groups[key] = Recipes(r.recipe_name, r.recipe_hash, 0, when, when)
            if r.recipe_hash in bounds:
                groups[key].escape = bounds[r.recipe_hash]
        g = groups[key]
        g.parts, g.last = g.parts + 1, when
    report = ShiftReport(shown_url(url), since, until, sorted({r.station for r in rows}), len(rows), verdicts,
                         by_class, by_pin, list(groups.values()), chart_rows(rows, spc_settings),
                         spc_settings or SpcSettings())
    report.charts = _spc_charts(report.spc)
    return report


def _spc_charts(spc: SpcSeries | None) -> list[tuple[str, str]]:
    if spc is None or not len(spc.ewma):
        return []
    first_alarm = {}
    for alarm in spc.alarms:
        first_alarm.setdefault(alarm.cell, alarm)
    nearness = (spc.ewma - spc.centre) / np.maximum(spc.upper - spc.centre, 1e-12)
    worst = np.nanmax(nearness, axis=0)  # (rows, cols)
    order = [(int(c), int(r)) for r, c in zip(*np.unravel_index(np.argsort(-worst, axis=None), worst.shape))]
    cells = list(first_alarm) + [cell for cell in order if cell not in first_alarm]
    charts = []
    for c, r in cells[:CHARTED_PINS]:
        alarm = first_alarm.get((c, r))
        at = None if alarm is None else _series_index(spc, alarm)
        note = f": drift alarm {alarm.describe().split(': ', 1)[1]}" if alarm else ""
        title = f"Pin {c},{r}{note}"
        charts.append((title, control_chart_svg(spc.values[:, r, c], spc.ewma[:, r, c], spc.upper[:, r, c],
                                                float(spc.centre[r, c]), title, at)))
    return charts


def _series_index(spc: SpcSeries, alarm) -> int | None:
    """Where in the charted series (which starts after the baseline) the alarm was raised."""
    if alarm.time is not None:
        for i, t in enumerate(spc.times):
            if t == alarm.time:
                return i
    return None


def _fmt(when: datetime) -> str:
    return _as_aware(when).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def yield_digits(pct: float, decimals: int) -> str:
    """A yield in per cent to `decimals` decimals, rounded down: 99.995 is "99.99", never "100.00" while a
    part failed (the 1e-9 keeps 99.9 from reading as 99.8999...)."""
    step = 10 ** decimals
    return f"{math.floor(pct * step + 1e-9) / step:.{decimals}f}"


def render_html(report: ShiftReport, chart=None) -> str:
    """The report as one HTML page; `chart(index, svg)` gives the markup of each chart (inline SVG by default;
    the PDF writer puts images in their place)."""
    chart = chart or (lambda _i, svg: svg)
    charts = [pareto_svg(report.by_class), pareto_svg([(f"pin {k}", n) for k, n in report.by_pin])] + \
        [svg for _, svg in report.charts]
    v = report.verdicts
    yield_text = "no parts" if report.yield_pct is None else f"{yield_digits(report.yield_pct, 2)} %"
    spc = report.spc
    alarms = spc.alarms if spc else []
    h = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Shift report</title><style>"
        "body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:11pt;margin:24px;color:#222}"
        "h1{font-size:18pt;margin:0 0 4px}h2{font-size:13pt;margin:18px 0 6px;border-bottom:1px solid #bbb}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#eee}.big{font-size:16pt;font-weight:bold}.alarm{color:#c0392b;font-weight:bold}"
        "</style></head><body>",
        f"<h1>Shift report</h1><p>{escape(_fmt(report.since))} to {escape(_fmt(report.until))} &middot; "
        f"stations: {escape(', '.join(report.stations) or 'none')} &middot; database {escape(report.database)}</p>",
        "<h2>Yield</h2><table><tr><th>Parts</th><th>OK</th><th>NG</th><th>REVIEW</th><th>First-pass yield</th></tr>",
        f"<tr><td>{report.total}</td><td>{v['OK']}</td><td>{v['NG']}</td><td>{v['REVIEW']}</td>"
        f"<td class='big'>{yield_text}</td></tr></table>",
        "<h2>Defects by class (NG and REVIEW)</h2>", chart(0, charts[0]),
        "<h2>Defects by pin (col,row of the worst cell)</h2>", chart(1, charts[1]),
        "<h2>Per-pin control charts (EWMA)</h2>",
    ]
    if spc is None:
        h.append("<p>No charts: fewer good parts with cell scores than the baseline needs "
                 f"({report.spc_settings.baseline_parts}).</p>")
    else:
        h.append(f"<p>Limits from the first {spc.baseline_parts} good parts of the period; "
                 f"{len(spc.ewma)} parts charted. " +
                 (f"<span class='alarm'>{len(alarms)} drift alarm(s):</span></p><ul>" +
                  "".join(f"<li>{escape(a.describe())}</li>" for a in alarms[:20]) + "</ul>"
                  if alarms else "No drift alarm.</p>"))
        for i, (title, _svg) in enumerate(report.charts):
            h.append(f"<p>{chart(2 + i, charts[2 + i])}</p>")
    h.append("<h2>Recipe versions and the escape-rate bound of their thresholds</h2><table><tr><th>Recipe</th>"
             "<th>Content hash</th><th>Parts</th><th>From</th><th>To</th><th>Escape rate (NG passed as OK)</th></tr>")
    for g in report.recipes:
        h.append(f"<tr><td>{escape(g.name)}</td><td>{escape(g.content_hash.removeprefix('sha256:')[:12])}</td>"
                 f"<td>{g.parts}</td><td>{escape(_fmt(g.first))}</td><td>{escape(_fmt(g.last))}</td>"
                 f"<td>{escape(g.escape)}</td></tr>")
    h.append("</table></body></html>")
    return "".join(h)


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise StationError(f"{path} exists: choose another name (the report never overwrites a file)")


def write_html(report: ShiftReport, path: str | Path) -> Path:
    path = Path(path)
    _refuse_existing(path)
    _write_atomic(path, render_html(report).encode("utf-8"))
    return path


def write_csv(url: str, since: datetime, until: datetime, path: str | Path) -> int:
    """Every row of the period as CSV (times in UTC, ISO 8601); the number of rows written."""
    path = Path(path)
    _refuse_existing(path)
    rows = load_rows(url, since, until)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(COLUMNS)
            for r in rows:
                out.writerow([_as_aware(r.time).isoformat() if c == "time" else _csv_cell(getattr(r, c))
                              for c in COLUMNS])
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StationError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(rows)


def _csv_cell(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):  # no formula for a spreadsheet to run
        return "'" + value
    return "" if value is None else value


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StationError(f"cannot write {path}: {exc.strerror or exc}") from None
