"""Screenshots of the per-pin SPC view while the demo line's pin 1,4 drifts, and the pages of the shift report
(PDF) of that run, drawn to PNG to look at.

    python scripts/spc_screenshots.py [--out docs/screenshots]

The station window runs the bundled rt recipe on the demo line's good parts with pin 1,4 fading a little
more each part (station/core/drift_source.py), logging to a result database in a throw-away folder; the
SPC window is grabbed once the drift alarm has been raised and the pin has started to fail. The report
comes from that database, with the recipe published (in a throw-away version store) with its escape rate
measured on the demo test set, as the workbench's tuner does. The PDF pages are drawn with PyMuPDF
(`pip install .[docs]`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--fps", type=float, default=60.0)
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="station-spc-shots-"))
    os.environ.setdefault("STATION_CONFIG_DIR", str(scratch / "config"))
    os.environ.setdefault("STATION_DATA_DIR", str(scratch / "data"))
    import pymupdf

    from spc_demo import publish_with_metrics
    from station.core.drift_source import DriftingPinSource
    from station.core.recipe import Recipe
    from station.core.report import build_report, parse_when
    from station.core.resources import bundled_recipe
    from station.core.settings import StationSettings
    from station.ui.app import create_window
    from station.ui.bench import offscreen_app
    from station.ui.report_pdf import write_pdf

    app = offscreen_app()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def pump(until, timeout: float = 120.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            app.processEvents()
            if until():
                return True
            time.sleep(0.005)
        return False

    recipe_path = bundled_recipe("rt")
    db = scratch / "results.db"
    settings = StationSettings(results_db=f"sqlite:///{db}", archive_dir=str(scratch / "archive"))
    window = create_window("demo", str(recipe_path), settings, save_settings=False, start=False)
    window.resize(1280, 800)
    window.show()
    source = DriftingPinSource(Recipe.load(recipe_path), cell=(1, 4), start=300, ramp=400, fps=args.fps)
    window.service.set_source(source)
    window.service.start()
    window.show_spc()
    saved = []
    try:
        spc = window.spc_view
        if not pump(lambda: any(a.cell == (1, 4) for a in spc.spc.alarms)):
            print(f"no drift alarm for pin 1,4 after {spc.spc.added} parts", file=sys.stderr)
            return 1
        alarm = next(a for a in spc.spc.alarms if a.cell == (1, 4))
        # the live line drops frames it cannot keep up with: the source's own count says how far the pin faded
        print(f"drift alarm: {alarm.describe()}; the source had sent {source.part} parts, pin faded "
              f"{source.weight(source.part):.3f}")
        pump(lambda: spc.spc.added >= alarm.part + 120)  # the pin goes on drifting and starts to fail
        window.service.stop()
        spc.select((1, 4))
        spc.refresh()
        pump(lambda: False, timeout=0.5)
        saved.append(out / "spc-view-drifting-pin.png")
        spc.grab().save(str(saved[-1]))
        saved.append(out / "main-window-drift-alarm.png")
        window.grab().save(str(saved[-1]))
        pump(lambda: window.service.results.pending == 0, timeout=10)
        report = build_report(window.service.results.url, parse_when("1d"), parse_when("0m"),
                              _published(publish_with_metrics, recipe_path, scratch / "versions"))
        pdf = write_pdf(report, scratch / "shift_report.pdf")
        document = pymupdf.open(str(pdf))
        for i, page in enumerate(document):
            saved.append(out / f"shift-report-page{i + 1}.png")
            page.get_pixmap(dpi=80).save(str(saved[-1]))
        print(f"report: {report.total} parts, yield {report.yield_pct:.1f} %, {document.page_count} pages, "
              f"alarms: {[a.describe() for a in report.spc.alarms] if report.spc else []}")
    finally:
        window.close()
    for path in saved:
        print(path)
    return 0


def _published(publish, recipe_path: Path, root: Path) -> Path:
    from station.core.recipe import Recipe

    print("published:", publish(Recipe.load(recipe_path), root))
    return root


if __name__ == "__main__":
    sys.exit(main())
