"""Save screenshots of the Teach dialog as an engineer teaches the bundled demo's connector from its training
dataset folder (resources/demo/train): the proposal the station makes there (the good images give the region,
the labelled defect cells of the manifest place the grid) checked on good images, and the same proposal after
the engineer's edit with the mouse, checked again. The camera looks at the part at a slant: the rows of pins
get further apart towards its near (bottom) end, which evenly spaced rows cannot follow, and the far (top)
pins sit low in their cells; the engineer drags the region's top side down onto them (the bottom side stays,
the row pitch follows).

    python scripts/teach_screenshots.py [--out docs/screenshots] [--data resources/demo/train]

Runs offscreen where there is no display, in a throw-away workbench folder, with engineer mode unlocked.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--data", default=None, help="the dataset folder taught from (default: the demo's training set)")
    p.add_argument("--drag", type=float, default=8.0,
                   help="how far the engineer drags the region's top side down, in px of the view on screen")
    p.add_argument("--size", default="1400x940")
    args = p.parse_args(argv)
    os.environ.setdefault("STATION_CONFIG_DIR", tempfile.mkdtemp(prefix="station-shots-config-"))
    from PySide6.QtCore import QObject, QPoint, QPointF, Qt, Signal
    from PySide6.QtTest import QTest

    from station.core.resources import demo_split
    from station.ui.bench import offscreen_app
    from station.ui.workbench.teach_dialog import TeachDialog
    from station.ui.workbench.workbench import Workbench

    class Line(QObject):  # the dialog needs the workbench (role, audit), not a running line
        results_ready = Signal(list)
        recipe_changed = Signal()
        recipe = None

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else Path(demo_split("train"))
    if data.resolve().is_relative_to(Path.cwd()):  # the dialog shows the folder: as the README names it
        data = data.resolve().relative_to(Path.cwd())

    state = {"step": 0, "failed": ""}

    def step() -> None:
        state["step"] += 1

    def failed(message: str) -> None:
        state["failed"] = message

    def pump(until=None, seconds: float = 300.0) -> None:
        """Run the event loop until `until()` holds (or for `seconds` when there is nothing to wait for)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            if state["failed"]:
                raise SystemExit(f"the Teach dialog failed: {state['failed']}")
            if until is not None and until():
                return
            time.sleep(0.01)
        if until is not None:
            raise TimeoutError("the Teach dialog did not get there in time")

    def check_and_save(name: str) -> None:
        """Press "Check on good images" as the engineer does, wait for the check, save the dialog."""
        wanted = state["step"] + 1
        dialog.check_button.click()
        pump(lambda: state["step"] >= wanted)
        pump(seconds=0.3)
        dialog.grab().save(str(out / name))
        print(out / name, f"{dialog.cols.value()}x{dialog.rows.value()}", dialog.roi, dialog.strip_status.text())

    root = Path(tempfile.mkdtemp(prefix="station-shots-teach-"))
    line = Line()
    workbench = Workbench(line, root=root)
    workbench.session.set_pin("2468")
    workbench.unlock("2468")
    dialog = TeachDialog(workbench, data, out_dir=root / "setups" / "connector")
    w, h = (int(v) for v in args.size.split("x"))
    dialog.resize(w, h)
    for signal in (dialog.proposed, dialog.checked):
        signal.connect(step)
    dialog.failed.connect(failed)
    dialog.show()
    pump(lambda: state["step"] >= 1)
    pump(seconds=0.3)
    print("proposal:", dialog.notes.text())
    check_and_save("teach_dialog.png")

    # the engineer drags the region's top side down with the mouse, grabbing it over the first column
    editor, roi = dialog.editor, dialog.roi
    top_left, top_right = roi.corners()[:2]
    start = editor.to_view(top_left + (top_right - top_left) / (2 * dialog.cols.value())).toPoint()
    end = (QPointF(start) + QPointF(0.0, args.drag)).toPoint()
    if editor.hit(QPointF(start)) != ("row", 0):
        raise SystemExit(f"the press on the top side grabs {editor.hit(QPointF(start))}, not the side")
    QTest.mousePress(editor, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(editor, QPoint(round(start.x() + t * (end.x() - start.x())),
                                       round(start.y() + t * (end.y() - start.y()))))
    QTest.mouseRelease(editor, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    pump(seconds=0.2)
    check_and_save("teach_dialog_edited.png")
    dialog.close()
    workbench.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
