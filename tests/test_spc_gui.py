"""The pin SPC view in the station window (View > Pin SPC) and the shift report from the window."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6")

from station.core.inspector import InspectionResult  # noqa: E402
from station.core.spc import PinSpc, SpcSettings  # noqa: E402
from station.core.verdict import Verdict  # noqa: E402
from station.ui.report_dialog import ReportDialog  # noqa: E402
from test_gui import make_window  # noqa: E402,F401 - the window fixture

# the offscreen platform's notes on a second top-level window, as in tests/test_gui.py
pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints",
                                                         "does not support raise")]


def _part(cells, verdict=Verdict.OK, pixel_map=None):
    return SimpleNamespace(result=InspectionResult(verdict, "good", float(np.max(cells)), cells, None, {}, "h",
                                                   pixel_map=pixel_map))


def test_the_spc_view_charts_the_live_line_and_a_drifting_pin_reaches_the_banner(qtbot, make_window, tmp_path):
    window = make_window(start=False)
    window.spc.spc = PinSpc(SpcSettings(weight=0.5, baseline_parts=8, hold_parts=1))
    assert window.spc_view is None  # nothing drawn until someone looks
    window.spc_action.trigger()
    view = window.spc_view
    assert view.isVisible() and view.isWindow()
    window.service.start()
    qtbot.waitUntil(lambda: view.spc.ready and view.spc.parts >= 3, timeout=10000)
    view.refresh()
    assert "parts charted" in view.header.text()
    view.select((2, 8))
    assert len(view.ewma_curve.getData()[1]) == len(view.spc.charts[(2, 8)].ewma) > 0
    window.service.stop()
    window.service.recipe_changed.emit()  # a new recipe: the charts start again
    assert not view.spc.ready and view.spc.settings.baseline_parts == 8
    rng = np.random.default_rng(0)  # a known good spread, then a pin that jumps far above it
    window.spc.add_results([_part(np.exp(rng.normal(0, 0.2, (9, 3)))) for _ in range(12)])
    assert view.spc.ready and view.spc.alarms == []
    cells = np.ones((9, 3))
    cells[4, 1] = 1e3
    window.spc.add_results([_part(cells, Verdict.NG)])
    assert view.selected == (1, 4)
    assert "pin 1,4 drifting toward NG" in window.banner.text()
    view.refresh()
    assert "Drifting toward NG: pin 1,4</b>" in view.header.text() and view.windowTitle().endswith("each pin")

    # a free-form part (a photographed bottle, mapped per pixel) has cells, not pins: the banner and view say so
    window.service.recipe_changed.emit()
    window.hide_banner()
    flat = np.zeros((16, 16), np.float32)
    window.spc.add_results([_part(np.exp(rng.normal(0, 0.2, (9, 3))), pixel_map=flat) for _ in range(12)])
    window.spc.add_results([_part(cells, Verdict.NG, pixel_map=flat)])
    assert "cell 1,4 drifting toward NG" in window.banner.text() and "pin 1,4" not in window.banner.text()
    view.refresh()
    assert "Drifting toward NG: cell 1,4</b>" in view.header.text() and view.windowTitle().endswith("each cell")

    dialog = ReportDialog(window.service.results.url, window, versions_root=tmp_path / "no-versions")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: window.service.results.pending == 0, timeout=5000)
    dialog.with_csv.setChecked(True)
    assert dialog.write(tmp_path / "shift.pdf")
    assert (tmp_path / "shift.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "shift.csv").is_file()
    assert "Saved" in dialog.status.text()
    assert not dialog.write(tmp_path / "shift.pdf")  # never over a file
    assert "exists" in dialog.status.text()


def test_engines_disagreeing_on_a_free_form_part_name_its_cell_not_a_pin():
    from station.ui.verdict_panel import disagreement_text

    def own(verdict, cell, pixel_map):
        return InspectionResult(verdict, "defect", 1.0, None, cell, {}, "h", pixel_map=pixel_map)

    flat = np.zeros((8, 8), np.float32)
    for pixel_map, unit in ((None, "pin"), (flat, "cell")):
        line = InspectionResult(Verdict.REVIEW, "defect", 1.0, None, None, {}, "h",
                                engines={"a": own(Verdict.NG, (1, 2), pixel_map), "b": own(Verdict.NG, (4, 0), pixel_map)})
        text = disagreement_text(line)
        assert text.splitlines() == [f"engines disagree on the {unit}", f"a: NG defect, {unit} col 2, row 3",
                                     f"b: NG defect, {unit} col 5, row 1"]
