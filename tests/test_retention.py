"""Retention of the image archive and the result log: by age, by size, by a free-disk floor, and never a
file the station did not archive itself."""

import sqlite3
import time
from collections import namedtuple
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import create_engine

from station.core import retention as retention_module
from station.core.inspector import InspectionResult
from station.core.results import ResultStore
from station.core.retention import Retention, RetentionPolicy, is_station_image
from station.core.verdict import Verdict


def _result():
    return InspectionResult(Verdict.NG, "defect", 3.0, np.zeros((9, 3)), (1, 2), {"total": 4.0}, "sha256:abc")


def _fill(tmp_path, n=6):
    """A result log with n NG rows and their archived images, made by the station."""
    db = tmp_path / "r.db"
    store = ResultStore(f"sqlite:///{db}", archive_dir=tmp_path / "archive", archive="ng")
    rng = np.random.default_rng(0)
    for i in range(n):
        assert store.add(_result(), f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).wait(5)
    assert store.close()
    return db


def _images(db):
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT image_path FROM inspections ORDER BY id")]


def _age(db, days, first_n):
    old = (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE inspections SET time = ? WHERE id <= {int(first_n)}", (old,))


def _foreign_files(tmp_path):
    """What else lies in (and near) the archive folder: none of it is the station's to delete."""
    archive = tmp_path / "archive"
    day = next(p for p in archive.iterdir() if p.is_dir())
    files = [archive / "notes.txt", day / "NG" / "my_photo.png", archive / "19990101" / "NG" / "120000_000000.png",
             tmp_path / "elsewhere" / "20240101" / "NG" / "120000_000000.png"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"not the station's")
    return files


def test_size_limit_removes_only_images_the_station_archived(tmp_path):
    db = _fill(tmp_path)
    foreign = _foreign_files(tmp_path)
    with sqlite3.connect(db) as conn:  # a row that names a file outside the archive: not deleted either
        conn.execute("UPDATE inspections SET image_path = ? WHERE id = 6", (str(foreign[3]),))
    engine = create_engine(f"sqlite:///{db}")
    retention = Retention(RetentionPolicy(archive_max_mb=1e-6), engine, tmp_path / "archive")
    assert retention.run() == ""
    engine.dispose()
    assert all(f.read_bytes() == b"not the station's" for f in foreign)
    assert _images(db)[:5] == [None] * 5 and retention.deleted_images == 5
    assert not is_station_image(foreign[3], tmp_path / "archive") and not is_station_image(foreign[1], tmp_path / "archive")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == 6  # rows stay


def test_age_limits_remove_old_images_then_old_rows(tmp_path):
    db = _fill(tmp_path)
    before = _images(db)
    _age(db, 40, 3)
    engine = create_engine(f"sqlite:///{db}")
    Retention(RetentionPolicy(archive_keep_days=30), engine, tmp_path / "archive").run()
    after = _images(db)
    assert after[:3] == [None] * 3 and after[3:] == before[3:]
    assert not any((tmp_path / "archive").glob("**/" + before[0].rsplit("/", 1)[-1]))
    Retention(RetentionPolicy(results_keep_days=30), engine, tmp_path / "archive").run()
    engine.dispose()
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT frame FROM inspections ORDER BY id")] == ["3.png", "4.png", "5.png"]


def test_a_free_disk_floor_removes_the_oldest_images_and_warns_when_none_are_left(tmp_path, monkeypatch):
    db = _fill(tmp_path)
    usage = namedtuple("usage", "total used free")
    state = {"free": 100e6}

    def disk_usage(_path):
        return usage(1e9, 1e9 - state["free"], state["free"])

    real_unlink = Retention._unlink

    def unlink(self, path):  # each image removed gives back 10 MB on this pretend disk
        real_unlink(self, path)
        state["free"] += 10e6

    monkeypatch.setattr(retention_module.shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(Retention, "_unlink", unlink)
    monkeypatch.setattr(retention_module, "FLOOR_STEP", 1)
    engine = create_engine(f"sqlite:///{db}")
    retention = Retention(RetentionPolicy(min_free_mb=120), engine, tmp_path / "archive")
    assert retention.run() == ""
    assert _images(db)[:2] == [None, None] and all(_images(db)[2:])  # the two oldest went, no more
    state["free"] = 10e6
    warning = retention.run()
    engine.dispose()
    assert "disk nearly full" in warning and _images(db) == [None] * 6


def test_the_writer_runs_retention_on_its_own(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", archive_dir=tmp_path / "archive", archive="ng",
                        retention=RetentionPolicy(archive_max_mb=0.001, interval_s=0.05))
    rng = np.random.default_rng(1)
    for i in range(5):
        assert store.add(_result(), f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).wait(5)
    # The rows are durable before their images are written (the archiver thread does that), so wait for the
    # passes to catch up with the images rather than for the first pass.
    deadline = time.monotonic() + 10
    while not (store.retention.deleted_images >= 4 and (store.retention.archive_bytes or 0) <= 1000) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.retention.archive_bytes <= 1000 and store.retention.deleted_images >= 4
    assert store.close()
