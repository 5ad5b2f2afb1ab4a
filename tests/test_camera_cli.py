"""`station inspect` does not wait for a camera for ever, takes no empty source for the demo line, and
inspects the rest of a folder around a malformed image (issue 19, findings 4 and 5)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from camera_fakes import FakeCapture, fake_video_capture, noisy
from station.cli import main
from station.core.imageio import read_image


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def last_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines and lines[-1].startswith("station: error: ") and "Traceback" not in err
    return lines[-1]


def test_a_camera_that_never_appears_ends_after_the_timeout(monkeypatch, synthetic_recipe, capsys):
    monkeypatch.setattr(cv2, "VideoCapture", fake_video_capture([FakeCapture(lambda i: None, opened=False)]))
    t0 = time.monotonic()
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", "camera:99",
                          "--frame-timeout", "0.5"], capsys)
    elapsed = time.monotonic() - t0
    assert last_line_error(code, err) == ("station: error: camera 99 did not deliver a frame within 0.5 s "
                                          "(camera 99 not found)")
    assert out == "" and elapsed < 20  # it ends, rather than waiting on: seconds apart on a loaded CI host


def test_a_camera_whose_read_blocks_ends_after_the_timeout(monkeypatch, synthetic_recipe, synthetic_data, capsys):
    bgr = cv2.cvtColor(read_image(next((synthetic_data / "test" / "good").glob("*.png"))), cv2.COLOR_RGB2BGR)
    hold, release = threading.Event(), threading.Event()
    capture = FakeCapture(lambda i: noisy(bgr, i), fps=100, hold=hold, release=release)
    monkeypatch.setattr(cv2, "VideoCapture", fake_video_capture([capture]))
    hold.set()  # the driver hangs from the first read on
    try:
        code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", "camera:0",
                              "--frame-timeout", "0.5"], capsys)
    finally:
        release.set()
    assert last_line_error(code, err) == "station: error: camera 0 did not deliver a frame within 0.5 s"


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_source_is_an_error_not_the_demo_line(synthetic_recipe, capsys, spec):
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", spec, "--max-frames", "2"], capsys)
    assert "no source given" in last_line_error(code, err) and out == ""


def test_a_malformed_image_in_a_folder_is_one_bad_line_and_the_rest_are_inspected(synthetic_recipe, synthetic_data,
                                                                                 tmp_path, capsys):
    folder = tmp_path / "f"
    shutil.copytree(synthetic_data / "test" / "good", folder)
    cv2.imwrite(str(folder / "good_0003.png"), np.full((1, 1000, 3), 90, np.uint8))
    n = len(list(folder.glob("*.png")))
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", str(folder)], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == n
    bad = [line for line in lines if line.get("error")]
    assert len(bad) == 1 and bad[0]["frame"] == "good_0003.png" and bad[0]["verdict"] is None
    assert "1000 x 1 px" in bad[0]["error"] and "\n" not in bad[0]["error"]  # refused from its header
    assert all(line["verdict"] in ("OK", "NG", "REVIEW") for line in lines if line is not bad[0])
    assert f"1 of {n}" in last_line_error(code, err)


def test_a_bad_camera_frame_is_an_ng_line(monkeypatch, synthetic_recipe, synthetic_data, capsys):
    bgr = cv2.cvtColor(read_image(next((synthetic_data / "test" / "good").glob("*.png"))), cv2.COLOR_RGB2BGR)
    frames = [noisy(bgr, 0), np.zeros((48, 64, 2), np.uint8), noisy(bgr, 2)]
    monkeypatch.setattr(cv2, "VideoCapture", fake_video_capture([FakeCapture(frames.__getitem__, fps=200)]))
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", "camera:0", "--max-frames", "3"],
                         capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert lines[1]["verdict"] == "NG" and lines[1]["class"] == "bad_frame"
    assert lines[1]["error"] == lines[1]["message"] == "bad frame: 2 channels, not 1, 3 or 4"
    assert "1 of 3" in last_line_error(code, err)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_the_frame_timeout_is_checked(synthetic_recipe, synthetic_data, capsys, timeout):
    code, out, err = run(["inspect", "--recipe", str(synthetic_recipe), "--source", str(synthetic_data / "test"),
                          "--frame-timeout", timeout], capsys)
    assert "frame timeout must be a positive number" in last_line_error(code, err) and out == ""
