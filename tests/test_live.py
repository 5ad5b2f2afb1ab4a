"""The Qt-free live line: threads, the one-slot buffer's policies, states, overlay, bench."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from station.core.inspector import Inspector
from station.core.live import LatestFrameSlot, LivePipeline
from station.core.overlay import OverlayRenderer, composite, normalise
from station.core.recipe import Recipe
from station.core.sources import DemoLineSource, FolderSource, Frame, Source, SourceState
from station.core.verdict import Verdict


class FlakyCamera(Source):
    """A live source that delivers `before` frames, is lost for `lost_s` seconds, then comes back."""

    live = True

    def __init__(self, image: np.ndarray, before: int = 5, lost_s: float = 0.4, fps: float = 50.0) -> None:
        super().__init__()
        self.image, self.before, self.lost_s, self.fps = image, before, lost_s, fps
        self.description = "flaky camera"
        self._lost_until: float | None = None

    def read(self) -> Frame | None:
        time.sleep(1 / self.fps)
        if self.state is SourceState.CLOSED:
            return None
        if self._index == self.before and self._lost_until is None:
            self._lost_until = time.monotonic() + self.lost_s
        if self._lost_until is not None and time.monotonic() < self._lost_until:
            self.state, self.message = SourceState.LOST, "flaky camera lost; reconnecting"
            return None
        self.state, self.message = SourceState.RUNNING, ""
        return self._frame(self.image.copy(), f"flaky #{self._index}")


class SlowInspector:
    """Wraps an inspector and takes at least `delay` seconds per frame."""

    def __init__(self, inner: Inspector, delay: float) -> None:
        self.inner, self.delay, self.recipe = inner, delay, inner.recipe

    def inspect(self, image):
        time.sleep(self.delay)
        return self.inner.inspect(image)


@pytest.fixture(scope="module")
def inspector(synthetic_recipe) -> Inspector:
    return Inspector(Recipe.load(synthetic_recipe))


def station_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("station-")]


def collect(pipeline: LivePipeline) -> list:
    got: list = []
    pipeline.result_ready.connect(got.append)
    return got


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_slot_drops_for_live_and_blocks_for_files():
    slot = LatestFrameSlot()
    f = [Frame(None, i, time.perf_counter(), str(i)) for i in range(3)]
    assert slot.put(f[0], block=False) is False
    assert slot.put(f[1], block=False) is True  # f[0] was never taken: dropped
    assert slot.take(0.1) is f[1]
    slot.put(f[0], block=True)
    taker = threading.Timer(0.1, slot.take, args=(0.1,))
    taker.start()
    t0 = time.perf_counter()
    assert slot.put(f[2], block=True) is False  # waited for the taker instead of replacing
    assert time.perf_counter() - t0 >= 0.05
    assert slot.take(0.1) is f[2]
    taker.join()


def test_demo_line_runs_and_stops_cleanly(synthetic_data, inspector):
    pipeline = LivePipeline(DemoLineSource(synthetic_data / "test", fps=60), inspector)
    got = collect(pipeline)
    pipeline.start()
    wait_for(lambda: len(got) >= 10)
    assert pipeline.stop(timeout=3)
    assert station_threads() == []
    item = got[-1]
    assert item.result is not None and item.overlay is not None and item.thumb is not None
    assert {"capture", "registration", "engine", "overlay", "end_to_end"} <= set(item.timings_ms)
    stats = pipeline.stats()
    assert stats["camera_fps"] > 0 and stats["latency_ms"]["engine"] is not None
    assert pipeline.tally.total == len(got)


def test_live_source_drops_stale_frames_when_inference_is_slow(synthetic_data, inspector):
    pipeline = LivePipeline(DemoLineSource(synthetic_data / "test", fps=100), SlowInspector(inspector, 0.05))
    got = collect(pipeline)
    pipeline.start()
    time.sleep(1.0)
    assert pipeline.stop()
    assert pipeline.dropped > 10
    assert pipeline.camera_rate_count >= len(got) + pipeline.dropped - 1


def test_folder_inspects_every_image_and_reports_the_corrupt_one(synthetic_data, inspector, tmp_path):
    import shutil

    files = sorted((synthetic_data / "test" / "good").glob("*.png"))[:6]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pipeline = LivePipeline(FolderSource(tmp_path), SlowInspector(inspector, 0.02))
    got = collect(pipeline)
    done = threading.Event()
    pipeline.finished.connect(done.set)
    pipeline.start()
    assert done.wait(10)
    assert pipeline.stop()
    assert len(got) == 7 and pipeline.dropped == 0
    bad = [i for i in got if i.result is None]
    assert len(bad) == 1 and bad[0].frame.name == "broken.png" and bad[0].error
    tally = pipeline.tally.snapshot()
    assert tally["total"] == 6 and tally["unreadable"] == 1 and "broken.png" in tally["bad_files"][0]
    assert pipeline.state is SourceState.ENDED


def test_lost_camera_is_reported_and_resumes(synthetic_data, inspector):
    from station.core.imageio import read_image

    image = read_image(next((synthetic_data / "test" / "good").glob("*.png")))
    pipeline = LivePipeline(FlakyCamera(image), inspector)
    states: list[str] = []
    pipeline.state_changed.connect(lambda state, message: states.append(state.value))
    got = collect(pipeline)
    pipeline.start()
    wait_for(lambda: "camera lost, reconnecting" in states and len(got) > 10)
    assert pipeline.stop()
    lost = states.index("camera lost, reconnecting")
    assert "running" in states[lost:]


def test_pause_and_single_shot(synthetic_data, inspector):
    pipeline = LivePipeline(DemoLineSource(synthetic_data / "test", fps=60), inspector)
    got = collect(pipeline)
    pipeline.trigger()  # a stopped line starts paused and inspects one frame
    wait_for(lambda: len(got) == 1)
    time.sleep(0.3)
    assert len(got) == 1 and pipeline.paused
    pipeline.trigger()
    wait_for(lambda: len(got) == 2)
    pipeline.resume()
    wait_for(lambda: len(got) > 5)
    pipeline.pause()
    time.sleep(0.1)
    n = len(got)
    time.sleep(0.3)
    assert len(got) == n
    assert pipeline.stop()


def test_source_that_cannot_open_fails_cleanly(inspector, tmp_path):
    pipeline = LivePipeline(FolderSource(tmp_path / "missing"), inspector)
    states: list = []
    pipeline.state_changed.connect(lambda s, m: states.append((s, m)))
    done = threading.Event()
    pipeline.finished.connect(done.set)
    pipeline.start()
    assert done.wait(5)
    assert pipeline.stop()
    assert states[-1][0] is SourceState.FAILED and "not found" in states[-1][1]


def test_overlay_marks_the_defective_cell(synthetic_data, inspector):
    from station.core.imageio import read_image

    path = next((synthetic_data / "test" / "missing").glob("*.png"))
    image = read_image(path)
    result = inspector.inspect(image)
    assert result.verdict is not Verdict.OK
    renderer = OverlayRenderer(inspector.recipe.grid, inspector.recipe.thresholds)
    overlay = renderer.render(result, image.shape)
    assert overlay.heat.shape == image.shape[:2] + (4,) and overlay.marks.shape == overlay.heat.shape
    col, row = result.top_cell
    p = inspector.recipe.grid.cell_px
    centre = result.registered.to_frame(np.array([[(col + 0.5) * p, (row + 0.5) * p]]))[0]
    x, y = np.rint(centre).astype(int)
    assert overlay.heat[y, x, 0] > overlay.heat[y, x, 1]  # the NG cell is red, not green
    assert (overlay.marks[..., 3] > 0).sum() > 100
    out = composite(image, overlay, 0.5)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_normalise_maps_thresholds_to_the_same_colour():
    assert normalise(np.array([5.0, 10.0, np.nan, np.inf]), 10.0).tolist() == [0.5, 1.0, 2.0, 2.0]
    assert normalise(np.array([50.0]), 100.0)[0] == normalise(np.array([0.5]), 1.0)[0]


def test_core_does_not_import_qt():
    code = ("import sys; import station.core.live, station.core.overlay, station.core.settings, station.cli;"
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'PyQt', 'pyqtgraph', 'superqt'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_headless_bench_prints_one_json_object(synthetic_data, synthetic_recipe):
    cmd = [sys.executable, "-m", "station", "bench", "--seconds", "1", "--source", f"demo:{synthetic_data / 'test'}",
           "--recipe", str(synthetic_recipe)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in ("camera_fps", "inference_fps", "displayed_fps", "latency_ms", "end_to_end_p95_ms", "dropped_frames",
                "peak_rss_mb", "final_rss_mb", "max_stall_ms"):
        assert key in report
    assert report["inference_fps"] > 5 and report["latency_ms"]["engine"]["p95"] > 0
