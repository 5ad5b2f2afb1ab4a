"""Sources: a missing camera is a state, not an exception; files and folders give every frame."""

import time

import cv2
import numpy as np
import pytest

from station.core.errors import SourceError
from station.core.sources import CameraSource, DemoLineSource, FolderSource, SourceState, VideoSource, make_source


def test_missing_camera_is_a_state_and_is_retried():
    cam = CameraSource(97, retry_s=0.05)
    cam.open()
    assert cam.state is SourceState.LOST and "not found" in cam.message
    t0 = time.monotonic()
    tries = 0
    while time.monotonic() - t0 < 0.3:
        assert cam.read() is None  # never raises
        tries += 1
    assert cam.state is SourceState.LOST
    cam.close()
    assert cam.state is SourceState.CLOSED


def test_video_file_gives_every_frame_then_ends(tmp_path):
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    with make_source(str(path)) as src:
        assert isinstance(src, VideoSource)
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert len(frames) == 5 and frames[0].image.shape == (48, 64, 3)
    assert src.state is SourceState.CLOSED


def test_corrupt_video_is_refused(tmp_path):
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open"):
        VideoSource(path).open()


def test_folder_with_a_corrupt_file_reads_the_rest(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 20, 3), 50, np.uint8))  # 16 px a side at least
    (tmp_path / "1.png").write_bytes(b"broken")
    src = FolderSource(tmp_path)
    src.open()
    frames = [src.read() for _ in range(3)]
    assert src.read() is None and src.state is SourceState.ENDED
    assert [f.error != "" for f in frames] == [False, True, False]
    assert "corrupt" in frames[1].error and frames[1].image is None


def test_demo_line_paces_like_a_camera(synthetic_data):
    src = DemoLineSource(synthetic_data / "test", fps=50)
    src.open()
    t0 = time.perf_counter()
    for _ in range(11):
        assert src.read().image is not None
    elapsed = time.perf_counter() - t0
    assert elapsed >= 10 / 50 * 0.9  # ten intervals at 50 fps, never faster than the set rate
    assert src.live


def test_make_source_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        make_source(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SourceError, match="neither"):
        make_source(str(tmp_path / "notes.txt"))
    assert isinstance(make_source("camera:3"), CameraSource)
