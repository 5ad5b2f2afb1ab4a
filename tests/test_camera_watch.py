"""The line does not trust the camera: a read that blocks is "camera stalled" within the timeout, a frozen
sensor's repeats are not inspected and say "camera frozen", a malformed frame is one NG bad frame and the
line goes on, and a driver that raises while opening is retried (issue 19, finding 4)."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from camera_fakes import BAD_FRAMES, FakeCapture, FrozenCamera, StallingCamera, fake_video_capture, noisy
from station.core.frame_check import Repeats, fingerprint, frame_problem
from station.core.imageio import read_image
from station.core.inspector import BAD_FRAME, Inspector
from station.core.live import LivePipeline
from station.core.recipe import Recipe
from station.core.sources import CameraSource, DemoLineSource, FolderSource, SourceState
from station.core.verdict import Verdict
from station.core.watchdog import CameraWatch, FrameClock

FAST = CameraWatch(stall_after_frames=5, stall_min_s=0.3, frozen_after_s=0.3)


@pytest.fixture(scope="module")
def inspector(synthetic_recipe) -> Inspector:
    return Inspector(Recipe.load(synthetic_recipe))


@pytest.fixture(scope="module")
def good(synthetic_data) -> np.ndarray:
    return read_image(sorted((synthetic_data / "test" / "good").glob("*.png"))[0])


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


class Recorder:
    """The pipeline's results and states, with the time each state came."""

    def __init__(self, pipeline: LivePipeline) -> None:
        self.results: list = []
        self.states: list[tuple[SourceState, str, float]] = []
        self.finished = threading.Event()
        pipeline.result_ready.connect(self.results.append)
        pipeline.state_changed.connect(self.state)
        pipeline.finished.connect(self.finished.set)

    def state(self, state: SourceState, message: str) -> None:
        self.states.append((state, message, time.monotonic()))

    def seen(self, state: SourceState) -> bool:
        return any(s is state for s, _, _ in self.states)


# -- the frame checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BAD_FRAMES))
def test_malformed_frames_are_named(kind):
    assert frame_problem(BAD_FRAMES[kind]()) != ""


@pytest.mark.parametrize("image", [np.zeros((48, 64), np.uint8), np.zeros((48, 64, 3), np.uint8),
                                   np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64, 1), np.uint16)])
def test_frames_a_camera_may_send_pass(image):
    assert frame_problem(image) == ""


def test_repeats_tell_a_repeated_buffer_from_sensor_noise(good):
    repeats = Repeats()
    a, b = noisy(good, 1), noisy(good, 2)
    assert fingerprint(a) != fingerprint(b)
    assert repeats.seen(a, 0.0) is None and repeats.seen(a.copy(), 0.5) == 0.5 and repeats.seen(a, 1.5) == 1.5
    assert repeats.seen(b, 2.0) is None  # a new frame ends the repeat


def test_stall_timeout_follows_the_frame_interval():
    clock = FrameClock(CameraWatch(stall_after_frames=10, stall_min_s=0.5), nominal_fps=5.0)
    assert clock.timeout_s == pytest.approx(2.0)  # 10 intervals of 0.2 s
    for i in range(5):
        clock.frame(i * 1.0)  # the camera really sends one frame a second
    assert clock.timeout_s == pytest.approx(10.0)
    assert FrameClock(CameraWatch(10, 0.5), nominal_fps=100.0).timeout_s == 0.5  # never under the floor


# -- a read that blocks ------------------------------------------------------------------------------
def test_a_read_that_blocks_is_a_stalled_camera_and_recovers(good, inspector):
    camera = StallingCamera(good, fps=50)
    pipeline = LivePipeline(camera, inspector, watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        wait_for(lambda: len(rec.results) >= 3)
        camera.hold.set()
        assert camera.blocked.wait(5)
        t0 = time.monotonic()
        wait_for(lambda: pipeline.state is SourceState.STALLED, timeout=5)
        stalled_at = next(t for s, _, t in rec.states if s is SourceState.STALLED)
        assert stalled_at - t0 < 0.3 + 1.0  # the timeout, and scheduling slack on a busy machine
        assert camera.blocked.is_set()  # said while the capture thread is still inside read()
        assert "stalling camera stalled: no new frame" in pipeline.message
        n = len(rec.results)
        camera.hold.clear()
        camera.release.set()
        wait_for(lambda: pipeline.state is SourceState.RUNNING and len(rec.results) > n + 2)
    finally:
        camera.release.set()
        assert pipeline.stop()
    assert not rec.finished.is_set()


# -- a frozen camera ---------------------------------------------------------------------------------
def test_a_frozen_sensor_is_not_inspected_again_and_says_so(good, inspector):
    camera = FrozenCamera(good, fresh=4, frozen_s=1.0, fps=50)
    pipeline = LivePipeline(camera, inspector, watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        wait_for(lambda: rec.seen(SourceState.FROZEN), timeout=5)
        wait_for(lambda: any(r.frame.name.startswith("fresh") and r.frame.index > 4 for r in rec.results))
    finally:
        assert pipeline.stop()
    inspected_repeats = [r for r in rec.results if r.frame.name.startswith("frozen")]
    assert camera.repeats > 20 and len(inspected_repeats) <= 1  # the first of them was new; the rest were not
    assert pipeline.repeated >= camera.repeats - 2
    assert "the same frame" in next(m for s, m, _ in rec.states if s is SourceState.FROZEN)
    after = [s for s, _, _ in rec.states][[s for s, _, _ in rec.states].index(SourceState.FROZEN):]
    assert SourceState.RUNNING in after  # new frames: running again


def test_a_replayed_still_image_is_not_a_frozen_camera(good, inspector, tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), cv2.cvtColor(good, cv2.COLOR_RGB2BGR))
    pipeline = LivePipeline(DemoLineSource(tmp_path, fps=50), inspector, watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        time.sleep(1.0)
    finally:
        assert pipeline.stop()
    assert not rec.seen(SourceState.FROZEN) and len(rec.results) > 10 and pipeline.repeated == 0


# -- malformed frames --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BAD_FRAMES))
def test_a_camera_frame_of_the_wrong_shape_or_type_is_one_bad_frame(monkeypatch, good, kind):
    frames = [cv2.cvtColor(good, cv2.COLOR_RGB2BGR), BAD_FRAMES[kind](), cv2.cvtColor(good, cv2.COLOR_RGB2BGR)]
    monkeypatch.setattr(cv2, "VideoCapture", fake_video_capture([FakeCapture(frames.__getitem__, fps=500)]))
    camera = CameraSource(0)
    camera.open()
    first, bad, third = camera.read(), camera.read(), camera.read()
    assert first.image is not None and third.image is not None and camera.state is SourceState.RUNNING
    assert bad.image is None and bad.error.startswith("bad frame: ")


def test_bad_frames_on_a_live_line_are_ng_results_and_the_line_goes_on(monkeypatch, good, inspector):
    kinds = sorted(BAD_FRAMES)
    bgr = cv2.cvtColor(good, cv2.COLOR_RGB2BGR)

    def frame_at(i: int) -> np.ndarray:  # every third frame a bad one, of each kind in turn, then good ones
        if i % 3 == 1 and i // 3 < len(kinds):
            return BAD_FRAMES[kinds[i // 3]]()
        return noisy(bgr, i)

    monkeypatch.setattr(cv2, "VideoCapture", fake_video_capture([FakeCapture(frame_at, fps=15)]))
    pipeline = LivePipeline(CameraSource(0), inspector, watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        wait_for(lambda: any(r.frame.index > 3 * len(kinds) + 3 for r in rec.results), timeout=20)
    finally:
        assert pipeline.stop()
    bad = [r for r in rec.results if r.frame.index % 3 == 1 and r.frame.index // 3 < len(kinds)]
    good_ones = [r for r in rec.results if r not in bad]
    assert bad, "no bad frame reached the inspection"
    for r in bad:
        assert r.verdict is Verdict.NG and r.result.label == BAD_FRAME and r.result.message.startswith("bad frame: ")
    assert all(r.result.label != BAD_FRAME for r in good_ones)
    assert pipeline.state is SourceState.RUNNING and not rec.finished.is_set()
    assert pipeline.tally.ng >= len(bad)


def test_a_frame_the_inspection_cannot_take_is_one_bad_frame(good, inspector):
    class Crashing:
        recipe = inspector.recipe

        def __init__(self) -> None:
            self.calls = 0

        def inspect(self, image):
            self.calls += 1
            if self.calls == 2:
                raise cv2.error("warpAffine: something the frame did to OpenCV")
            return inspector.inspect(image)

    camera = StallingCamera(good, fps=30)
    pipeline = LivePipeline(camera, Crashing(), watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        wait_for(lambda: len(rec.results) >= 5)
    finally:
        assert pipeline.stop()
    assert rec.results[1].result.label == BAD_FRAME and "inspection failed (error" in rec.results[1].result.message
    assert all(r.result.label != BAD_FRAME for r in rec.results[2:]) and not rec.finished.is_set()


def test_a_folder_with_a_malformed_image_reads_the_rest(good, tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(good, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "1.png"), np.full((1, 1000, 3), 80, np.uint8))
    src = FolderSource(tmp_path)
    src.open()
    frames = [src.read() for _ in range(3)]
    assert src.read() is None and src.state is SourceState.ENDED
    assert [f.image is None for f in frames] == [False, True, False]
    assert "1000 x 1 px" in frames[1].error  # refused from its header, before it is decoded


# -- a driver that raises ------------------------------------------------------------------------------
def test_a_driver_that_raises_while_opening_is_retried_with_backoff(monkeypatch, good):
    capture = FakeCapture(lambda i: noisy(cv2.cvtColor(good, cv2.COLOR_RGB2BGR), i), fps=500)
    factory = fake_video_capture([capture], raises=3)
    monkeypatch.setattr(cv2, "VideoCapture", factory)
    camera = CameraSource(0, retry_s=0.02, retry_max_s=0.05)
    camera.open()  # raises inside: a state, not an exception
    assert camera.state is SourceState.LOST and "could not be opened (error" in camera.reason
    messages = {camera.message}
    deadline = time.monotonic() + 5
    frame = None
    while frame is None and time.monotonic() < deadline:
        frame = camera.read()
        messages.add(camera.message)
    assert frame is not None and frame.image is not None and camera.state is SourceState.RUNNING
    assert factory.calls["n"] == 4
    assert {"retrying in 0.02 s", "retrying in 0.04 s", "retrying in 0.05 s"} <= {m.split("; ")[-1] for m in messages}


def test_a_line_whose_camera_raises_on_reopen_keeps_trying(monkeypatch, good, inspector):
    bgr = cv2.cvtColor(good, cv2.COLOR_RGB2BGR)
    unplugged = FakeCapture(lambda i: noisy(bgr, i) if i < 5 else None, fps=50)  # lost after 5 frames
    back = FakeCapture(lambda i: noisy(bgr, 100 + i), fps=50)
    factory = fake_video_capture([unplugged, back], raises=0)
    calls = {"n": 0}

    def reopen_raises_twice(index, backend=None):
        calls["n"] += 1
        if calls["n"] in (2, 3):  # the first reopens after the loss: the driver raises
            raise cv2.error("VIDEOIO(V4L2): select() timeout")
        return factory(index, backend)

    monkeypatch.setattr(cv2, "VideoCapture", reopen_raises_twice)
    pipeline = LivePipeline(CameraSource(0, retry_s=0.05, retry_max_s=0.1), inspector, watch=FAST)
    rec = Recorder(pipeline)
    pipeline.start()
    try:
        wait_for(lambda: any(r.frame.index > 8 for r in rec.results), timeout=10)
    finally:
        assert pipeline.stop()
    assert calls["n"] >= 4 and rec.seen(SourceState.LOST) and not rec.finished.is_set()
    assert any("could not be opened" in m for _, m, _ in rec.states)
