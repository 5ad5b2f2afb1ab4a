"""Save screenshots of the Teach dialog on the bundled demo's good images: the proposal as it comes, and the
same after the engineer's correction (grid and region as an engineer sets them on the golden image) with
the check on the other good images.

    python scripts/teach_screenshots.py [--out docs/screenshots] [--count 12]

Runs offscreen where there is no display, in a throw-away workbench folder, with engineer mode unlocked.
The golden image is one of the good images picked as a file (`--golden`), so that the region the engineer
drew by eye on it (`--roi`, as `station teach --roi` takes it) fits whatever the proposal does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--count", type=int, default=12, help="good images of the demo's training split to teach on")
    p.add_argument("--grid", default="3x9", help="the grid the engineer sets for the second screenshot")
    p.add_argument("--golden", default="good_00008.png", help="the good image taught on (a file of the demo)")
    p.add_argument("--roi", default="86,22,72,200,-5",
                   help="x,y,w,h,angle_deg: the region the engineer sets on the golden image, px")
    p.add_argument("--size", default="1400x940")
    args = p.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("STATION_CONFIG_DIR", tempfile.mkdtemp(prefix="station-shots-config-"))
    from PySide6.QtCore import QObject, Signal, qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    from station.core.grid import CellGrid
    from station.core.imageio import is_image_file, read_image
    from station.core.resources import demo_split
    from station.ui.bench import _quiet_offscreen
    from station.ui.workbench.teach_dialog import TeachDialog
    from station.ui.workbench.workbench import Workbench

    class Line(QObject):  # the dialog needs the workbench (role, audit), not a running line
        results_ready = Signal(list)
        recipe_changed = Signal()
        recipe = None

    qInstallMessageHandler(_quiet_offscreen)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(demo_split("train")) / "good"
    goods = [read_image(f) for f in sorted(f for f in folder.iterdir() if is_image_file(f))[:args.count]]
    grid = CellGrid.parse(args.grid)
    x, y, rw, rh, angle = (float(v) for v in args.roi.split(","))
    golden = read_image(folder / args.golden)

    done = {"n": 0}

    def count() -> None:
        done["n"] += 1

    def pump(until=None, seconds: float = 120.0) -> None:
        """Run the event loop until `until()` holds (or for `seconds` when there is nothing to wait for)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            if until is not None and until():
                return
            time.sleep(0.01)
        if until is not None:
            raise TimeoutError("the Teach dialog did not get there in time")

    root = Path(tempfile.mkdtemp(prefix="station-shots-teach-"))
    line = Line()
    workbench = Workbench(line, root=root)
    workbench.session.set_pin("2468")
    workbench.unlock("2468")
    dialog = TeachDialog(workbench, goods, golden=golden, golden_name=f"image {args.golden}",
                         out_dir=root / "setups" / "connector")
    w, h = (int(v) for v in args.size.split("x"))
    dialog.resize(w, h)
    for signal in (dialog.proposed, dialog.checked, dialog.failed):
        signal.connect(count)
    dialog.show()
    pump(lambda: done["n"] >= 1)
    pump(seconds=0.3)
    dialog.grab().save(str(out / "teach_dialog.png"))
    print(out / "teach_dialog.png", f"proposal {dialog.cols.value()}x{dialog.rows.value()}", dialog.roi)

    # the engineer sets the grid and the region, and checks them on the other good images
    dialog.cols.setValue(grid.cols)
    dialog.rows.setValue(grid.rows)
    for spin, value in ((dialog.width_px, rw), (dialog.height_px, rh), (dialog.cx, x + rw / 2),
                        (dialog.cy, y + rh / 2), (dialog.angle, angle), (dialog.lean, 0.0)):
        spin.setValue(value)
    dialog.check()
    pump(lambda: done["n"] >= 2)
    pump(seconds=0.3)
    dialog.grab().save(str(out / "teach_dialog_edited.png"))
    print(out / "teach_dialog_edited.png", dialog.roi, dialog.strip_status.text())
    dialog.close()
    workbench.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
