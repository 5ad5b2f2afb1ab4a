"""The station window, offscreen: it opens, the demo line runs, the line controls work, sources can be
switched while running, closing leaves no thread behind, lost cameras and corrupt files are shown."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from station.core.imageio import read_image  # noqa: E402
from station.core.settings import StationSettings  # noqa: E402
from station.ui.app import create_window  # noqa: E402
from test_live import FlakyCamera  # noqa: E402

# the offscreen platform cannot honour window size hints and warns about it for every window
pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]


def station_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("station-")]


@pytest.fixture
def make_window(qtbot, synthetic_data, synthetic_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    windows = []

    def make(source: str | None = None, start: bool = True):
        window = create_window(source or f"demo:{synthetic_data / 'test'}", str(synthetic_recipe),
                               StationSettings(demo_fps=30), save_settings=False, start=start)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()  # what an operator does; pytest-qt closes it again later, harmlessly
    assert station_threads() == []


def total(window) -> int:
    return window.service.pipeline.tally.total


def test_window_opens_and_demo_line_shows_verdicts(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: window.verdict_panel.verdict in ("OK", "NG", "REVIEW"), timeout=5000)
    qtbot.waitUntil(lambda: window.counters.values["total"].text() not in ("", "0"), timeout=15000)
    qtbot.waitUntil(lambda: window.recent.count() > 0 and window.last_ng.count() > 0, timeout=5000)
    recipe = window.service.recipe
    qtbot.waitUntil(lambda: "fps" in window.status.rates_label.text(), timeout=15000)
    assert recipe.short_hash in window.status.recipe_label.text()
    assert "demo line: running" in window.status.source_label.text()
    assert window.live_view.current is not None and window.live_view.current.overlay is not None
    assert window.service.painted_count > 0
    # the menus show the shortcuts
    assert window.start_action.shortcut().toString() == "F5"
    assert window.trigger_action.shortcut().toString() == "F7"


def test_start_stop_pause_and_single_shot(qtbot, make_window):
    window = make_window()
    service = window.service
    qtbot.waitUntil(lambda: total(window) > 3, timeout=5000)
    window.stop_action.trigger()
    assert service.run_state == "stopped" and station_threads() == []
    assert window.verdict_panel.verdict == "IDLE" and "STOPPED" in window.verdict_panel.verdict_label.text()
    n = total(window)
    window.trigger_action.trigger()  # one part, then wait
    qtbot.waitUntil(lambda: total(window) == n + 1, timeout=15000)
    qtbot.wait(300)
    assert total(window) == n + 1 and service.run_state == "paused"
    qtbot.waitUntil(lambda: window.verdict_panel.verdict in ("OK", "NG", "REVIEW"), timeout=15000)
    window.pause_action.trigger()  # resume
    assert service.run_state == "running"
    qtbot.waitUntil(lambda: total(window) > n + 5, timeout=15000)
    window.pause_action.trigger()
    assert service.run_state == "paused"
    qtbot.wait(100)
    n = total(window)
    qtbot.wait(300)
    assert total(window) == n
    window.start_action.trigger()
    qtbot.waitUntil(lambda: total(window) > n, timeout=15000)


def test_switching_source_while_running(qtbot, make_window, synthetic_data, tmp_path):
    window = make_window()
    qtbot.waitUntil(lambda: total(window) > 2, timeout=5000)
    folder = tmp_path / "parts"
    folder.mkdir()
    for f in sorted((synthetic_data / "test" / "good").glob("*.png"))[:5]:
        shutil.copy(f, folder / f.name)
    assert window.open_source(str(folder))
    assert window.service.source.description == "folder parts"
    with qtbot.waitSignal(window.service.line_finished, timeout=5000):
        pass
    assert window.service.run_state == "stopped"
    assert "finished: " in window.banner.text()
    assert not window.open_source(str(tmp_path / "nowhere"))
    assert "Cannot use source" in window.banner.text()
    assert window.open_source(f"demo:{synthetic_data / 'test'}")
    n = total(window)
    qtbot.waitUntil(lambda: total(window) > n + 2, timeout=5000)


def test_closing_while_running_leaves_no_thread(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: total(window) > 2, timeout=5000)
    assert sorted(station_threads()) == ["station-capture", "station-inference", "station-watchdog"]
    window.close()
    assert station_threads() == []


def test_lost_camera_shows_state_and_resumes(qtbot, make_window, synthetic_data):
    window = make_window(start=False)
    image = read_image(next((synthetic_data / "test" / "good").glob("*.png")))
    window.service.set_source(FlakyCamera(image, before=3, lost_s=0.8, fps=30))
    window.service.start()
    qtbot.waitUntil(lambda: "camera lost, reconnecting" in window.status.source_label.text(), timeout=5000)
    assert window.verdict_panel.verdict == "IDLE" and "NO IMAGE" in window.verdict_panel.verdict_label.text()
    qtbot.waitUntil(lambda: "flaky camera: running" in window.status.source_label.text(), timeout=5000)
    qtbot.waitUntil(lambda: window.verdict_panel.verdict in ("OK", "NG", "REVIEW"), timeout=15000)


def test_folder_with_a_corrupt_file(qtbot, make_window, synthetic_data, tmp_path):
    folder = tmp_path / "with-bad"
    folder.mkdir()
    for f in sorted((synthetic_data / "test" / "good").glob("*.png"))[:4]:
        shutil.copy(f, folder / f.name)
    (folder / "zz_broken.png").write_bytes(b"not a png")
    window = make_window(str(folder))
    with qtbot.waitSignal(window.service.line_finished, timeout=5000):
        pass
    window.counters.refresh()
    assert window.counters.values["total"].text() == "4"
    assert "zz_broken.png" in window.counters.unreadable.text()
    assert "zz_broken.png" in window.banner.text() and "1 could not be read" in window.banner.text()


def test_the_live_view_keeps_its_size_as_counters_grow_and_verdicts_change(qtbot, make_window, monkeypatch):
    """Counters gaining digits and OK / NG details of one or two lines must not lay the window out again: each
    time the live view changed size its frame was composed again in the GUI thread, a stall while the line ran
    (NG reaching 100 took 4 px from the view; by OK reaching 100 000 it had lost 158)."""
    window = make_window(start=False)
    qtbot.waitExposed(window)
    sizes = [None]

    def settled():  # the first layout may land after the window is exposed on a loaded machine
        sizes.append(window.live_view.size())
        return sizes[-1] == sizes[-2] == sizes[-3] if len(sizes) > 3 else False

    qtbot.waitUntil(settled, timeout=10000)
    before = window.live_view.size()
    counts = {"total": 0, "ok": 0, "ng": 0, "review": 0, "yield_pct": None, "unreadable": 0, "bad_files": []}
    monkeypatch.setattr(window.service.pipeline.tally, "snapshot", lambda: dict(counts))
    panel = window.verdict_panel
    for n in (9, 99, 999, 9_999, 99_999, 999_999, 9_999_999):
        counts.update(total=n + 1, ok=n, ng=n // 10 + 1, review=n // 100 + 1, yield_pct=99.9 * n / (n + 1))
        window.counters.refresh()
        panel._show("OK", "OK", "good part \u00b7 2 engines agree")
        qtbot.wait(5)
        panel._show("NG", "NG", "misaligned \u00b7 pin col 3, row 2 \u00b7 2 engines agree")
        qtbot.wait(5)
        assert window.live_view.size() == before, f"at {n} parts"
    assert window.counters.values["yield"].text() == "99.8%"  # 99.89999 % rounded down
    big = window.counters.values["ok"]
    assert big.text() == "9999999" and big.fitting_px(big.text()) < 30  # drawn smaller, not cut or widened


def test_the_yield_is_rounded_down():
    from station.ui.counters_panel import yield_text

    assert yield_text(99.95) == "99.9%" and yield_text(99.9) == "99.9%" and yield_text(58.1) == "58.1%"
    assert yield_text(100.0) == "100.0%" and yield_text(None) == "\u2013"


def test_counters_reset_asks_first_and_last_ng_opens_full_size(qtbot, make_window, monkeypatch):
    window = make_window()
    qtbot.waitUntil(lambda: window.last_ng.count() > 0, timeout=5000)
    window.service.stop()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Cancel)
    assert not window.counters.ask_reset() and total(window) > 0
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Reset)
    assert window.counters.ask_reset() and window.counters.values["total"].text() == "0"
    dialog = window.last_ng.open_item(window.last_ng.item(0))
    assert dialog.isVisible() and dialog.item.result.verdict.value == "NG"
    assert dialog.canvas._heat is not None and dialog.canvas._image.width() == dialog.item.frame.image.shape[1]
    dialog.close()


def test_zoom_and_overlay_controls(qtbot, make_window):
    window = make_window()
    view = window.live_view
    qtbot.waitUntil(lambda: view.current is not None, timeout=5000)
    view.zoom_in()
    assert view.canvas.zoom > 1
    view.canvas.fit()
    assert view.canvas.zoom == 1
    window.overlay_action.trigger()
    assert not view.canvas.overlay_visible and not view.legend.isVisible()
    view.set_opacity(0.2)
    assert view.canvas.opacity == pytest.approx(0.2)


def test_no_display_says_so_in_one_line(monkeypatch, capsys):
    from station.ui.app import run_gui

    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert run_gui(None) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "station bench" in err[0] and "station inspect" in err[0]


def test_gui_bench_runs_offscreen(synthetic_data, synthetic_recipe):
    import json

    cmd = [sys.executable, "-m", "station", "bench", "--gui", "--seconds", "1", "--source",
           f"demo:{synthetic_data / 'test'}", "--recipe", str(synthetic_recipe)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["displayed_fps"] > 5 and report["max_stall_ms"] is not None
    assert report["latency_ms"]["painted"]["p95"] > 0
    longest = report["longest_stall"]
    assert longest["ms"] == report["max_stall_ms"]
    if sys.platform.startswith("linux"):  # what the GUI thread did during its longest stall
        assert longest["gui_thread_running_ms"] >= 0 and longest["waiting_for_a_cpu_ms"] >= 0
    assert set(report["cpu_pct"]) == {"gui_thread", "process"} and report["cpu_pct"]["gui_thread"] > 0


def test_gui_bench_ends_its_measurement_before_the_window_closes(synthetic_data, synthetic_recipe):
    """Closing the window collects the whole heap once (260-410 ms); the stall meter ticked once more after it and
    reported a 360 ms stall at the last moment of a 600 s run whose every other stall was under 20 ms. Run in a
    process of its own: the bench quits its application."""
    import json

    script = f"""
import json, time
from station.ui import bench
from station.ui.collector import GuiThreadCollector
real_stop = GuiThreadCollector.stop
def slow_stop(self):
    time.sleep(0.3)  # as long as the full collection at closing
    real_stop(self)
GuiThreadCollector.stop = slow_stop
report = bench.run_gui_bench({str(f"demo:{synthetic_data / 'test'}")!r}, {str(synthetic_recipe)!r}, 1.5, 30.0,
                             warmup_s=0.5)
print(json.dumps(report))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["max_stall_ms"] < 250 and report["longest_stall"]["at_s"] < 2.1
    assert not any("closeEvent" in stack for stack, _ in report["stalls_over_150ms_stacks"])


def test_broken_settings_file_is_reported_in_the_window(qtbot, synthetic_data, synthetic_recipe, tmp_path,
                                                        monkeypatch):
    from station.ui.app import open_station

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path))
    (tmp_path / "settings.json").write_text("{ broken")
    window = open_station(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe))
    qtbot.addWidget(window)
    try:
        assert "set aside" in window.banner.text() and window._banner_row.isVisibleTo(window)
        assert list(tmp_path.glob("settings.json.bad-*"))
    finally:
        window.close()
    assert station_threads() == []
    assert (tmp_path / "settings.json").is_file()  # closing saved good settings again


def test_station_window_has_the_engineer_menu_and_survives_an_unusable_workbench_folder(
        qtbot, synthetic_data, synthetic_recipe, tmp_path, monkeypatch):
    from station.ui.app import open_station

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_WORKBENCH_DIR", str(tmp_path / "workbench"))
    window = open_station(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe))
    qtbot.addWidget(window)
    try:
        titles = [action.text() for action in window.menuBar().actions()]
        assert "&Engineer" in titles and window.workbench is not None
        assert not window.workbench.workbench.is_engineer  # operator mode by default
    finally:
        window.close()
    assert station_threads() == []

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workbench folder should be")
    monkeypatch.setenv("STATION_WORKBENCH_DIR", str(blocker / "workbench"))
    window = open_station(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe))
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(window.service.results_ready, timeout=10000):
            pass  # the line runs whatever the workbench's state
        # the operator is not bothered at the start; the engineer's first use says what is wrong
        from station.core.workbench.errors import AccessError

        with pytest.raises(AccessError, match="cannot write the audit log"):  # the first PIN is audited first
            window.workbench.workbench.session.set_pin("2468")
    finally:
        window.close()
    assert station_threads() == []


def test_closing_twice_answers_the_first_shutdown(qtbot, synthetic_data, synthetic_recipe):
    """pytest-qt (and a user's second click) closes a closed window again: that must not report a camera
    that did not stop (a modal box that blocked the teardown)."""
    from station.ui.app import create_window

    window = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), save_settings=False)
    qtbot.addWidget(window)
    window.close()
    assert window.service.shutdown() is True
    window.close()
    assert station_threads() == []


def test_source_picker_offers_what_there_is(qtbot, tmp_path):
    from station.ui.source_picker import SourcePicker

    picker = SourcePicker("demo", cameras=[])
    qtbot.addWidget(picker)
    assert picker.selected_spec() == "demo" and not picker.camera.isEnabled()
    picker.folder.setChecked(True)
    picker.folder_path.setText(str(tmp_path))
    picker.accept()
    assert picker.spec == str(tmp_path)
    with_camera = SourcePicker("camera:2", cameras=[0, 2])
    qtbot.addWidget(with_camera)
    assert with_camera.selected_spec() == "camera:2"


def test_void_qt_calls_cannot_use_up_none():
    """PySide6 6.12.0 on Python 3.11 drops a reference to None per void call; the UI guards against it."""
    import station.ui  # noqa: F401 - applies the guard
    from PySide6.QtCore import QObject

    from station.ui._none_guard import none_refcount_leaks

    probe = QObject()
    for _ in range(20000):  # enough to abort an unguarded interpreter
        probe.setObjectName("x")
    assert sys.getrefcount(None) > 1 << 59 or not none_refcount_leaks()


def test_garbage_is_collected_in_the_gui_thread_while_a_window_is_open(qtbot, synthetic_data, synthetic_recipe):
    """Python's collector freeing a PySide object in a worker thread crashed the process (shiboken's
    deferred deletion); while a station window is open only the GUI thread collects."""
    import gc

    from station.ui.app import create_window
    from station.ui.collector import GuiThreadCollector

    assert gc.isenabled()
    window = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), save_settings=False)
    qtbot.addWidget(window)
    other = GuiThreadCollector()
    other.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0  # what existed at the start is left alone
        window.close()
        assert not gc.isenabled()  # the other collector still runs
    finally:
        other.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # the timer's collection: a cycle left behind is freed at the next tick, by generation
    collector = GuiThreadCollector(interval_ms=10)
    collector.start()
    try:
        import weakref

        class Node:
            pass

        gc.collect()  # generation counts start from zero
        cycle = Node()
        cycle.me = cycle
        ref = weakref.ref(cycle)
        del cycle
        keep = [[] for _ in range(gc.get_threshold()[0] + 10)]  # tracked objects: generation 0's count grows
        assert len(keep) > gc.get_threshold()[0]
        assert ref() is not None  # automatic collection is off
        qtbot.waitUntil(lambda: ref() is None, timeout=15000)
    finally:
        collector.stop()
    assert gc.isenabled()


@pytest.mark.parametrize("pixel_map, unit", [(None, "pin col 8, row 6"), (np.zeros((8, 8), np.float32),
                                                                          "cell col 8, row 6")])
def test_an_ng_names_a_pin_on_a_pin_product_and_a_cell_on_a_free_form_one(qtbot, pixel_map, unit):
    from station.core.inspector import InspectionResult
    from station.core.live import LiveResult
    from station.core.sources import Frame, make_source
    from station.core.verdict import Verdict
    from station.ui.live_service import LiveService
    from station.ui.verdict_panel import VerdictPanel

    service = LiveService(make_source("demo"), None)  # never started: the panel only reads it
    panel = VerdictPanel(service)
    qtbot.addWidget(panel)
    result = InspectionResult(Verdict.NG, "defect", 9.0, np.zeros((8, 10)), (7, 5), {}, "sha256:x",
                              pixel_map=pixel_map)
    panel.show_result(LiveResult(1, Frame(None, 0, 0.0, "a.png"), result, None, None, {}, 0.0))
    assert unit in panel.detail_label.text()
    service.shutdown()


def _a_slow_slot_for_the_stall_test():
    deadline = time.perf_counter() + 0.4
    while time.perf_counter() < deadline:  # pure Python: the GIL changes hands, but the event loop is stuck
        pass


def test_the_bench_names_where_the_gui_thread_spent_its_longest_stall(qtbot):
    """A stall that happens once in ten minutes can only be fixed if the bench says what the GUI thread ran:
    the sampler thread while it is late, and faulthandler's watchdog at a stall over 150 ms."""
    from PySide6.QtCore import QTimer

    from station.ui.bench import StallMeter

    meter = StallMeter()
    meter.start()
    try:
        QTimer.singleShot(50, _a_slow_slot_for_the_stall_test)
        qtbot.wait(800)
    finally:
        meter.stop()
    longest = meter.longest
    assert longest["ms"] > 200 and 0 < longest["at_s"] < 1
    assert longest["stack_samples"] and "_a_slow_slot_for_the_stall_test" in longest["stack_samples"][0][0]
    stacks = meter.long_stall_stacks()
    assert stacks and "_a_slow_slot_for_the_stall_test" in stacks[0][0]


def test_the_bench_times_garbage_collections_by_generation_and_thread():
    """A full collection of a large heap is a stall the event loop cannot see the cause of: the bench times
    every collection, whichever thread makes it."""
    import gc
    import threading

    from station.ui.bench import GcPauses

    pauses = GcPauses()
    was_enabled = gc.isenabled()
    # what earlier tests' windows left in cycles is freed here, in the GUI thread: freed by the worker's full
    # collection, a PySide wrapper's deletion crashed the CI run (segmentation fault, exit 139)
    gc.collect()
    gc.disable()  # no automatic collection while the junk is made: the worker's is the only full one
    pauses.start()
    try:
        junk = [[i] for i in range(300_000)]  # tracked containers: a full collection has to walk them
        gc.collect(0)
        worker = threading.Thread(target=gc.collect, args=(2,), name="a-worker")
        worker.start()
        worker.join()
    finally:
        report = pauses.stop()
        if was_enabled:
            gc.enable()
    del junk
    assert pauses not in gc.callbacks and report["collections"] >= 2
    full = report["longest_by_generation"]["2"]
    assert full["thread"] == "a-worker" and full["ms"] > report["longest_by_generation"]["0"]["ms"]
    assert report["over_10ms"] >= (full["ms"] > 10)


def test_gui_bench_refuses_to_measure_a_line_whose_recipe_did_not_load(synthetic_data, synthetic_recipe, tmp_path):
    """A refused recipe left the window with no engine, and the bench printed 50 fps of nothing, exit 0."""
    foreign = tmp_path / "foreign"
    shutil.copytree(synthetic_recipe, foreign)
    (foreign / "recipe.seal").unlink()  # as if made on another station
    cmd = [sys.executable, "-m", "station", "bench", "--gui", "--seconds", "1", "--source",
           f"demo:{synthetic_data / 'test'}", "--recipe", str(foreign)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode != 0 and not out.stdout.strip()
    err = [line for line in out.stderr.splitlines() if line.startswith("station:")]
    assert len(err) == 1 and "refused" in err[0] and "seal" in err[0]



def test_a_long_folder_path_does_not_make_the_window_wider_than_a_small_screen(qtbot, make_window, synthetic_data,
                                                                               tmp_path):
    """Under Xvfb at 1280 x 800 the window opened 1394 px wide: the status bar's labels asked for their whole
    text (a folder's path, the latency figures), and the counters' right edge was off the screen."""
    deep = tmp_path / ("a_folder_with_a_long_name_" * 6) / "line_3_camera_2_station_images"
    deep.mkdir(parents=True)
    for p in sorted((synthetic_data / "test" / "good").glob("*.png"))[:2]:
        (deep / p.name).write_bytes(p.read_bytes())
    window = make_window(str(deep), start=False)
    qtbot.waitUntil(lambda: str(deep.name) in window.status.source_label.toolTip(), timeout=5000)
    assert window.minimumSizeHint().width() <= 1024
    assert window.status.source_label.toolTip().startswith(window.service.source.description)
