"""The station's log file: a worker thread's failure reaches it with its traceback (and the status bar), an
uncaught failure in any thread is written there, and an unwritable folder never stops the station."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from station.core import logs
from station.core.sources import Frame, Source


@pytest.fixture
def log_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_LOG_DIR", str(tmp_path / "logs"))
    logs.close_logging()  # a handler an earlier test opened elsewhere
    path, why = logs.setup_logging()
    assert why == "" and path == tmp_path / "logs" / "station.log"
    yield path
    logs.close_logging()
    logs.uninstall_thread_hook()


class ExplodingCamera(Source):
    """A camera whose driver raises inside the capture thread on its third frame."""

    live = True

    def __init__(self) -> None:
        super().__init__()
        self.description = "exploding camera"
        self.nominal_fps = 50.0

    def read(self) -> Frame | None:
        if self._index >= 2:
            raise RuntimeError("driver fault 0x5eed in read_frame")
        return self._frame(np.zeros((48, 64, 3), np.uint8), f"frame #{self._index}")


@pytest.mark.gui
@pytest.mark.qt_log_ignore("does not support propagateSizeHints")
def test_a_worker_thread_failure_is_in_the_log_with_its_traceback_and_in_the_status_bar(
        qtbot, log_file, synthetic_recipe):
    from station.core.settings import StationSettings
    from station.ui.app import create_window

    window = create_window("demo", str(synthetic_recipe), StationSettings(), save_settings=False, start=False)
    qtbot.addWidget(window)
    window.service.set_source(ExplodingCamera())
    window.service.start()
    qtbot.waitUntil(lambda: "driver fault 0x5eed" in window.status.source_label.text(), timeout=10000)
    assert "failed" in window.status.source_label.text()
    window.close()
    text = log_file.read_text(encoding="utf-8")
    assert "the capture thread failed" in text and "[station-capture]" in text
    assert "Traceback (most recent call last)" in text
    assert "in read\n" in text and "RuntimeError: driver fault 0x5eed in read_frame" in text


def test_an_uncaught_failure_in_any_thread_is_logged_with_its_traceback(log_file, monkeypatch):
    handed_on = []
    monkeypatch.setattr(logs, "_previous_hook", handed_on.append)  # instead of Python's print on stderr

    def doomed():
        raise ValueError("spool index out of range 77")

    thread = threading.Thread(target=doomed, name="station-doomed")
    thread.start()
    thread.join()
    text = log_file.read_text(encoding="utf-8")
    assert "thread station-doomed failed: ValueError: spool index out of range 77" in text
    assert "Traceback (most recent call last)" in text and "in doomed" in text
    assert len(handed_on) == 1  # the hook that was there before still hears of it


def test_the_log_rotates_and_keeps_older_files(log_file, monkeypatch):
    handler = logs._handler
    monkeypatch.setattr(handler, "maxBytes", 2000)
    for i in range(60):
        logging.getLogger("station.test").info("line %03d %s", i, "x" * 60)
    assert (log_file.parent / "station.log.1").is_file()
    assert log_file.stat().st_size <= 2000


def test_an_unwritable_log_folder_is_one_line_and_the_station_goes_on(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    monkeypatch.setenv("STATION_LOG_DIR", str(blocker / "logs"))
    logs.close_logging()
    try:
        path, why = logs.setup_logging()
        assert path is None and "no log file" in why and str(blocker) in why and "\n" not in why
        assert blocker.read_text() == "a file where the log folder should be"  # nothing of the user's touched
    finally:
        logs.uninstall_thread_hook()


def test_warnings_still_reach_stderr_as_one_line_and_the_traceback_goes_to_the_file(log_file, capsys):
    try:
        raise KeyError("cell 3x9")
    except KeyError:
        logging.getLogger("station.core.test").exception("scoring cell failed")
    err = capsys.readouterr().err
    assert err == "scoring cell failed\n"
    assert "KeyError: 'cell 3x9'" in log_file.read_text(encoding="utf-8")
