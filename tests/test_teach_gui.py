"""The Teach dialog, offscreen: the proposal on drawn good images, grid and region edited with the spin boxes
and the mouse, the check on good images, the save (engineer only, audited) that `Setup.load` reads back,
the refusals and bad input an engineer meets, and the button and the Engineer-menu item that open it."""

from __future__ import annotations

import gc
import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, QPointF, Qt, Signal  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from station.core.pattern import Roi  # noqa: E402
from station.core.teach import Setup, grid_lines  # noqa: E402
from station.ui.workbench.teach_dialog import RegionEditor, TeachDialog  # noqa: E402
from station.ui.workbench.workbench import Workbench  # noqa: E402
from synthetic import draw_part  # noqa: E402

# the offscreen platform can neither size windows to their hints nor raise them, and says so
pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints",
                                                         "does not support raise")]

PIN = "2468"
WAIT_MS = 30000


@pytest.fixture(scope="module")
def goods():
    rng = np.random.default_rng(5)
    return [draw_part(rng) for _ in range(10)]


@pytest.fixture
def workbench(tmp_path):
    # the dialog needs the workbench's role, PIN and audit log, not a running line
    wb = Workbench(SimpleNamespace(recipe=None), root=tmp_path / "workbench", pin_cost=2**10)
    yield wb
    wb.shutdown()
    wb.deleteLater()


def unlock(wb: Workbench) -> None:
    wb.session.set_pin(PIN)
    wb.unlock(PIN)


def open_dialog(qtbot, workbench, images, **kwargs) -> TeachDialog:
    dialog = TeachDialog(workbench, images, **kwargs)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.proposed, timeout=WAIT_MS):
        dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def drag(qtbot, widget, start: QPointF, end: QPointF) -> QPoint:
    """Press at `start`, move in steps to `end`, release there (view px); returns the release point."""
    a, b = start.toPoint(), end.toPoint()
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=a)
    for t in (0.25, 0.5, 0.75):
        qtbot.mouseMove(widget, QPoint(round(a.x() + t * (b.x() - a.x())), round(a.y() + t * (b.y() - a.y()))))
    qtbot.mouseMove(widget, b)
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=b)
    return b


def test_proposal_edited_with_the_mouse_and_saved_by_the_engineer(qtbot, workbench, goods, tmp_path):
    out = tmp_path / "setup"
    dialog = open_dialog(qtbot, workbench, goods, grid=(3, 9), out_dir=out)
    editor = dialog.editor
    roi = dialog.roi
    assert (dialog.cols.value(), dialog.rows.value()) == (3, 9) and editor.grid == (3, 9)
    assert abs(roi.cx - 128) < 12 and abs(roi.cy - 128) < 12 and 60 < roi.w < 90 and 190 < roi.h < 240, roi
    assert dialog.width_px.value() == pytest.approx(roi.w, abs=0.05)

    # the grid follows the spin boxes
    dialog.cols.setValue(4)
    dialog.rows.setValue(8)
    assert editor.grid == (4, 8)
    assert "4 x 8 cells" in dialog.grid_info.text()

    # the bottom-right corner follows the mouse; the top-left one stays
    tl = roi.corners()[0]
    end = drag(qtbot, editor, editor.to_view(roi.corners()[2]), editor.to_view(roi.corners()[2]) + QPointF(25, 15))
    moved = dialog.roi
    assert np.allclose(moved.corners()[0], tl, atol=1e-6)
    assert np.allclose(moved.corners()[2], editor.to_image(QPointF(end)), atol=1e-6)
    assert moved.w > roi.w + 5 and moved.h > roi.h + 3 and moved.angle == roi.angle
    assert dialog.width_px.value() == pytest.approx(moved.w, abs=0.05)

    # dragging inside (in a cell, off the grid lines) moves the region by the mouse's travel
    start = editor.to_view(moved.corners()[0] + (moved.corners()[2] - moved.corners()[0]) * 1.5 / 8)
    end = drag(qtbot, editor, start, start + QPointF(-12, 6))
    shifted = dialog.roi
    travel = editor.to_image(QPointF(end)) - editor.to_image(QPointF(start.toPoint()))
    assert (shifted.cx - moved.cx, shifted.cy - moved.cy) == pytest.approx(tuple(travel), abs=1e-6)
    assert (shifted.w, shifted.h) == (moved.w, moved.h)

    # the round handle turns the region about its centre (counter-clockwise as shown: a positive angle)
    centre = editor.to_view((shifted.cx, shifted.cy))
    handle = editor.to_view(editor.rotation_handle())
    v = handle - centre
    radius, theta = math.hypot(v.x(), v.y()), math.atan2(-v.y(), v.x()) + math.radians(8)
    drag(qtbot, editor, handle, centre + QPointF(radius * math.cos(theta), -radius * math.sin(theta)))
    turned = dialog.roi
    assert turned.angle == pytest.approx(shifted.angle + 8, abs=0.6)
    assert (turned.cx, turned.cy, turned.w, turned.h) == (shifted.cx, shifted.cy, shifted.w, shifted.h)
    assert dialog.angle.value() == pytest.approx(turned.angle, abs=0.05)

    # dragging the first inner row line sets the row pitch; the top side stays
    dialog.angle.setValue(0.0)
    dialog.lean.setValue(0.0)
    level = dialog.roi
    assert (level.angle, level.shear) == (0.0, 0.0)
    a, b = editor.to_view(level.corners()[0]), editor.to_view(level.corners()[1])
    pitch = level.h / 8
    line = QPointF(a.x() + (b.x() - a.x()) / 8, a.y() + pitch * editor.view_scale)  # in column 1, off its borders
    end = drag(qtbot, editor, line, line + QPointF(0, 6))
    pitched = dialog.roi
    assert pitched.corners()[0] == pytest.approx(level.corners()[0], abs=1e-6)
    expected = 8 * (editor.to_image(QPointF(end))[1] - level.corners()[0][1])
    assert pitched.h == pytest.approx(expected, abs=1e-6) and pitched.w == level.w

    # with Shift a corner moves alone: the region leans to the four corners (a slanted camera's parallelogram)
    bl = editor.to_view(pitched.corners()[3])
    qtbot.mousePress(editor, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, bl.toPoint())
    qtbot.mouseMove(editor, (bl + QPointF(12, 0)).toPoint())
    qtbot.mouseRelease(editor, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                       (bl + QPointF(12, 0)).toPoint())
    leaning = dialog.roi
    assert leaning.shear > 0.01 and dialog.lean.value() == pytest.approx(math.degrees(math.atan(leaning.shear)),
                                                                         abs=0.05)
    corners = pitched.corners()
    corners[3] = editor.to_image(QPointF((bl + QPointF(12, 0)).toPoint()))
    assert (leaning.cx, leaning.cy) == pytest.approx(tuple(corners.mean(axis=0)), abs=1e-6)  # the fit's centre
    dialog.lean.setValue(0.0)
    dialog.width_px.setValue(pitched.w)  # back to the rectangle saved below
    dialog.cx.setValue(pitched.cx)
    pitched = dialog.roi
    assert pitched.shear == 0.0

    # the engineer saves: the setup folder holds the edited grid and region, and the audit log says so
    unlock(workbench)
    assert dialog.save_button.isEnabled()
    with qtbot.waitSignal(dialog.saved, timeout=WAIT_MS) as saved:
        assert dialog.save()
    assert saved.args == [str(out)]
    setup = Setup.load(out)
    assert (setup.grid.cols, setup.grid.rows) == (4, 8)
    assert setup.roi.to_list() == pytest.approx(pitched.to_list(), abs=1e-3)
    assert np.array_equal(setup.golden, dialog.golden)
    assert (out / "preview.png").is_file() and "station train --setup" in dialog.message.text()
    entry = workbench.audit.entries()[-1]
    assert entry["action"] == "teach_setup" and str(out) in entry["what"] and entry["user"] == "engineer"
    assert entry["new"]["grid"]["cols"] == 4 and entry["new"]["roi"] == pytest.approx(pitched.to_list(), abs=1e-3)
    assert entry["old"] is None


def test_drags_of_a_turned_and_leaning_region_follow_the_pointer(qtbot):
    editor = RegionEditor()
    qtbot.addWidget(editor)
    editor.set_grid(3, 4)
    start = Roi(100.0, 90.0, 60.0, 120.0, 10.0, 0.2)
    point = np.array([140.0, 170.0])

    def through(line, p) -> float:  # distance of p from the infinite line
        a, b = line
        d = (b - a) / np.linalg.norm(b - a)
        v = p - a
        return abs(float(d[0] * v[1] - d[1] * v[0]))

    turned = editor.dragged(start, ("corner", 2), np.zeros(2), point)
    assert turned.corners()[2] == pytest.approx(point) and turned.corners()[0] == pytest.approx(start.corners()[0])
    assert (turned.angle, turned.shear) == (start.angle, start.shear)
    for index in (1, 2, 3):  # a column line through the pointer; the left side stays
        moved = editor.dragged(start, ("col", index), np.zeros(2), point)
        lines = grid_lines(moved, 3, 4)
        assert through(lines[index], point) < 1e-6 and through(lines[0], start.corners()[0]) < 1e-6
    for index, pointer in ((0, np.array([110.0, 20.0])), (2, point), (4, point)):  # the top side, a line, the bottom
        moved = editor.dragged(start, ("row", index), np.zeros(2), pointer)
        assert through(grid_lines(moved, 3, 4)[3 + 1 + index], pointer) < 1e-6
        fixed = start.corners()[3] if index == 0 else start.corners()[0]
        assert min(np.linalg.norm(moved.corners() - fixed, axis=1)) < 1e-6
    assert editor.dragged(start, ("corner", 0), np.zeros(2), start.corners()[2]).w == 8.0  # never below 8 px


def test_an_operator_cannot_save_and_nothing_is_written(qtbot, workbench, goods, tmp_path):
    out = tmp_path / "refused"
    dialog = open_dialog(qtbot, workbench, goods, grid=(3, 9), out_dir=out)
    assert not workbench.is_engineer and not dialog.save_button.isEnabled()
    with qtbot.waitSignal(dialog.failed, timeout=15000) as failed:
        assert not dialog.save()
    assert "engineer mode" in failed.args[0] and "engineer mode" in dialog.message.text()
    assert not out.exists() and workbench.audit.entries() == []


def test_check_draws_the_grid_where_registration_puts_it_and_square_cells(qtbot, workbench, goods, tmp_path):
    dialog = open_dialog(qtbot, workbench, goods, grid=(3, 9), out_dir=tmp_path / "cells")
    with qtbot.waitSignal(dialog.checked, timeout=WAIT_MS):
        assert dialog.check()
    assert len(dialog.check_tiles) == 6 and all(t.match is not None and t.match > 0.8 for t in dialog.check_tiles)
    assert all(not label.pixmap().isNull() for label in dialog.tiles)
    assert "found the part in 6 of 6" in dialog.strip_status.text()
    assert all(t.image is not img for t in dialog.check_tiles for img in goods)  # thumbnails, drawn on copies
    dialog.rows.setValue(8)
    assert "changed since this check" in dialog.strip_status.text()

    # free-form: square cells of a chosen size over the region
    dialog.by_size.setChecked(True)
    dialog.cell.setValue(24)
    roi = dialog.roi
    assert dialog.editor.grid == (round(roi.w / 24), round(roi.h / 24))
    assert not dialog.cols.isEnabled()
    grid = dialog.current_grid()
    assert (grid.cols, grid.rows, grid.cell_px) == (round(roi.w / 24), round(roi.h / 24), 24)
    unlock(workbench)
    with qtbot.waitSignal(dialog.saved, timeout=WAIT_MS):
        assert dialog.save()
    assert Setup.load(tmp_path / "cells").grid == grid


def test_a_live_frame_is_the_golden_and_the_region_follows_the_part(qtbot, workbench):
    rng = np.random.default_rng(7)
    still = [draw_part(rng, jitter=0) for _ in range(8)]  # every part at the same place
    live = np.roll(still[0], 10, axis=1)  # the golden part stands 10 px further right
    plain = open_dialog(qtbot, workbench, still, grid=(3, 9))
    dialog = open_dialog(qtbot, workbench, still, golden=live, grid=(3, 9))
    assert dialog.golden is live and "live frame" in dialog.notes.text()
    assert dialog.roi.cx == pytest.approx(plain.roi.cx + 10, abs=1.0)
    assert dialog.roi.cy == pytest.approx(plain.roi.cy, abs=1.0)
    # a frame of another camera cannot be the golden: the proposal's pick stays, and the note says why
    other = open_dialog(qtbot, workbench, still, golden=live[:200], grid=(3, 9))
    assert other.golden is not live and "256x200" in other.notes.text()


@pytest.mark.parametrize("images, expected", [
    ([], "no good images"),
    ("sizes", "differ in size"),
    ("missing", "no folder of good images"),
])
def test_bad_input_is_one_line_not_a_traceback(qtbot, workbench, goods, tmp_path, images, expected):
    if images == "sizes":
        images = [goods[0], goods[1][:200]]
    elif images == "missing":
        images = tmp_path / "nowhere"
    dialog = TeachDialog(workbench, images)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.failed, timeout=WAIT_MS) as failed:
        dialog.show()
    message = failed.args[0]
    assert expected in message and "\n" not in message and "Traceback" not in message
    assert expected in dialog.message.text() and not dialog.check_button.isEnabled()


def test_a_region_too_small_for_its_grid_is_refused_with_the_reason(qtbot, workbench, goods, tmp_path):
    out = tmp_path / "small"
    dialog = open_dialog(qtbot, workbench, goods, grid=(3, 9), out_dir=out)
    unlock(workbench)
    dialog.width_px.setValue(8)
    dialog.height_px.setValue(8)
    assert dialog.roi.w == 8
    assert not dialog.check()
    assert "too small for a 3x9 grid" in dialog.message.text()
    assert not dialog.save() and not out.exists()
    assert "too small" in dialog.message.text()


def test_a_dataset_folder_gives_the_grid_its_labelled_defects_span(qtbot, workbench, synthetic_data):
    dialog = open_dialog(qtbot, workbench, synthetic_data)
    assert (dialog.cols.value(), dialog.rows.value()) == (3, 9)  # the labelled cells span 3 x 9
    assert len(dialog.goods) == 30 and dialog.labelled and str(synthetic_data) in dialog.source_label.text()
    roi = dialog.roi
    assert abs(roi.cx - 128) < 12 and abs(roi.cy - 128) < 12 and 60 < roi.w < 90 and 190 < roi.h < 240, roi


class _Line(QObject):
    """What the workbench window needs of the live line when no line runs."""

    results_ready = Signal(list)
    recipe_changed = Signal()
    recipe = None


def test_the_workbench_window_opens_the_teach_dialog_on_captured_good_images_and_the_live_frame(
        qtbot, tmp_path, goods):
    from station.ui.workbench import CaptureController, WorkbenchWindow

    line = _Line()
    workbench = Workbench(line, root=tmp_path / "workbench", dataset_root=tmp_path / "captured", pin_cost=2**10)
    capture = CaptureController(workbench)
    window = WorkbenchWindow(workbench, capture)
    qtbot.addWidget(window)
    for image in goods[:6]:
        workbench.dataset.capture(image, "good")
    live = np.roll(goods[0], 6, axis=1)
    capture.current = SimpleNamespace(frame=SimpleNamespace(image=live))  # the newest frame of the line
    window.show()
    assert window.teach_button.text().startswith("Teach product")
    window.teach_button.click()
    dialog = window.teach_dialog
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(dialog.proposed, timeout=WAIT_MS):
        pass
    assert str(tmp_path / "captured") in dialog.source_label.text() and len(dialog.goods) == 6
    assert dialog.golden is live and "live frame" in dialog.notes.text()
    window.teach_button.click()  # a second click shows the same dialog
    assert window.teach_dialog is dialog
    dialog.close_button.click()
    qtbot.waitUntil(lambda: window.teach_dialog is None, timeout=5000)
    window.shutdown()  # releases the plots' parentless pyqtgraph menus
    capture.shutdown()
    workbench.shutdown()
    window.close()
    window.deleteLater()
    del window, dialog
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()
    gc.collect()


def test_the_engineer_menu_opens_the_teach_dialog_the_workbench_button_opens(qtbot, tmp_path, goods):
    from PySide6.QtWidgets import QMainWindow

    from station.ui.workbench import EngineerMenu, TeachDialog

    main = QMainWindow()  # the station window's menu bar, without a running line
    qtbot.addWidget(main)
    workbench = Workbench(_Line(), root=tmp_path / "workbench", dataset_root=tmp_path / "captured", pin_cost=2**10,
                          parent=main)
    for image in goods[:6]:
        workbench.dataset.capture(image, "good")
    menu = EngineerMenu(main, workbench)
    assert menu.teach_action in menu.menu.actions() and menu.teach_action.text() == "&Teach product\u2026"
    menu.teach_action.trigger()
    window = menu.window
    dialog = window.teach_dialog
    assert isinstance(dialog, TeachDialog) and dialog.isVisible()
    with qtbot.waitSignal(dialog.proposed, timeout=WAIT_MS):
        pass
    assert str(tmp_path / "captured") in dialog.source_label.text() and len(dialog.goods) == 6
    menu.teach_action.trigger()  # again: the same dialog
    assert window.teach_dialog is dialog
    window.teach_button.click()  # the workbench window's button shows the menu's dialog
    assert window.teach_dialog is dialog
    dialog.close_button.click()
    qtbot.waitUntil(lambda: window.teach_dialog is None, timeout=5000)
    main.close()  # shuts the menu's workbench window, capture and workbench down
    main.deleteLater()
    window = dialog = menu = None  # the collector below takes them
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()
    gc.collect()
