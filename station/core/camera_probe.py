"""Which cameras OpenCV can open on this PC: for the source picker and `station doctor`."""

from __future__ import annotations

import glob
import sys


def probe_cameras(max_index: int = 4) -> list[int]:
    """Camera indices that open. On Linux only existing /dev/video* nodes are tried, so this is quick."""
    import cv2

    if sys.platform.startswith("linux"):
        nodes = sorted(int(p.removeprefix("/dev/video")) for p in glob.glob("/dev/video*")
                       if p.removeprefix("/dev/video").isdigit())
        candidates = [i for i in nodes if i < max_index]
    else:
        candidates = list(range(min(max_index, 3)))
    found = []
    for index in candidates:
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened():
                found.append(index)
        finally:
            cap.release()
    return found
