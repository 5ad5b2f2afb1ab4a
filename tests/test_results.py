"""The result log: rows reach the database, NG images are archived, and failures are visible."""

import os
import time

import numpy as np
import pytest

from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.results import ResultStore
from station.core.verdict import Verdict


def _result(verdict=Verdict.NG, score=3.0):
    return InspectionResult(verdict, "defect" if verdict is not Verdict.OK else "good", score,
                            np.zeros((9, 3)), (1, 2), {"total": 4.0}, "sha256:abc")


def test_rows_and_ng_images_are_written(tmp_path):
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", archive_dir=tmp_path / "archive", archive="ng")
    image = np.full((20, 30, 3), 90, np.uint8)
    assert store.add(_result(Verdict.NG), "a.png", image)
    assert store.add(_result(Verdict.OK, 0.1), "b.png", image)
    assert store.close()
    reopened = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    rows = reopened.recent()
    reopened.close()
    assert [r.frame for r in rows] == ["b.png", "a.png"]
    assert all(r.recipe_hash == "sha256:abc" for r in rows)
    ng = rows[1]
    assert ng.verdict == "NG" and ng.top_cell == "1,2" and ng.image_path and os.path.isfile(ng.image_path)
    assert rows[0].image_path is None  # only NG parts are archived by default


def test_a_failing_archive_is_reported_and_rows_are_kept(tmp_path):
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the archive folder should be")
    problems = []
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", archive_dir=blocker, on_problem=problems.append)
    store.add(_result(), "a.png", np.zeros((4, 4, 3), np.uint8))
    deadline = time.monotonic() + 5
    while not store.problem and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not being logged" in store.problem and problems
    assert store.pending == 1  # kept for a retry, not dropped
    blocker.unlink()  # the disk is fixed
    deadline = time.monotonic() + 5
    while store.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.pending == 0 and store.problem == "" and store.written == 1
    assert store.close()


def test_a_full_queue_counts_lost_rows_and_says_so(tmp_path):
    import threading

    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}", queue_size=2, put_timeout_s=0.01)
    released = threading.Event()
    real_write = store._write

    def stuck_write(batch):  # a database that hangs
        released.wait(10)
        return real_write(batch)

    store._write = stuck_write
    results = [store.add(_result(), f"{i}.png") for i in range(10)]
    assert results.count(False) >= 5
    assert store.lost == results.count(False) and "not logged" in store.problem
    released.set()
    assert store.close()
    assert store.written == results.count(True)


def test_a_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(StationError, match="cannot open the result database"):
        ResultStore("nosuchdb://x")


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
    qtbot.waitUntil(lambda: window.service.results.written >= 20, timeout=20000)
    assert window.status.results_label.isHidden()
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
