"""Save screenshots of the engineer's workbench: the threshold tuner, the dataset browser and the training view.

    python scripts/workbench_screenshots.py [--out docs/screenshots] [--epochs 12]

Runs offscreen where there is no display, in a throw-away workbench folder. It does what an engineer
does: sets a PIN, captures labelled frames from the demo line, trains the ViT for a few epochs (curves
and attention strip), scores the demo test set and places the review threshold for a 5 % target
escape rate; then it grabs each tab.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--frames", type=int, default=48, help="frames captured from the demo line")
    p.add_argument("--epochs", type=int, default=12, help="ViT epochs for the training view")
    p.add_argument("--size", default="1400x860")
    args = p.parse_args(argv)
    os.environ.setdefault("STATION_CONFIG_DIR", tempfile.mkdtemp(prefix="station-shots-config-"))

    from station.core.dataset import load_dataset
    from station.core.resources import demo_split
    from station.core.settings import StationSettings
    from station.ui.app import create_window
    from station.ui.bench import offscreen_app
    from station.ui.workbench import install_workbench

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = Path(demo_split("test"))
    cells = {i["file"]: i.get("cell") for i in json.loads((demo / "manifest.json").read_text())["images"]}

    def pump(seconds: float = 0.0, until=None, timeout: float = 600.0) -> None:
        end = time.monotonic() + (timeout if until else seconds)
        while time.monotonic() < end:
            app.processEvents()
            if until is not None and until():
                return
            time.sleep(0.01)
        if until is not None:
            raise TimeoutError("the workbench did not get there in time")

    root = Path(tempfile.mkdtemp(prefix="station-shots-workbench-"))
    window = create_window(f"demo:{demo}", None, StationSettings(demo_fps=20), save_settings=False)
    menu = install_workbench(window, root=root, validation=demo)
    window.show()
    wb, ui, capture = menu.workbench, menu.window, menu.capture
    wb.session.set_pin("2468")
    wb.unlock("2468")
    w, h = (int(v) for v in args.size.split("x"))
    ui.resize(w, h)
    ui.show()

    # capture labelled frames from the line (the demo frame's folder is its class; the manifest has the cell)
    seen: set[str] = set()
    while len(seen) < args.frames:
        pump(until=lambda: capture.current is not None and capture.current.frame.name not in seen, timeout=30)
        item = capture.current
        seen.add(item.frame.name)
        cell = cells.get(item.frame.name)
        capture.mark_cell(tuple(cell) if cell else None)
        capture.capture_current(item.frame.name.split("/")[0])
        wb.touch()
    capture.wait_idle()
    pump(0.5)
    ui.tabs.setCurrentWidget(ui.tabs.widget(0))
    ui.browser.counts.selectRow(0)
    pump(0.3)
    defects = [i for i in range(ui.browser.thumbs.count()) if "cell" in ui.browser.thumbs.item(i).text()]
    ui.browser.thumbs.setCurrentRow(defects[0] if defects else 0)  # the preview, with the labelled cell
    pump(0.5)
    shots = [("workbench-dataset-browser.png", 0)]
    ui.grab().save(str(out / shots[0][0]))

    # a short ViT run: curves and the attention strip fill as it trains, while the line keeps running
    ui.tabs.setCurrentWidget(ui.training)
    ui.training.include_original.setChecked(False)
    ui.training.engine.setCurrentIndex(ui.training.engine.findData("vit"))
    ui.training.epochs.setValue(args.epochs)
    ui.training.start()
    pump(until=lambda: ui.training.job is None, timeout=900)
    pump(0.5)
    ui.grab().save(str(out / "workbench-training.png"))

    # the tuner on the demo test set with the recipe the line runs (the candidate is set aside for this)
    wb.set_candidate(None)
    ui.tabs.setCurrentWidget(ui.tuner)
    ui.tuner.score(load_dataset(demo, "test").sample_per_class(30, seed=1))
    pump(until=lambda: ui.tuner.job is None, timeout=300)
    ui.tuner.target.setValue(5.0)
    ui.tuner.on_upper.setChecked(False)
    ui.tuner.place_from_target()
    pump(0.5)
    ui.grab().save(str(out / "workbench-tuner.png"))
    for name in ("workbench-dataset-browser.png", "workbench-training.png", "workbench-tuner.png"):
        print(out / name)
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
