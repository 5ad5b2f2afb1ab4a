"""`station report`: the shift report of a period from the result log, as HTML or PDF, and its rows as CSV."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from station.core.errors import StationError


def default_database() -> str:
    from station.core.settings import data_dir, load_settings

    settings, _ = load_settings()  # a bad settings file gives the defaults (and says so in the log)
    return settings.results_db or f"sqlite:///{data_dir() / 'results.db'}"


def _qt_app():
    """A QGuiApplication for drawing the PDF (offscreen when there is no display)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication(["station-report"])


def cmd_report(args) -> int:
    from station.core.report import build_report, parse_when, write_csv, write_html

    since = parse_when(args.since)
    until = parse_when(args.until) if args.until else parse_when("0m")
    url = args.db or default_database()
    if not args.out and not args.csv:
        raise StationError("say where the report goes: --out FILE.html|FILE.pdf and/or --csv FILE.csv")
    done = {"since": since.isoformat(), "until": until.isoformat()}
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in (".html", ".htm", ".pdf"):
            raise StationError(f"--out must end in .html or .pdf, not {out.name!r}")
        from station.core.workbench import default_root

        versions = Path(args.versions) if args.versions else default_root() / "recipes"
        report = build_report(url, since, until, versions)
        if out.suffix.lower() == ".pdf":
            app = _qt_app()  # noqa: F841 - held while the PDF is drawn
            from station.ui.report_pdf import write_pdf

            write_pdf(report, out)
        else:
            write_html(report, out)
        done.update(report=str(out), parts=report.total, yield_pct=report.yield_pct,
                    drift_alarms=len(report.spc.alarms) if report.spc else 0)
    if args.csv:
        done.update(csv=args.csv, rows=write_csv(url, since, until, args.csv))
    sys.stdout.write(json.dumps(done) + "\n")
    return 0


def add_commands(sub) -> None:
    r = sub.add_parser("report", help="shift report (yield, Pareto, per-pin SPC, escape-rate bound) as HTML or "
                                      "PDF; results as CSV")
    r.add_argument("--since", required=True, help="start: 2026-11-30T06:00 (local time unless an offset is "
                                                  "given), 2026-11-30, or 8h / 30m / 2d back from now")
    r.add_argument("--until", help="end (default: now), same forms as --since")
    r.add_argument("--out", help="the report: FILE.html or FILE.pdf (never overwrites)")
    r.add_argument("--csv", help="the period's results as CSV (never overwrites)")
    r.add_argument("--db", help="result database URL (default: the station's settings)")
    r.add_argument("--versions", help="the recipe version store whose published metrics give the escape-rate "
                                      "bound (default: the workbench's)")
    r.set_defaults(func=cmd_report)
