"""`station doctor` and the first-run check of Qt's xcb libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli import main
from station.ui import qt_platform

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_reports_every_section(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_LOG_DIR", str(tmp_path / "logs"))
    assert main(["doctor", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    sections = {r["section"] for r in rows}
    assert {"station", "versions", "gpu", "cameras", "folders", "database", "disk", "display"} <= sections
    found = {(r["section"], r["what"]): r["found"] for r in rows}
    assert found[("station", "version")] == __import__("station").__version__
    assert "GiB" in found[("disk", "free")]
    assert "check failed" not in {r["what"] for r in rows}


def test_doctor_hides_the_database_password(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_RESULTS_DB", "postgresql+psycopg://line:s3cret@127.0.0.1:9/results")
    assert main(["doctor", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    database = {r["what"]: r["found"] for r in rows if r["section"] == "database"}
    assert "s3cret" not in json.dumps(rows) and "***" in database["url"]
    assert database["state"].startswith("NOT reachable")


def test_ldd_output_is_read_into_missing_libraries_and_debian_packages():
    out = ("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibxcb-icccm.so.4 => not found\n"
           "\tlibQt6Gui.so.6 => /opt/Qt/lib/libQt6Gui.so.6 (0x7f)\n\tlibxkbcommon-x11.so.0 => not found\n"
           "\tlibxcb-icccm.so.4 => not found\n")
    assert qt_platform.missing_libraries(out) == ["libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    assert qt_platform.debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert qt_platform.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert qt_platform.debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"


@pytest.mark.parametrize("env, xcb", [({"DISPLAY": ":0"}, True), ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "w"}, False),
                                      ({"QT_QPA_PLATFORM": "xcb"}, True), ({"QT_QPA_PLATFORM": "offscreen"}, False),
                                      ({}, False)])
def test_which_platform_qt_will_take(env, xcb, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert qt_platform.platform_is_xcb(env) is xcb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux only")
def test_a_desktop_without_the_xcb_libraries_gets_one_line_not_an_abort(tmp_path):
    """The real plugin and the real loader: on a PC that lacks some of its libraries (this one lacked
    libxcb-icccm4 and libxcb-keysyms1), `station` with a display names them in one line and exits 2."""
    missing = qt_platform.missing_libraries(subprocess.run(["ldd", str(qt_platform.xcb_plugin())],
                                                           capture_output=True, text=True).stdout)
    if not missing:
        pytest.skip("this PC has every library the xcb plugin needs")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":97", PYTHONPATH=str(ROOT), STATION_CONFIG_DIR=str(tmp_path / "c"),
               STATION_DATA_DIR=str(tmp_path / "d"))
    run = subprocess.run([sys.executable, "-m", "station"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "window cannot open" in lines[0]
    assert all(name in lines[0] for name in missing)
    assert qt_platform.debian_package(missing[0]) in lines[0]


@pytest.mark.gui
@pytest.mark.qt_log_ignore("does not support propagateSizeHints")
def test_help_menu_shows_the_doctor_and_the_log_file_in_about(qtbot, synthetic_recipe, tmp_path, monkeypatch):
    from station.core import logs
    from station.core.settings import StationSettings
    from station.ui.app import create_window
    from station.ui.doctor_dialog import DoctorDialog

    monkeypatch.setenv("STATION_LOG_DIR", str(tmp_path / "logs"))
    logs.close_logging()
    logs.setup_logging()
    try:
        window = create_window("demo", str(synthetic_recipe), StationSettings(), save_settings=False, start=False)
        qtbot.addWidget(window)
        help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
        assert [a.text() for a in help_menu.actions()] == ["Station &doctor (for a support call)\u2026", "&About\u2026"]
        assert str(tmp_path / "logs" / "station.log") in window.about_text()
        dialog = DoctorDialog(window)
        qtbot.waitUntil(lambda: not dialog.job.running, timeout=120000)
        text = dialog.text.toPlainText()
        assert text.startswith("[station]") and "[disk]" in text and str(tmp_path / "logs") in text
        dialog.close()
        window.close()
    finally:
        logs.close_logging()
        logs.uninstall_thread_hook()


def test_first_start_takes_the_first_camera_and_later_starts_keep_the_settings():
    from station.ui.app import first_run_source

    assert first_run_source(False, cameras=[2, 3]) == "camera:2"
    assert first_run_source(False, cameras=[]) is None  # the demo line, with its banner
    assert first_run_source(True, cameras=[0]) is None


@pytest.mark.gui
@pytest.mark.qt_log_ignore("does not support propagateSizeHints")
def test_the_demo_line_by_default_says_how_to_choose_a_camera(qtbot, synthetic_recipe, tmp_path, monkeypatch):
    from station.ui import app

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_RECIPE", str(synthetic_recipe))
    monkeypatch.setattr("station.core.camera_probe.probe_cameras", lambda: [])
    window = app.open_station()
    qtbot.addWidget(window)
    assert app.DEMO_BANNER in window.banner.text()
    window.close()
    chosen = app.open_station(source="demo")  # chosen on purpose: no banner about it
    qtbot.addWidget(chosen)
    assert app.DEMO_BANNER not in chosen.banner.text()
    chosen.close()
