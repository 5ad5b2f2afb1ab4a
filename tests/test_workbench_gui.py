"""The engineer's workbench in the station window, offscreen: PIN and engineer mode, capture from the demo
line, refit, threshold from a target escape rate, publish, the line on the new version, roll back, and
the failures an engineer meets (wrong PIN, read-only disk, recipe store gone)."""

from __future__ import annotations

import errno
import gc
import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QCoreApplication, QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from station.core.dataset import load_dataset  # noqa: E402
from station.core.evaluate import evaluate  # noqa: E402
from station.core.resources import bundled_recipe  # noqa: E402
from station.core.settings import StationSettings  # noqa: E402
from station.core.workbench.tuner import with_thresholds  # noqa: E402
from station.ui.app import create_window  # noqa: E402
from station.ui.workbench import PinDialog, install_workbench  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

PIN = "2468"


@pytest.fixture(scope="module")
def demo_test():
    from conftest import DEMO

    return DEMO / "test"


@pytest.fixture(scope="module")
def validation(demo_test):
    return load_dataset(demo_test, "test").sample_per_class(10, seed=3)


@pytest.fixture
def station(qtbot, tmp_path, monkeypatch, demo_test):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    window = create_window(f"demo:{demo_test}", str(bundled_recipe()), StationSettings(demo_fps=40),
                           save_settings=False, start=True)
    qtbot.addWidget(window)
    menu = install_workbench(window, root=tmp_path / "workbench", validation=demo_test, pin_cost=2**10)
    window.show()
    held = [window, menu]
    yield held
    window.close()
    held.clear()
    del window, menu
    for _ in range(3):  # pyqtgraph's context menus have no parent widget: they go with their Python objects
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()
    gc.collect()
    assert [t.name for t in threading.enumerate() if t.name.startswith("station-")] == []


def unlock(qtbot, menu, pin: str = PIN) -> None:
    dialog = PinDialog(menu.workbench, menu.window)
    qtbot.addWidget(dialog)
    dialog.pin.setText(pin)
    dialog.repeat.setText(pin)
    assert dialog.submit(), dialog.error.text()


def test_first_use_sets_the_pin_wrong_pin_is_refused_and_idle_time_locks(qtbot, station):
    window, menu = station
    wb = menu.workbench
    assert not wb.is_engineer and not menu.capture_group.actions()[0].isEnabled()  # operator by default
    assert not menu.capture.capture_current("good")  # an operator cannot capture
    unlock(qtbot, menu)  # first use: sets the PIN, then unlocks
    assert wb.is_engineer and menu.capture_group.actions()[0].isEnabled()
    stored = json.loads((wb.root / "engineer_pin.json").read_text())
    # the PIN is kept only as a salted hash: no field holds it (its digits may well occur inside the hex hash)
    assert "salt" in stored and all(v != PIN and v != int(PIN) for v in stored.values())
    assert not any(PIN in v for k, v in stored.items() if isinstance(v, str) and k not in ("salt", "hash", "seal"))
    wb.lock()
    dialog = PinDialog(wb, menu.window)
    qtbot.addWidget(dialog)
    dialog.pin.setText("1111")
    assert not dialog.submit()
    assert "wrong PIN" in dialog.error.text() and not wb.is_engineer
    # idle lock: engineer mode ends after the idle time without activity
    now = [1000.0]
    wb.session.clock = lambda: now[0]
    dialog.pin.setText(PIN)
    assert dialog.submit() and wb.is_engineer
    now[0] += wb.session.idle_seconds + 1
    with qtbot.waitSignal(wb.role_changed, timeout=15000):
        pass
    assert not wb.is_engineer and not menu.capture_group.actions()[0].isEnabled()


def test_deleted_pin_file_locks_and_a_broken_audit_log_is_shown_in_red(qtbot, station):
    """Issue 19, finding 1: a PIN file deleted after setup never opens engineer mode; an audit line deleted
    is shown in red in the versions panel until an engineer acknowledges it (recorded)."""
    from station.core.workbench.roles import reset_pin

    window, menu = station
    wb, ui = menu.workbench, menu.window
    unlock(qtbot, menu)
    wb.lock()
    (wb.root / "engineer_pin.json").unlink()
    dialog = PinDialog(wb, menu.window)
    qtbot.addWidget(dialog)
    assert dialog.locked.startswith("PIN file missing") and not dialog.setting_first_pin
    assert not dialog.pin.isEnabled() and "PIN file missing" in dialog.intro.text()
    assert not dialog.submit() and not wb.is_engineer and not (wb.root / "engineer_pin.json").exists()
    ui.mode_button._refresh()
    assert "locked" in ui.mode_button.text() and "station pin --reset" in ui.mode_button.toolTip()
    assert [e["action"] for e in wb.audit.entries()][-2:] == ["unlock_refused", "unlock_refused"]

    lines = wb.audit.path.read_text().splitlines(keepends=True)
    wb.audit.path.write_text("".join(lines[:1] + lines[2:]))  # the unlock is erased from the record
    wb.check_audit()
    ui.versions.refresh()
    assert not ui.versions.audit_alarm.isHidden() and "removed" in ui.versions.audit_alarm.text()
    assert any("Audit log" in p for p in wb.trust_problems()) and wb.audit.entries()[-1]["action"] == "audit_broken"

    reset_pin(wb.pins, PIN, reason="test")  # the key holder's way back
    unlock(qtbot, menu)
    assert ui.versions.acknowledge_audit(), ui.versions.status.text()
    assert ui.versions.audit_alarm.isHidden() and wb.audit.entries()[-1]["action"] == "audit_acknowledged"


def test_engineer_loop_capture_refit_tune_publish_and_roll_back(qtbot, station, demo_test, validation):
    window, menu = station
    wb, capture, ui = menu.workbench, menu.capture, menu.window
    unlock(qtbot, menu)
    original_hash = window.service.recipe.content_hash
    cells = {item["file"]: item.get("cell") for item in json.loads((demo_test / "manifest.json").read_text())["images"]}

    # capture 30 labelled frames from the demo line (the frame name is class/file; the manifest has its cell)
    qtbot.waitUntil(lambda: capture.current is not None, timeout=5000)
    seen = set()
    for _ in range(30):
        qtbot.waitUntil(lambda: capture.current.frame.name not in seen and capture.current.result is not None,
                        timeout=5000)
        item = capture.current
        seen.add(item.frame.name)
        label = item.frame.name.split("/")[0]
        cell = cells.get(item.frame.name)
        capture.mark_cell(tuple(cell) if cell else None)
        assert capture.capture_current(label)
    capture.wait_idle()
    qtbot.waitUntil(lambda: capture.backlog == 0, timeout=5000)
    counts = wb.dataset.counts()
    assert sum(counts.values()) == 30 and counts.get("good", 0) >= 3, counts
    with_cells = [i for i in wb.dataset.items() if i.label != "good"]
    assert with_cells and all(i.cell is not None for i in with_cells)
    assert ui.browser.thumbs.count() == 30 and ui.browser.counts.item(0, 1).text() == "30"

    # a click on the live view marks the cell under it (through the frame's registration)
    reg = capture.current.result.registered
    w, h = window.service.recipe.grid.size
    col_w, row_h = w / window.service.recipe.grid.cols, h / window.service.recipe.grid.rows
    x, y = reg.to_frame(np.array([[1.5 * col_w, 4.5 * row_h]]))[0]
    assert capture.cell_at((x, y)) == (1, 4)

    # refit RT on the captured frames in a worker; the line keeps running meanwhile
    ui.training.include_original.setChecked(False)
    ui.training.engine.setCurrentIndex(ui.training.engine.findData("rt"))
    before = window.service.pipeline.tally.total
    with qtbot.waitSignal(ui.training.trained, timeout=30000):
        assert ui.training.start()
    assert window.service.pipeline.tally.total > before
    candidate = wb.candidate
    assert candidate is not None and candidate.doc.provenance["n_train"] == counts

    # score a validation set, place the review threshold from a target escape rate, publish
    with qtbot.waitSignal(ui.tuner.scored, timeout=30000):
        assert ui.tuner.score(validation)
    assert ui.tuner.scored_recipe is candidate
    ui.tuner.target.setValue(20.0)
    ui.tuner.on_upper.setChecked(True)
    placed = ui.tuner.place_from_target()
    assert placed["met"] and placed["escape_rate_upper"] <= 0.20
    assert ui.tuner.current_rates["escape_rate_upper"] == pytest.approx(placed["escape_rate_upper"])
    assert ui.tuner.figures["escape_upper"].text() == f"{100 * placed['escape_rate_upper']:.2f} %"
    assert ui.tuner.publish(), ui.tuner.status.text()
    versions = wb.version_list()
    assert [v.name for v in versions] == ["v0001", "v0002"] and versions[1].active
    assert versions[0].content_hash == original_hash  # the recipe the line ran, kept for the roll back
    new_hash = versions[1].content_hash
    assert versions[1].thresholds[0] == pytest.approx(placed["review"])
    assert versions[1].metrics["escape_rate_upper"] == pytest.approx(placed["escape_rate_upper"])

    # the live verdicts now come from the new version
    qtbot.waitUntil(lambda: capture.current.result.recipe_hash == new_hash, timeout=5000)
    assert window.service.recipe.content_hash == new_hash

    # roll back restores the old one, on the line too
    ui.versions.refresh()
    assert ui.versions.rollback(), ui.versions.status.text()
    assert window.service.recipe.content_hash == original_hash
    qtbot.waitUntil(lambda: capture.current.result.recipe_hash == original_hash, timeout=5000)
    actions = [e["action"] for e in wb.audit.entries()]
    assert actions.count("save_version") == 2 and "activate_version" in actions and actions[-1] == "rollback"
    changes = [e for e in wb.audit.entries() if e["action"] in ("save_version", "activate_version", "rollback")]
    assert changes and all(e["user"] == "engineer" and e["role"] == "engineer" for e in changes)
    # the way in is on record too: the first PIN, the unlock and the captures
    assert {"pin_set", "unlock", "capture"} <= set(actions) and wb.audit.verify().ok

    # the recipe store disappears: a clear message, nothing changed, the line keeps its recipe
    shutil.rmtree(wb.store_root)
    assert not ui.versions.rollback()
    assert "is gone" in ui.versions.status.text()
    assert window.service.recipe.content_hash == original_hash


def test_tuner_rates_equal_station_eval(qtbot, station, validation):
    window, menu = station
    tuner = menu.window.tuner
    validation = validation.sample_per_class(6, seed=4)
    with qtbot.waitSignal(tuner.scored, timeout=30000):
        assert tuner.score(validation)
    recipe = window.service.recipe
    review0, ng0 = recipe.thresholds
    for review, ng in ((review0, ng0), (0.5 * review0, 1.5 * review0), (2 * review0, 3 * ng0)):
        rates = tuner.set_thresholds(review, ng)
        expected = evaluate(with_thresholds(recipe, review, ng), validation)
        for key in ("escape_rate", "false_reject_rate", "review_rate"):
            assert rates[key] == pytest.approx(expected[key]), (key, review, ng)
    # dragging a line recomputes (throttled) the same figures
    tuner.review_line.setValue(tuner._x(review0))
    tuner.review_line.sigPositionChangeFinished.emit(tuner.review_line)
    assert tuner.current_rates["review"] == pytest.approx(review0, rel=1e-6)


def test_capture_into_read_only_disk_shows_why_and_loses_nothing(qtbot, station, monkeypatch):
    window, menu = station
    unlock(qtbot, menu)
    capture = menu.capture
    qtbot.waitUntil(lambda: capture.current is not None, timeout=5000)

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    import station.core.workbench.capture as capture_module

    monkeypatch.setattr(capture_module, "write_bytes_atomic", read_only)
    with qtbot.waitSignal(capture.failed, timeout=5000) as failed:
        assert capture.capture_current("good")
    assert "read-only" in failed.args[0] and "kept for a retry" in failed.args[0]
    assert "read-only" in menu.window.message.text()
    assert len(menu.workbench.dataset.pending) == 1 and menu.workbench.dataset.counts().get("good", 0) == 0
    monkeypatch.undo()
    assert menu.window.browser.retry_pending() == 1
    assert menu.workbench.dataset.pending == [] and menu.workbench.dataset.counts()["good"] == 1
    # delete to the trash and restore it
    browser = menu.window.browser
    browser.thumbs.selectAll()
    assert browser.delete_selected() == 1 and menu.workbench.dataset.counts()["good"] == 0
    browser.trash.selectAll()
    assert browser.restore_selected() == 1 and menu.workbench.dataset.counts()["good"] == 1


def test_hotkey_and_auto_capture_fill_the_dataset_and_auto_frames_are_not_trained_on(qtbot, station):
    window, menu = station
    unlock(qtbot, menu)
    wb = menu.workbench
    qtbot.waitUntil(lambda: menu.capture.current is not None, timeout=5000)
    good = next(a for a in menu.capture_group.actions() if a.data() == "good")
    assert good.shortcut().toString() == "Ctrl+0"
    with qtbot.waitSignal(menu.capture.captured, timeout=5000):
        good.trigger()
    menu.auto_action.trigger()  # on
    assert menu.capture.auto_capture and menu.window.auto_box.isChecked()
    qtbot.waitUntil(lambda: wb.dataset.counts().get("auto_ng", 0) >= 2, timeout=10000)
    menu.auto_action.trigger()  # off
    assert not menu.capture.auto_capture
    menu.capture.wait_idle()
    assert {s.label for s in wb.training_data().samples} == {"good"}


def test_shadow_mode_lists_the_verdicts_a_candidate_would_change(qtbot, station):
    window, menu = station
    active = window.service.recipe
    # a candidate that calls almost everything NG: most live verdicts change
    menu.workbench.set_candidate(with_thresholds(active, 1e-6, 2e-6, note="test"))
    panel = menu.window.shadow
    assert panel.start(), panel.summary.text()
    qtbot.waitUntil(lambda: panel.table.rowCount() >= 3, timeout=10000)
    assert panel.table.item(0, 2).text() == "NG"
    summary = panel.feeder.run.summary()
    assert summary["frames"] >= summary["verdict_changed"] >= 3
    assert window.service.recipe is active  # the line still acts on the active recipe
    panel.stop()
    assert "verdicts would change" in panel.summary.text()


@pytest.mark.slow
def test_vit_training_runs_in_a_worker_with_curves_and_can_be_cancelled(qtbot, station, validation, tmp_path):
    pytest.importorskip("torch")
    window, menu = station
    unlock(qtbot, menu)
    wb, view = menu.workbench, menu.window.training
    for sample in validation.samples[::3]:  # a small labelled set in the capture folder
        from station.core.imageio import read_image

        wb.dataset.capture(read_image(sample.path), sample.label, sample.cell)
    view.include_original.setChecked(False)
    view.engine.setCurrentIndex(view.engine.findData("vit"))
    view.epochs.setValue(200)
    assert view.start()
    # the epoch's curve point and its progress message are separate queued signals: wait for both
    qtbot.waitUntil(lambda: len(view.history) >= 1 and view.bar.value() > 0, timeout=60000)
    assert view.loss_curve.getData()[0] is not None and len(view.loss_curve.getData()[0]) >= 1
    assert "epoch" in view.bar.format()
    view.cancel()
    qtbot.waitUntil(lambda: view.job is None, timeout=60000)
    assert "cancelled" in view.result.text() and wb.candidate is None


def test_the_tuners_default_validation_set_is_the_training_sets_test_split(tmp_path):
    """An MVTec-family set's provenance names its root, whose test split the tuner reads (before, it looked for a
    `test` folder beside the root); a `train` folder's is the `test` folder beside it."""
    from types import SimpleNamespace

    from station.ui.workbench.threshold_tuner import ThresholdTuner

    def default(original):
        return ThresholdTuner._default_validation(SimpleNamespace(
            workbench=SimpleNamespace(original_data_path=lambda: original)))

    mvtec = tmp_path / "can"
    for rel in ("train/good", "test_public/good"):
        (mvtec / rel).mkdir(parents=True)
    assert default(mvtec) == mvtec
    folders = tmp_path / "demo"
    for rel in ("train/good", "test/good"):
        (folders / rel).mkdir(parents=True)
    assert default(folders / "train") == folders / "test"
    assert default(None) is None
