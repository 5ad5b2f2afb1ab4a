"""Save screenshots of what the operator sees when the station stops trusting what it gets: a camera whose
driver hangs (the verdict panel goes grey, no stale OK), and a result log that cannot write (the status bar
says why in red; the verdict is marked until it is logged).

    python scripts/trust_screenshots.py [--out docs/screenshots]

Runs offscreen where there is no display, with its settings and result log in a throw-away folder. The
hanging camera is a demo image behind a read() that blocks; the full disk is simulated by making the
database and the spool raise "database or disk is full" (scripts/disk_full.py fills a real tmpfs).
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--size", default="1280x800")
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="station-trust-shots-"))
    os.environ.setdefault("STATION_CONFIG_DIR", str(scratch / "config"))
    os.environ.setdefault("STATION_DATA_DIR", str(scratch / "data"))
    from sqlalchemy.exc import OperationalError

    from station.core.imageio import read_image
    from station.core.resources import demo_split
    from station.core.settings import StationSettings
    from station.core.sources import Frame, Source, SourceState
    from station.ui.app import create_window
    from station.ui.bench import offscreen_app

    class HangingCamera(Source):
        """A live camera that sends demo images until `hang` is set; then its read() blocks in the driver."""

        live, sensor = True, True

        def __init__(self, images: list) -> None:
            super().__init__()
            self.images, self.nominal_fps, self.description = images, 10.0, "camera 0"
            self.hang, self.release = threading.Event(), threading.Event()

        def read(self) -> Frame | None:
            if self.state is SourceState.CLOSED:
                return None
            if self.hang.is_set():
                self.release.wait(60)
            time.sleep(0.1)
            image = self.images[self._index % len(self.images)]
            return self._frame(image.copy(), f"camera 0 #{self._index}")

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in args.size.split("x"))

    def pump(until, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            app.processEvents()
            if until():
                return True
            time.sleep(0.01)
        return False

    saved = []
    good = [read_image(path) for path in sorted((Path(demo_split("test")) / "good").glob("*.png"))[:8]]
    settings = StationSettings(results_db=f"sqlite:///{scratch / 'results.db'}", archive_dir=str(scratch / "archive"))
    window = create_window("demo", None, settings, save_settings=False, start=False)
    window.resize(w, h)
    window.show()
    camera = HangingCamera(good)
    store, healthy = None, ()
    window.service.set_source(camera)
    window.service.start()
    try:
        if not pump(lambda: window.verdict_panel.verdict == "OK"):
            print("no OK verdict from the camera", file=sys.stderr)
            return 1
        camera.hang.set()
        if pump(lambda: "STALLED" in window.verdict_panel.verdict_label.text()):
            pump(lambda: False, timeout=0.5)
            window.status.refresh()
            saved.append(out / "main-window-camera-stalled.png")
            window.grab().save(str(saved[-1]))
        else:
            print("the window did not show the stalled camera", file=sys.stderr)
        camera.release.set()
        camera.hang.clear()
        pump(lambda: window.verdict_panel.verdict in ("OK", "NG", "REVIEW"))

        store = window.service.results

        def full(*_args):
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

        def spool_full(_rows):
            raise OSError(errno.ENOSPC, "No space left on device")

        healthy = store._insert_rows, store.spool_append
        store._insert_rows, store.spool_append = full, spool_full  # a simulated full disk
        if pump(lambda: "held in memory" in window.verdict_panel.log_label.text()
                and not window.status.results_label.isHidden()):
            pump(lambda: False, timeout=0.5)
            saved.append(out / "main-window-log-failing.png")
            window.grab().save(str(saved[-1]))
        else:
            print("the window did not show the failing result log", file=sys.stderr)
    finally:
        camera.release.set()
        if store is not None and healthy:  # space comes back: the held rows are logged, no box at closing
            store._insert_rows, store.spool_append = healthy
        window.close()
    for path in saved:
        print(path)
    return 0 if len(saved) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
