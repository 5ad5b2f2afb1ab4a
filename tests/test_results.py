"""The result log: rows reach the database, NG images are archived, failures are visible with their cause,
rows survive a failing disk in the spool, and the writer thread never dies."""

import errno
import os
import sqlite3
import threading
import time

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.results import ResultStore
from station.core.verdict import Verdict


def _result(verdict=Verdict.NG, score=3.0):
    return InspectionResult(verdict, "defect" if verdict is not Verdict.OK else "good", score,
                            np.zeros((9, 3)), (1, 2), {"total": 4.0}, "sha256:abc")


def _rows(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT uid, frame, verdict, image_path, message FROM inspections ORDER BY id").fetchall()


def _wait(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_rows_and_ng_images_are_written(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", archive_dir=tmp_path / "archive", archive="ng")
    image = np.full((20, 30, 3), 90, np.uint8)
    assert store.add(_result(Verdict.NG), "a.png", image).wait(5)
    assert store.add(_result(Verdict.OK, 0.1), "b.png", image).wait(5)
    assert store.close()
    reopened = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    rows = reopened.recent()
    reopened.close()
    assert [r.frame for r in rows] == ["b.png", "a.png"]
    assert all(r.recipe_hash == "sha256:abc" for r in rows)
    ng = rows[1]
    assert ng.verdict == "NG" and ng.top_cell == "1,2" and ng.image_path and os.path.isfile(ng.image_path)
    assert rows[0].image_path is None  # only NG parts are archived by default


def test_every_connection_is_in_wal_mode_with_synchronous_normal(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        for _ in range(2):  # a fresh connection each time, from the pool or new
            with store._engine.connect() as conn:
                assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
                assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        store.close()


def test_a_name_that_is_not_utf8_is_stored_and_the_writer_lives_on(tmp_path):
    """Finding 2: such a name killed the writer thread; every later result was silently not logged."""
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}", archive_dir=tmp_path / "archive")
    bad = os.fsdecode(b"part_\xff\xfe.png")  # what a folder source gives for a Latin-1 name on Linux
    first = store.add(_result(), bad, np.zeros((8, 8, 3), np.uint8))
    second = store.add(_result(), "next.png")
    third = store.add(_result(), "odd\ud800\x00.png")  # a lone surrogate no file name makes, and a NUL
    assert first.wait(5) and second.wait(5) and third.wait(5)
    assert store.problem == "" and store.written == 3
    assert store.close()
    frames = [r[1] for r in _rows(db)]
    assert frames == ["part_\\xff\\xfe.png", "next.png", "odd\\ud800\\x00.png"]


def test_an_unwritable_archive_is_reported_and_rows_are_still_logged(tmp_path):
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the archive folder should be")
    problems = []
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}", archive_dir=blocker, on_problem=problems.append)
    assert store.add(_result(), "a.png", np.zeros((4, 4, 3), np.uint8)).wait(5)  # the row is not held back
    assert _wait(lambda: "archive not writable" in store.problem)
    assert _wait(lambda: bool(problems)) and store.images_dropped == 1
    blocker.unlink()  # the disk is fixed
    assert store.add(_result(), "b.png", np.zeros((4, 4, 3), np.uint8)).wait(5)
    assert _wait(lambda: store.problem == "")
    assert store.close()
    rows = _rows(db)
    assert rows[0][3] is None and "image not archived: archive not writable" in rows[0][4]
    assert rows[1][3] and os.path.isfile(rows[1][3])


def test_a_full_disk_is_shown_at_once_rows_are_spooled_memory_is_bounded_and_all_recover(tmp_path, monkeypatch):
    """Finding 3: a full disk stopped all logging, held rows in unbounded memory and lost them at close."""
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}", archive_dir=tmp_path / "archive", memory_rows=20, retry_s=0.05)
    disk_full = threading.Event()
    real_insert, real_append, real_file = store._insert_rows, store.spool_append, store.write_archive_file

    def insert(rows, dedupe):
        if disk_full.is_set():
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
        return real_insert(rows, dedupe)

    spool_full = threading.Event()

    def append(rows):
        if spool_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(rows)

    def write_file(path, data):
        if disk_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_file(path, data)

    monkeypatch.setattr(store, "_insert_rows", insert)
    monkeypatch.setattr(store, "spool_append", append)
    monkeypatch.setattr(store, "write_archive_file", write_file)
    big = np.zeros((512, 512, 3), np.uint8)
    disk_full.set()
    t0 = time.monotonic()
    tickets = [store.add(_result(), f"s{i}.png", big) for i in range(10)]
    assert _wait(lambda: "disk full" in store.problem, timeout=5.0), store.problem
    assert time.monotonic() - t0 < 5.0  # not after a busy timeout or a backlog (seconds apart on a loaded CI host)
    assert all(t.wait(2) for t in tickets) and {t.state for t in tickets} == {"spooled"}
    assert store.spooled == 10 and "kept in the spool" in store.problem

    spool_full.set()  # now even the spool's disk takes nothing: memory, bounded, images dropped first
    held = [store.add(_result(), f"m{i}.png", big) for i in range(30)]
    assert _wait(lambda: store.held == 20 and store.lost == 10)
    assert store._image_bytes == 0 and "held in memory only" in store.problem and "10 results not logged" in store.problem
    assert not any(t.durable for t in held)

    disk_full.clear()
    spool_full.clear()  # space is back: what is held and what is spooled goes into the database
    assert _wait(lambda: store.held == 0 and store.spooled == 0)
    assert sum(t.state == "logged" for t in held) == 20
    assert store.close() is False and "10 results were lost" in store.close_message
    frames = {r[1] for r in _rows(db)}
    assert frames == {f"s{i}.png" for i in range(10)} | {t for t in frames if t.startswith("m")}
    assert len(frames) == 30


def test_a_spool_left_by_an_earlier_run_is_moved_into_the_database_once(tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}")
    ticket = store.add(_result(), "a.png")
    assert ticket.wait(5)
    store.close()
    row = {"uid": ticket.uid}
    from datetime import datetime, timezone

    from station.core.spool import Spool

    spool = Spool(str(db) + ".spool.jsonl")  # one row already in the database (a drain cut short), one new
    base = {"time": datetime.now(timezone.utc), "station": "s", "frame": "x", "verdict": "NG", "label": "d",
            "score": 1.0, "top_cell": None, "recipe_name": "", "recipe_hash": "h", "timings": "{}",
            "image_path": None, "message": ""}
    spool.append([{**base, **row, "frame": "a.png"}, {**base, "uid": "f" * 32, "frame": "b.png"}])
    with open(spool.path, "a", encoding="ascii") as f:
        f.write('{"not": "a row"}\n{"half": ')  # damage, and a crash mid-append
    store = ResultStore(f"sqlite:///{db}")
    assert _wait(lambda: store.spooled == 0)
    assert store.close()
    assert [r[1] for r in _rows(db)] == ["a.png", "b.png"]
    assert not spool.path.exists() and (tmp_path / "r.db.spool.jsonl.bad").read_text().count("\n") == 2


def test_a_full_queue_holds_rows_in_bounded_memory_and_says_so(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", queue_size=2, put_timeout_s=0.01, memory_rows=4)
    released = threading.Event()
    real = store._insert_rows

    def stuck(rows, dedupe):  # a database that hangs
        released.wait(10)
        return real(rows, dedupe)

    store._insert_rows = stuck
    tickets = [store.add(_result(), f"{i}.png") for i in range(10)]
    assert store.held == 4 and store.lost >= 2 and "cannot keep up" in store.problem
    assert {t.state for t in tickets} >= {"held", "lost"}
    released.set()
    assert _wait(lambda: store.written + store.lost == 10 and store.pending == 0)
    assert all(t.durable for t in tickets if t.state != "lost")
    store.close()


def test_the_stop_policy_holds_the_line_while_rows_cannot_be_logged(tmp_path, monkeypatch):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", on_failure="stop", retry_s=0.05)
    failing = threading.Event()
    real = store._insert_rows

    def insert(rows, dedupe):
        if failing.is_set():
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("unable to open database file"))
        return real(rows, dedupe)

    monkeypatch.setattr(store, "_insert_rows", insert)
    assert not store.hold_line
    failing.set()
    store.add(_result(), "a.png")
    assert _wait(lambda: store.hold_line and store.problem)  # problem is published just after the cause
    assert store.problem.startswith("inspection stopped: results are not being logged (database unreachable)")
    failing.clear()
    store.add(_result(), "b.png")
    assert _wait(lambda: not store.hold_line and store.problem == "")
    assert store.close() and store.written == 2


def test_the_writer_thread_survives_an_unexpected_error(tmp_path, monkeypatch):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", archive_dir=tmp_path / "a")
    calls = []
    real = store._archive_images

    def broken_once(batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(batch)

    monkeypatch.setattr(store, "_archive_images", broken_once)
    store.add(_result(), "a.png", np.zeros((4, 4, 3), np.uint8))
    assert _wait(lambda: "result writer error: RuntimeError: a bug" in store.problem)
    assert store._thread.is_alive()
    assert store.add(_result(), "b.png").wait(5)
    assert _wait(lambda: store.problem == "")
    assert store.close()


def test_a_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(StationError, match="cannot open the result database"):
        ResultStore("nosuchdb://x")
    with pytest.raises(StationError, match="on_failure must be"):
        ResultStore(f"sqlite:///{tmp_path / 'r.db'}", on_failure="maybe")


def test_a_result_log_of_an_older_station_gets_the_uid_column(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE inspections (id INTEGER PRIMARY KEY, time DATETIME, station VARCHAR(100), "
                     "frame VARCHAR(500), verdict VARCHAR(10), label VARCHAR(100), score FLOAT, top_cell VARCHAR(20),"
                     " recipe_name VARCHAR(200), recipe_hash VARCHAR(80), timings TEXT, image_path VARCHAR(500), "
                     "message TEXT)")
        conn.execute("INSERT INTO inspections (time, station, frame, verdict, label, recipe_name, recipe_hash, "
                     "timings, message) VALUES ('2024-01-01 00:00:00', 's', 'old.png', 'OK', 'good', '', 'h', '{}', '')")
    store = ResultStore(f"sqlite:///{db}")
    assert store.add(_result(), "new.png").wait(5)
    assert store.close()
    assert [r[1] for r in _rows(db)] == ["old.png", "new.png"]


def test_commit_latency_is_measured(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    for i in range(20):
        assert store.add(_result(), f"{i}.png").wait(5)
    lat = store.commit_latency_ms()
    store.close()
    assert lat["n"] == 20 and 0 < lat["p50"] <= lat["p95"]


def test_the_window_logs_every_result_with_its_recipe_hash(qtbot, tmp_path, monkeypatch, synthetic_recipe,
                                                          synthetic_data):
    """Results of the live line reach the result log; a log that cannot be opened is shown, not hidden."""
    from station.core.recipe import Recipe
    from station.core.settings import StationSettings
    from station.ui.app import create_window

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    db = tmp_path / "results.db"
    settings = StationSettings(results_db=f"sqlite:///{db}", archive_dir=str(tmp_path / "archive"))
    window = create_window(str(synthetic_data / "test" / "good"), str(synthetic_recipe), settings,
                           save_settings=False)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.service.results.written >= 20, timeout=60000)
    assert window.status.results_label.isHidden()
    qtbot.waitUntil(lambda: window.verdict_panel.log_label.isHidden(), timeout=5000)  # the last verdict is logged
    window.close()
    store = ResultStore(f"sqlite:///{db}")
    rows = store.recent(100)
    store.close()
    assert len(rows) == 20 and {r.recipe_hash for r in rows} == {Recipe.load(synthetic_recipe).content_hash}

    broken = StationSettings(results_db="nosuchdb://nowhere")
    window = create_window(str(synthetic_data / "test" / "good"), str(synthetic_recipe), broken,
                           save_settings=False, start=False)
    qtbot.addWidget(window)
    window.status.refresh()
    assert not window.status.results_label.isHidden()
    assert "not being logged" in window.status.results_label.text().lower()
    window.close()


def test_a_verdict_is_marked_until_logged_and_a_failing_log_is_red_with_its_cause(qtbot, tmp_path, monkeypatch,
                                                                                  synthetic_recipe, synthetic_data):
    """The screen shows the verdict at once but marks it until its row is committed; a full disk is shown
    in red within a second; closing says what the log could not save and never blames the camera."""
    from PySide6.QtWidgets import QMessageBox

    from station.core.settings import StationSettings
    from station.ui.app import create_window

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    # patched first: closing a window with unlogged rows asks in a modal box, which never returns offscreen
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, title, text: warnings.append((title, text)))
    settings = StationSettings(results_db=f"sqlite:///{tmp_path / 'r.db'}", archive_dir=str(tmp_path / "archive"))
    window = create_window(str(synthetic_data / "test" / "good"), str(synthetic_recipe), settings,
                           save_settings=False, start=False)
    qtbot.addWidget(window)
    store = window.service.results
    gate = threading.Event()
    real_insert = store._insert_rows

    def slow_insert(rows, dedupe):
        gate.wait(60)
        return real_insert(rows, dedupe)

    monkeypatch.setattr(store, "_insert_rows", slow_insert)
    window.service.trigger()
    qtbot.waitUntil(lambda: window.verdict_panel.verdict in ("OK", "NG", "REVIEW"), timeout=10000)
    assert window.verdict_panel.log_label.isVisibleTo(window) and "not yet logged" in window.verdict_panel.log_label.text()
    gate.set()
    qtbot.waitUntil(lambda: not window.verdict_panel.log_label.isVisibleTo(window), timeout=5000)

    attempts = []

    def full(*_args):
        attempts.append(time.monotonic())
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    def spool_full(_rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_insert_rows", full)
    monkeypatch.setattr(store, "spool_append", spool_full)
    monkeypatch.setattr(store, "_retry_s", 60.0)  # no second attempt within the wait: shown on the first failure
    window.service.trigger()
    qtbot.waitUntil(lambda: not window.status.results_label.isHidden(), timeout=10000)
    assert len(attempts) == 1
    assert "disk full" in window.status.results_label.text() and "held in memory only" in window.status.results_label.text()
    qtbot.waitUntil(lambda: "held in memory" in window.verdict_panel.log_label.text(), timeout=10000)
    details = window.status.log_details()  # what View > Result log shows: the settings of the log
    assert "retention: images kept 30 days, at most 50000 MB" in details and "cannot be logged: continue" in details
    window.close()
    assert len(warnings) == 1 and "result log" in warnings[0][0] and "disk full" in warnings[0][1]
    assert "camera" not in warnings[0][1].lower()


@pytest.mark.parametrize("url", ["postgresql+psycopg2://line:secret@localhost/results",  # psycopg2 not installed
                                 "postgresql+nosuchdriver://line:secret@localhost/results"])
def test_a_database_url_without_its_driver_is_one_line_and_hides_the_password(url):
    with pytest.raises(StationError) as caught:  # was ModuleNotFoundError, which stopped the start
        ResultStore(url)
    message = str(caught.value)
    assert "\n" not in message and "secret" not in message and "localhost/results" in message
