"""The result database: Alembic migrations run when it is opened, so a station opens the database of an older
station (SQLite and PostgreSQL alike), refuses one of a newer station, and the migrations build exactly the
table the code writes. PostgreSQL is a real server on loopback (tests/postgres_server.py)."""

import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine, func, select,
                        text)

from postgres_server import free_port
from station.core.database import engine_url, head_revision, open_engine
from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.result_rows import Base, InspectionRow
from station.core.results import ResultStore
from station.core.verdict import Verdict

#: a result log written by the station as it was before the migrations (its ResultStore, three rows)
TODAY_DB = Path(__file__).parent / "data" / "result_log_2026-11_before_migrations.db"

#: the table that station made (Base.metadata.create_all then), frozen here for PostgreSQL
_before = MetaData()
BEFORE_MIGRATIONS = Table(
    "inspections", _before,
    Column("id", Integer, primary_key=True), Column("uid", String(32), unique=True, nullable=True),
    Column("time", DateTime(timezone=True), index=True, nullable=False), Column("station", String(100), nullable=False),
    Column("frame", String(500), nullable=False), Column("verdict", String(10), index=True, nullable=False),
    Column("label", String(100), nullable=False), Column("score", Float, nullable=True),
    Column("top_cell", String(20), nullable=True), Column("recipe_name", String(200), nullable=False),
    Column("recipe_hash", String(80), index=True, nullable=False), Column("timings", Text, nullable=False),
    Column("image_path", String(500), nullable=True), Column("message", Text, nullable=False))


def _result(verdict=Verdict.NG, score=3.0, cells=None):
    return InspectionResult(verdict, "defect" if verdict is not Verdict.OK else "good", score,
                            np.full((9, 3), 0.5) if cells is None else cells, (1, 2), {"total": 4.0}, "sha256:abc")


def _schema_differences(url: str) -> list:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def _revision(url: str) -> str:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()


def test_a_new_database_is_built_by_the_migrations_and_matches_the_table_the_code_writes(tmp_path):
    """Whoever adds a column to InspectionRow without a migration (or the other way round) fails here."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_engine(url).dispose()
    assert _revision(url) == head_revision()
    assert _schema_differences(url) == []


def test_a_database_made_by_todays_station_opens_keeps_its_rows_and_takes_new_ones(tmp_path):
    db = tmp_path / "r.db"
    shutil.copy(TODAY_DB, db)
    store = ResultStore(f"sqlite:///{db}")
    cells = np.arange(27, dtype=float).reshape(9, 3) / 10
    assert store.add(_result(cells=cells), "new.png").wait(5)
    assert store.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT frame, verdict, uid IS NOT NULL, cell_scores FROM inspections ORDER BY id").fetchall()
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert [r[:3] for r in rows] == [("part_0.png", "OK", 1), ("part_1.png", "NG", 1), ("part_2.png", "REVIEW", 1),
                                     ("new.png", "NG", 1)]
    assert rows[0][3] is None and rows[3][3].startswith("[[0.0,0.1,0.2],[0.3,")
    assert version == head_revision()


def test_a_database_of_a_newer_station_is_refused_and_left_as_it_is(tmp_path):
    db = tmp_path / "r.db"
    ResultStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    before = db.read_bytes()
    with pytest.raises(StationError, match="made by a newer station .*0099_from_the_future"):
        ResultStore(f"sqlite:///{db}")
    assert db.read_bytes() == before


def test_a_foreign_inspections_table_is_refused(tmp_path):
    db = tmp_path / "r.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE inspections (name TEXT)")
    with pytest.raises(StationError, match="not a result log"):
        ResultStore(f"sqlite:///{db}")


def test_a_bare_postgresql_url_means_psycopg():
    assert engine_url("postgresql://line:pw@plant-db/results").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg2://h/db").drivername == "postgresql+psycopg2"
    assert engine_url("sqlite:///x.db").drivername == "sqlite"


# -- PostgreSQL, a real server -----------------------------------------------------------------------------
def _run_line(url: str, n: int) -> list[tuple]:
    """The same results through a ResultStore; the rows as the database holds them."""
    store = ResultStore(url)
    verdicts = [Verdict.OK, Verdict.OK, Verdict.NG, Verdict.REVIEW]
    tickets = [store.add(_result(verdicts[i % 4], float(i), np.full((9, 3), i / 7)), f"part_{i:04d}.png",
                         source="demo") for i in range(n)]
    assert all(t.wait(10) for t in tickets)
    assert store.close() and store.written == n
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(InspectionRow)).scalar_one() == n
            return [tuple(r) for r in conn.execute(select(
                InspectionRow.frame, InspectionRow.verdict, InspectionRow.label, InspectionRow.score,
                InspectionRow.top_cell, InspectionRow.recipe_name, InspectionRow.recipe_hash,
                InspectionRow.cell_scores).order_by(InspectionRow.id))]
    finally:
        engine.dispose()


def test_postgresql_stores_the_same_rows_as_sqlite(tmp_path, postgres_url):
    on_sqlite = _run_line(f"sqlite:///{tmp_path / 'r.db'}", 300)
    on_postgres = _run_line(postgres_url, 300)
    assert len(on_postgres) == len(on_sqlite) == 300
    assert on_postgres == on_sqlite
    assert _revision(postgres_url) == head_revision()
    assert _schema_differences(postgres_url) == []


def test_a_postgresql_database_made_by_todays_station_is_migrated_with_its_rows(postgres_url):
    engine = create_engine(postgres_url)
    _before.create_all(engine)
    with engine.begin() as conn:
        conn.execute(BEFORE_MIGRATIONS.insert(), [
            {"uid": f"{i:032x}", "time": "2026-11-30 08:00:00+00", "station": "s", "frame": f"old_{i}.png",
             "verdict": "OK", "label": "good", "score": 0.5, "recipe_name": "r", "recipe_hash": "h", "timings": "{}",
             "message": ""} for i in range(5)])
    engine.dispose()
    store = ResultStore(postgres_url)  # opening migrates
    assert all(store.add(_result(), f"part_{i:04d}.png").wait(10) for i in range(3))
    assert store.close()
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT frame, cell_scores IS NULL FROM inspections ORDER BY id")).fetchall()
    engine.dispose()
    assert [tuple(r) for r in got] == [(f"old_{i}.png", True) for i in range(5)] + \
        [(f"part_{i:04d}.png", False) for i in range(3)]
    assert _revision(postgres_url) == head_revision()


def test_two_stations_opening_one_new_postgresql_database_together_migrate_it_once(postgres_url):
    errors, engines = [], []

    def open_one():
        try:
            engines.append(open_engine(postgres_url))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for engine in engines:
        engine.dispose()
    assert errors == [] and len(engines) == 4
    assert _revision(postgres_url) == head_revision()


def test_an_unreachable_postgresql_server_is_one_line_without_the_password():
    url = f"postgresql://line:secret@127.0.0.1:{free_port()}/results"  # nothing listens there
    with pytest.raises(StationError) as caught:
        ResultStore(url)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_a_spool_written_before_cell_scores_is_still_read_and_moved_in(tmp_path):
    """A station upgraded with rows waiting in its spool: their lines lack the newer fields."""
    db = tmp_path / "r.db"
    spool = tmp_path / "r.db.spool.jsonl"
    line = ('{"uid": "0123456789abcdef0123456789abcdef", "time": "2026-11-30T06:00:00+00:00", "station": "s", '
            '"frame": "waiting.png", "verdict": "NG", "label": "pushed", "score": 4.5, "top_cell": "1,4", '
            '"recipe_name": "r", "recipe_hash": "h", "timings": "{}", "image_path": null, "message": ""}\n')
    spool.write_text(line)
    store = ResultStore(f"sqlite:///{db}")
    assert store.add(_result(), "new.png").wait(5)
    assert store.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT frame, cell_scores IS NULL FROM inspections ORDER BY id").fetchall()
    assert sorted(rows) == [("new.png", 0), ("waiting.png", 1)] and not spool.exists()
