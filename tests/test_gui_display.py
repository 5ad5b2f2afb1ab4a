"""The live view's picture and the window's per-frame work: the picture is composed in the inference thread
(the GUI thread only draws it), follows the view's controls, and belongs to the result the verdict shows;
what the window keeps per frame stays bounded."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from station.core.overlay import Overlay, composite  # noqa: E402
from station.core.settings import StationSettings  # noqa: E402
from station.ui.app import create_window  # noqa: E402
from station.ui.display import Display, blend, compose  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]


def _layers(h: int = 40, w: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    heat = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    marks = np.zeros((h, w, 4), np.uint8)
    marks[5:8, :, :] = (255, 0, 200, 255)  # an opaque line
    marks[20, :, :] = (255, 255, 255, 110)  # a faint one
    return frame, Overlay(heat, marks)


def _rgb(image) -> np.ndarray:
    """A QImage's pixels as an RGB uint8 array."""
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


@pytest.mark.parametrize("opacity", [0.0, 0.3, 0.55, 1.0])
def test_blend_is_the_overlay_composite_within_a_few_levels(opacity):
    frame, overlay = _layers()
    fast = _rgb(blend(frame, overlay, opacity)).astype(int)
    slow = composite(frame, overlay, opacity).astype(int)  # the float reference (thumbnails, saved images)
    assert fast.shape == frame.shape
    assert np.abs(fast - slow).max() <= 4 and np.abs(fast - slow).mean() < 1.0  # Qt blends in 8 bits, twice
    assert np.array_equal(_rgb(blend(frame, None, opacity)), frame)


def test_blend_takes_grey_and_rgba_frames_and_skips_a_layer_of_another_size():
    frame, overlay = _layers()
    grey = frame[..., 0]
    out = _rgb(blend(grey, Overlay(None, None), 0.5))
    assert out.shape == (*grey.shape, 3) and np.array_equal(out[..., 1], grey)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    assert np.array_equal(_rgb(blend(rgba, None, 0.5)), frame)
    small = Overlay(overlay.heat[:10, :10], None)
    assert np.array_equal(_rgb(blend(frame, small, 1.0)), frame)


@pytest.fixture
def window(qtbot, synthetic_data, synthetic_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    w = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), StationSettings(demo_fps=30),
                      save_settings=False, start=True)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_the_live_picture_is_composed_in_the_inference_thread_and_only_drawn_by_the_gui(qtbot, window):
    view, service = window.live_view, window.service
    gui = threading.get_ident()
    qtbot.waitUntil(lambda: service.painted_count >= 5, timeout=10000)
    item = view.current
    assert isinstance(item.display, Display) and item.display.thread != gui
    assert item.display.choice == service.view_choice == view.view_choice()
    assert view.canvas._image is item.display.image  # drawn as it came: no conversion, no blend in the GUI
    assert view.canvas._heat is None and view.canvas._marks is None
    # composed at the size it is shown (the canvas fitted): drawn without scaling
    fw, fh = view.canvas.fit_area()
    h, w = item.frame.image.shape[:2]
    scale = min(fw / w, fh / h)
    assert abs(view.canvas._image.width() - w * scale) <= 1 and abs(view.canvas._image.height() - h * scale) <= 1
    # the verdict on screen is the verdict of the picture on screen
    assert window.verdict_panel._item is item


def test_a_control_change_recomposes_the_frame_on_screen_and_the_next_frames(qtbot, window):
    view, service = window.live_view, window.service
    qtbot.waitUntil(lambda: service.painted_count >= 3, timeout=10000)
    service.pause()
    qtbot.wait(200)  # frames in flight arrive
    item = view.current
    shown_with_overlay = view.canvas._image
    view.set_overlay_visible(False)
    assert service.view_choice == view.view_choice() and not service.view_choice.overlay_visible
    assert item.display.choice == service.view_choice and item.display.thread == threading.get_ident()
    plain = compose(item, service.view_choice)
    assert view.canvas._image is item.display.image and view.canvas._image == plain.image
    assert shown_with_overlay != plain.image  # the synthetic parts have a map drawn over them
    service.start()
    painted = service.painted_count
    qtbot.waitUntil(lambda: service.painted_count > painted + 2, timeout=10000)
    newest = view.current
    assert newest is not item and newest.display.choice.overlay_visible is False
    assert newest.display.thread != threading.get_ident()


def test_the_legend_is_repainted_only_when_its_scale_changes(qtbot, window):
    legend = window.live_view.legend
    calls = []
    legend.update = lambda *a: calls.append(a)  # noqa: the widget's own update, counted
    legend.set_review_frac(legend.review_frac)
    assert calls == []
    legend.set_review_frac(legend.review_frac / 2)
    assert len(calls) == 1


def test_the_not_yet_logged_badge_neither_moves_the_verdict_nor_restyles_for_every_part(qtbot):
    """The badge comes and goes with every part at 30 parts a second: showing it must not lay the panel out
    again (the big verdict was resized and repainted each time) nor parse a style sheet each time."""
    from PySide6.QtWidgets import QApplication

    from station.core.inspector import InspectionResult
    from station.core.live import LiveResult
    from station.core.log_ticket import LogTicket
    from station.core.sources import Frame, make_source
    from station.core.verdict import Verdict
    from station.ui.live_service import LiveService
    from station.ui.verdict_panel import VerdictPanel

    service = LiveService(make_source("demo"), None)  # never started: the panel only reads it
    panel = VerdictPanel(service)
    qtbot.addWidget(panel)
    panel.resize(400, 500)
    panel.show()
    styled = []
    restyle = panel.log_label.setStyleSheet
    panel.log_label.setStyleSheet = lambda sheet: (styled.append(sheet), restyle(sheet))
    result = InspectionResult(Verdict.OK, "good", 0.1, np.zeros((2, 2)), None, {}, "sha256:x")
    QApplication.processEvents()
    settled = panel.verdict_label.geometry()
    for i in range(5):
        ticket = LogTicket(f"{i:032x}", "OK")
        panel._item = LiveResult(i, Frame(None, 0, 0.0, "a.png"), result, None, None, {}, 0.0, log=ticket)
        panel.refresh_log_state()
        QApplication.processEvents()
        assert panel.log_label.isVisibleTo(panel) and "not yet logged" in panel.log_label.text()
        assert panel.verdict_label.geometry() == settled
        ticket.settle("logged")
        panel.refresh_log_state()
        QApplication.processEvents()
        assert not panel.log_label.isVisibleTo(panel) and panel.verdict_label.geometry() == settled
    assert len(styled) <= 1
    service.shutdown()


def test_the_banner_stays_bounded_however_many_messages_and_drift_alarms_come(qtbot, window):
    """Each drift alarm was appended to the banner: over a shift on the demo line (its drifting pin alarms
    again and again) the text, the banner's height and the cost of laying it out grew without end."""
    window.show_banner("start-up problem")
    for i in range(300):
        window.spc.alarm_raised.emit(f"pin 1,{i % 9} drifting toward NG (part {i})")
        window.add_to_banner(f"camera stopped {i}")
        window.add_to_banner("the same message")
    text = window.banner.text()
    assert text.startswith("start-up problem") and "camera stopped 299" in text
    assert "part 299" in text and "300 drift alarms" in text and "part 298" not in text
    assert "camera stopped 10 " not in text and text.count("the same message") == 1
    assert len(text) < 600
    window.hide_banner()
    window.spc.alarm_raised.emit("pin 2,2 drifting toward NG (part 301)")
    assert window.banner.text() == "pin 2,2 drifting toward NG (part 301)" and window._banner_row.isVisibleTo(window)


def test_a_picture_is_composed_at_the_size_it_is_shown_and_at_its_own_when_zoomed_in():
    from types import SimpleNamespace

    from station.ui.display import MAX_SIDE, ViewChoice, fitted

    assert fitted((256, 256, 3), (700, 500)) == (500, 500)
    assert fitted((100, 200, 3), (1000, 1000)) == (1000, 500)
    assert fitted((256, 256, 3), (256, 900)) is None and fitted((256, 256, 3), None) is None
    assert max(fitted((100, 100, 3), (10 ** 6, 10 ** 6))) == MAX_SIDE
    frame, overlay = _layers(40, 50)
    item = SimpleNamespace(frame=SimpleNamespace(image=frame), overlay=overlay, overlays={}, result=None)
    shown = compose(item, ViewChoice(area=(200, 300), pixel_ratio=2.0)).image
    assert (shown.width(), shown.height()) == (200, 160) and shown.devicePixelRatio() == 2.0
    native = compose(item, ViewChoice()).image
    assert (native.width(), native.height()) == (50, 40) and native.devicePixelRatio() == 1.0


def test_zooming_in_composes_at_the_frames_size_and_kept_results_drop_their_pictures(qtbot, window):
    view, service = window.live_view, window.service
    qtbot.waitUntil(lambda: service.painted_count >= 3, timeout=10000)
    assert service.view_choice.area == view.canvas.fit_area() is not None
    view.zoom_in()
    assert service.view_choice.area is None
    painted = service.painted_count
    qtbot.waitUntil(lambda: service.painted_count > painted + 2, timeout=10000)
    h, w = view.current.frame.image.shape[:2]
    assert (view.canvas._image.width(), view.canvas._image.height()) == (w, h)
    view.canvas.fit()
    assert service.view_choice.area == view.canvas.fit_area()
    qtbot.waitUntil(lambda: window.recent.count() >= 3, timeout=10000)
    kept = [window.recent.item(i).data(0x0100) for i in range(window.recent.count())]  # Qt.UserRole
    assert all(item.display is None for item in kept if item is not view.current)


def test_a_picture_that_cannot_be_composed_in_the_inference_thread_is_composed_by_the_view(qtbot, window,
                                                                                           monkeypatch, caplog):
    import station.ui.live_service as live_service

    def broken(item, choice):
        raise RuntimeError("no picture")

    monkeypatch.setattr(live_service, "compose", broken)
    service = window.service
    painted = service.painted_count
    with caplog.at_level("ERROR", logger="station.ui.live_service"):
        qtbot.waitUntil(lambda: service.painted_count > painted + 2, timeout=10000)
    item = window.live_view.current
    assert item.display.thread == threading.get_ident() and window.live_view.canvas._image is item.display.image
    assert window.verdict_panel._item is item and service.pipeline.state.value == "running"
    assert "composing the live picture" in caplog.text


def test_the_legend_labels_review_and_ng_apart_only_where_they_do_not_overlap(qtbot, window):
    """A review threshold at 0.7 of the NG threshold on a 370 px bar put "review" and "NG threshold" on top of
    each other (seen on the magnetic tiles' recipe); the labels are merged by their measured widths."""
    legend = window.live_view.legend
    width = legend.fontMetrics().horizontalAdvance
    legend.set_review_frac(0.7)
    assert [t for _, t in legend.ticks(370, width)] == ["0", "review / NG threshold", "2x NG"]
    assert [t for _, t in legend.ticks(1200, width)] == ["0", "review", "NG threshold", "2x NG"]
    legend.set_review_frac(0.3)
    assert "review" in [t for _, t in legend.ticks(370, width)]
