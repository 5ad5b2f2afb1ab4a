"""The window never leaves a stale verdict for a camera that stopped sending: stalled and frozen cameras
turn the verdict panel grey, a bad frame is a red NG that says why, and the banner says why a line stopped."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from camera_fakes import FrozenCamera, StallingCamera  # noqa: E402
from station.core.imageio import read_image  # noqa: E402
from station.core.settings import StationSettings  # noqa: E402
from station.core.sources import Frame, Source, SourceState  # noqa: E402
from station.ui.app import create_window  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

VERDICTS = ("OK", "NG", "REVIEW")


def station_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("station-")]


@pytest.fixture
def good(synthetic_data) -> np.ndarray:
    return read_image(sorted((synthetic_data / "test" / "good").glob("*.png"))[0])


@pytest.fixture
def window(qtbot, synthetic_data, synthetic_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    settings = StationSettings(demo_fps=30, stall_after_frames=5, stall_min_s=0.3, frozen_after_s=0.5)
    win = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), settings, save_settings=False,
                        start=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    assert station_threads() == []


def shows(win, key: str, text: str = "") -> bool:
    panel = win.verdict_panel
    return panel.verdict == key and text in panel.verdict_label.text() + " " + panel.detail_label.text()


def test_a_stalled_camera_greys_the_verdict_and_recovers(qtbot, window, good):
    camera = StallingCamera(good, fps=30)
    window.service.set_source(camera)
    window.service.start()
    try:
        qtbot.waitUntil(lambda: window.verdict_panel.verdict in VERDICTS, timeout=5000)
        camera.hold.set()
        qtbot.waitUntil(lambda: shows(window, "IDLE", "CAMERA STALLED"), timeout=5000)
        assert camera.blocked.is_set()  # the read is still stuck: no verdict of an earlier part is on screen
        window.status.refresh()
        assert "camera stalled" in window.status.source_label.text()
        camera.hold.clear()
        camera.release.set()
        qtbot.waitUntil(lambda: window.verdict_panel.verdict in VERDICTS, timeout=5000)
    finally:
        camera.release.set()


def test_a_frozen_camera_greys_the_verdict(qtbot, window, good):
    window.service.set_source(FrozenCamera(good, fresh=3, frozen_s=30.0, fps=30))
    window.service.start()
    qtbot.waitUntil(lambda: shows(window, "IDLE", "CAMERA FROZEN"), timeout=5000)
    assert "the same frame" in window.verdict_panel.detail_label.text()


class OneBadFrame(Source):
    """A live camera: one good frame, one bad frame, then nothing new (it waits to be closed)."""

    live = True

    def __init__(self, image: np.ndarray) -> None:
        super().__init__()
        self.image, self.description = image, "scripted camera"
        self.closed = threading.Event()

    def read(self) -> Frame | None:
        if self._index == 0:
            return self._frame(self.image.copy(), "good")
        if self._index == 1:
            return self._frame(None, "bad", "bad frame: 2 channels, not 1, 3 or 4")
        self.closed.wait(0.05)
        return None

    def close(self) -> None:
        self.closed.set()
        super().close()


def test_a_bad_frame_is_a_red_ng_that_says_why(qtbot, window, good):
    window.service.set_source(OneBadFrame(good))
    window.service.start()
    qtbot.waitUntil(lambda: shows(window, "NG", "bad frame: 2 channels"), timeout=5000)
    assert window.service.run_state == "running"


class BrokenDriver(Source):
    live = True

    def __init__(self) -> None:
        super().__init__()
        self.description = "camera 7"

    def read(self) -> Frame | None:
        raise RuntimeError("driver crashed")


def test_the_banner_says_why_a_line_stopped(qtbot, window):
    window.service.set_source(BrokenDriver())
    with qtbot.waitSignal(window.service.line_finished, timeout=5000):
        window.service.start()
    assert window.service.pipeline.state is SourceState.FAILED
    assert "camera 7 stopped: capture failed: RuntimeError: driver crashed" in window.banner.text()
