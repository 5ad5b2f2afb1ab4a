"""The shift report: yield, Pareto by class and pin, SPC charts with the drift alarm, recipe versions; HTML,
PDF and CSV, from `station report` and from the window; never over an existing file."""

import csv
import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from station.cli import main
from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.report import build_report, parse_when, render_html, write_csv, write_html
from station.core.results import ResultStore
from station.core.spc import SpcSettings
from station.core.verdict import Verdict

SMALL_SPC = SpcSettings(baseline_parts=20, hold_parts=3)


def _log(db, n=120, drift_from=80):
    """n parts: good ones with log-normal cell scores, pin 2,6 creeping from part `drift_from`; the parts
    whose pin 2,6 scores past 8 are NG 'pushed'; one part in 30 is REVIEW at pin 0,1."""
    rng = np.random.default_rng(5)
    store = ResultStore(f"sqlite:///{db}", station="line-3")
    for i in range(n):
        cells = np.exp(rng.normal(0, 0.3, (9, 3)))
        if i >= drift_from:
            cells[6, 2] *= 1.0 + 0.3 * (i - drift_from)
        verdict, label, top = Verdict.OK, "good", None
        if cells[6, 2] > 8:
            verdict, label, top = Verdict.NG, "pushed", (2, 6)
        elif i % 30 == 29:
            verdict, label, top = Verdict.REVIEW, "tilted", (0, 1)
        result = InspectionResult(verdict, label, float(cells.max()), cells, top, {"total": 5.0},
                                  "sha256:" + "ab" * 32 if i < 60 else "sha256:" + "cd" * 32)
        assert store.add(result, f"part_{i:03d}.png", source="connector").wait(5)
    assert store.close()
    return f"sqlite:///{db}"


def _period():
    now = datetime.now(timezone.utc)
    return now - timedelta(hours=1), now + timedelta(minutes=1)


def test_the_report_counts_yield_pareto_recipes_and_charts_the_drifting_pin(tmp_path):
    url = _log(tmp_path / "r.db")
    report = build_report(url, *_period(), spc_settings=SMALL_SPC)
    v = report.verdicts
    assert report.total == 120 and v["OK"] + v["NG"] + v["REVIEW"] == 120 and v["NG"] > 5
    assert report.yield_pct == pytest.approx(100 * v["OK"] / 120)
    assert report.by_class[0] == ("pushed", v["NG"]) and ("tilted", v["REVIEW"]) in report.by_class
    assert report.by_pin[0] == ("2,6", v["NG"])
    assert [(g.content_hash[7:9], g.parts) for g in report.recipes] == [("ab", 60), ("cd", 60)]
    assert report.stations == ["line-3"]
    assert report.spc is not None and {a.cell for a in report.spc.alarms} == {(2, 6)}
    assert report.charts[0][0].startswith("Pin 2,6: drift alarm")
    html = render_html(report)
    assert html.count("<svg") == 2 + len(report.charts) and "drifting toward NG" in html
    assert "not measured: no published metrics" in html  # no version store given: no bound is invented


def test_rows_outside_the_period_are_left_out(tmp_path):
    db = tmp_path / "r.db"
    url = _log(db, n=30)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE inspections SET time = '2020-01-01 00:00:00.000000' WHERE id <= 10")
    report = build_report(url, *_period())
    assert report.total == 20
    old = build_report(url, datetime(2019, 12, 31, tzinfo=timezone.utc), datetime(2020, 1, 2, tzinfo=timezone.utc))
    assert old.total == 10 and old.spc is None and "No charts" in render_html(old)


def test_csv_has_every_row_of_the_period_and_no_formula_for_a_spreadsheet(tmp_path):
    db = tmp_path / "r.db"
    url = _log(db, n=10)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE inspections SET frame = '=HYPERLINK(\"x\")' WHERE id = 3")
    out = tmp_path / "r.csv"
    assert write_csv(url, *_period(), out) == 10
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and rows[2]["frame"].startswith("'=") and rows[0]["time"].endswith("+00:00")
    assert rows[0]["cell_scores"].startswith("[[")
    with pytest.raises(StationError, match="exists"):
        write_csv(url, *_period(), out)


def test_reports_never_overwrite_a_file(tmp_path):
    url = _log(tmp_path / "r.db", n=5)
    mine = tmp_path / "notes.html"
    mine.write_text("mine")
    with pytest.raises(StationError, match="exists"):
        write_html(build_report(url, *_period()), mine)
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("text, hours", [("8h", 8), ("30m", 0.5), ("2d", 48)])
def test_since_may_be_a_span_back_from_now(text, hours):
    now = datetime(2026, 11, 30, 14, tzinfo=timezone.utc)
    assert parse_when(text, now) == now - timedelta(hours=hours)


def test_since_may_be_a_time_and_nonsense_is_one_line():
    assert parse_when("2026-11-30T06:00+01:00") == datetime(2026, 11, 30, 5, tzinfo=timezone.utc)
    assert parse_when("2026-11-30").tzinfo is not None  # local midnight
    with pytest.raises(StationError, match="not a time"):
        parse_when("yesterday-ish")


def test_station_report_writes_html_and_csv(tmp_path, capsys):
    url = _log(tmp_path / "r.db", n=40)
    out, table = tmp_path / "shift.html", tmp_path / "shift.csv"
    assert main(["report", "--db", url, "--since", "1h", "--until", "0m", "--out", str(out), "--csv", str(table),
                 "--versions", str(tmp_path / "none")]) == 0
    assert '"parts": 40' in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and len(table.read_text().splitlines()) == 41
    assert main(["report", "--db", url, "--since", "1h", "--out", str(tmp_path / "x.docx")]) == 2
    assert main(["report", "--db", url, "--since", "1h", "--until", "2h", "--csv", str(tmp_path / "y.csv")]) == 2
    assert "empty" in capsys.readouterr().err


@pytest.mark.gui
def test_the_pdf_report_has_pages_and_its_charts(qapp, tmp_path):
    from station.ui.report_pdf import report_document, write_pdf

    url = _log(tmp_path / "r.db")
    report = build_report(url, *_period(), spc_settings=SMALL_SPC)
    document = report_document(report)
    assert document.resource(1, "chart2") is not None  # QTextDocument.ImageResource: the first SPC chart
    pdf = write_pdf(report, tmp_path / "shift.pdf")
    data = pdf.read_bytes()
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    assert data.startswith(b"%PDF") and pages >= 2  # the charts do not fit on one A4 page
    with pytest.raises(StationError, match="exists"):
        write_pdf(report, pdf)


def test_the_yield_is_rounded_down_never_up_to_a_hundred():
    from station.core.report import yield_digits

    assert yield_digits(99.995, 2) == "99.99" and yield_digits(100.0, 2) == "100.00"
    assert yield_digits(99.9, 1) == "99.9" and yield_digits(58.1, 1) == "58.1"
