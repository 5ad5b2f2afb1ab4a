"""What the live line does with a misbehaving camera (issue 19, finding 4): a frozen sensor, a read that
blocks, a 2-channel frame. Run from a checkout's root: `PYTHONPATH=$PWD python scripts/camera_trust_probe.py`;
point PYTHONPATH at an older checkout (with this repo's tests/ beside the script) to compare."""

import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from camera_fakes import FakeCapture, FrozenCamera, fake_video_capture, noisy, StallingCamera
from station.core.dataset import load_dataset
from station.core.grid import CellGrid
from station.core.training import train_recipe
from station.core.inspector import Inspector
from station.core.live import LivePipeline
from station.core.sources import CameraSource
from synthetic import write_dataset

root = Path(tempfile.mkdtemp())
write_dataset(root / "train", {"good": 30, "pushed": 8, "tilted": 8, "missing": 8}, seed=1)
write_dataset(root / "test", {"good": 4}, seed=2)
recipe, _ = train_recipe(load_dataset(root, "train"), "rt", CellGrid(3, 9), "x")
insp = Inspector(recipe)
from station.core.imageio import read_image
good = read_image(sorted((root / "test" / "good").glob("*.png"))[0])
# frozen
cam = FrozenCamera(good, fresh=4, frozen_s=1.0, fps=50); p = LivePipeline(cam, insp); got = []
p.result_ready.connect(got.append); p.start(); time.sleep(1.6); p.stop()
print("frozen: repeats delivered", cam.repeats, "repeats inspected", sum(r.frame.name.startswith("frozen") for r in got))
# stalled
cam = StallingCamera(good, fps=50); p = LivePipeline(cam, insp); st = []
p.state_changed.connect(lambda s, m: st.append(s.value)); p.start(); time.sleep(0.5); cam.hold.set(); time.sleep(2.0)
print("blocked 2 s: pipeline state", p.state.value, "states seen", sorted(set(st))); cam.release.set(); p.stop()
# bad frame
bgr = cv2.cvtColor(good, cv2.COLOR_RGB2BGR)
frames = lambda i: np.zeros((48, 64, 2), np.uint8) if i == 3 else noisy(bgr, i)
cv2.VideoCapture = fake_video_capture([FakeCapture(frames, fps=30)])
p = LivePipeline(CameraSource(0), insp); fin = threading.Event(); p.finished.connect(fin.set); got = []
p.result_ready.connect(got.append); p.start(); fin.wait(3); p.stop()
print("2-channel frame: finished", fin.is_set(), "state", p.state.value, p.message[:80], "results", len(got))
