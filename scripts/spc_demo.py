"""Per-pin SPC on the demo line, measured: false alarms on good parts, and how early a drifting pin is flagged.

1. Quiet line: the cell scores of the bundled good demo test images (the rt recipe), replayed in random
   order as the demo line does, through the default SPC settings: drift alarms per good part.
2. Drifting pin: the demo line's good parts with one pin fading a little more each part
   (station/core/drift_source.py), inspected and logged to a result database (SQLite, or --db URL):
   the part at which the pin's drift alarm is raised, and the first part judged not OK at that pin.
3. With --report: the shift report of that run (HTML and PDF) and a CSV export, using a recipe version store
   where the recipe is published with its escape rate measured on the demo test set.

    PYTHONPATH=. python scripts/spc_demo.py --out out/spc [--report] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.core.drift_source import DriftingPinSource  # noqa: E402
from station.core.imageio import read_image  # noqa: E402
from station.core.inspector import Inspector  # noqa: E402
from station.core.recipe import Recipe  # noqa: E402
from station.core.resources import bundled_recipe, demo_split  # noqa: E402
from station.core.results import ResultStore  # noqa: E402
from station.core.spc import PinSpc, SpcSettings  # noqa: E402


def quiet_line(inspector: Inspector, parts: int, runs: int) -> dict:
    files = sorted((demo_split("test") / "good").glob("*.png"))
    cells = [inspector.inspect(read_image(p)).cell_scores for p in files]
    alarms = 0
    for seed in range(runs):
        rng = random.Random(seed)
        spc = PinSpc(history=0)
        for _ in range(SpcSettings().baseline_parts + parts):
            spc.add(cells[rng.randrange(len(cells))], ok=True)
        alarms += len(spc.alarms)
    return {"good_images": len(files), "runs": runs, "parts_per_run": parts, "false_alarms": alarms}


def drifting_line(recipe: Recipe, url: str, cell: tuple[int, int], start: int, ramp: int, parts: int) -> dict:
    inspector = Inspector(recipe)
    source = DriftingPinSource(recipe, cell=cell, start=start, ramp=ramp)
    source.open()
    store = ResultStore(url, station="demo-line")
    spc = PinSpc()
    alarm, first_bad, other_bad = None, None, 0
    t0 = time.perf_counter()
    for i in range(parts):
        frame = source.read()
        result = inspector.inspect(frame.image)
        store.add(result, frame.name, source=recipe.name)
        raised = spc.add(result.cell_scores, result.verdict.value == "OK")
        if alarm is None:
            alarm = next((a for a in raised if a.cell == cell), None)
        if result.verdict.value != "OK":
            if result.top_cell == cell and first_bad is None:
                first_bad = {"part": i, "verdict": result.verdict.value, "fade": round(source.weight(i), 3)}
            elif result.top_cell != cell:
                other_bad += 1
    if not store.close():
        raise SystemExit(f"the result log lost rows: {store.close_message}")
    return {"parts": parts, "drift_starts_at_part": start, "fully_faded_at_part": start + ramp, "cell": list(cell),
            "alarm_part": None if alarm is None else alarm.part,
            "alarm_fade": None if alarm is None else round(source.weight(alarm.part), 3),
            "first_not_ok_at_pin": first_bad, "other_alarms": [a.describe() for a in spc.alarms if a.cell != cell],
            "not_ok_elsewhere": other_bad, "seconds": round(time.perf_counter() - t0, 1), "rows_written": store.written}


def publish_with_metrics(recipe: Recipe, root: Path) -> str:
    """The recipe in a version store with its escape rate measured on the demo test set (what the tuner does)."""
    from station.core.dataset import load_dataset
    from station.core.workbench.tuner import score_dataset
    from station.core.workbench.versions import VersionStore

    scored = score_dataset(recipe, load_dataset(demo_split("test").parent, "test"))
    summary = scored.summary(*recipe.thresholds)
    metrics = {k: summary.get(k) for k in ("escape_rate", "escape_rate_upper", "false_reject_rate", "n_defect",
                                           "n_good", "n_escapes")}
    info = VersionStore(root, create=True).save(recipe, actor={"role": "engineer", "user": "spc-demo"},
                                                note="bundled rt recipe, metrics on the demo test set",
                                                metrics=metrics)
    return f"{info.name} {info.content_hash[:19]} escape upper bound {metrics['escape_rate_upper']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/spc")
    ap.add_argument("--db", help="result database URL (default: OUT/results.db, made fresh)")
    ap.add_argument("--parts", type=int, default=900)
    ap.add_argument("--start", type=int, default=300)
    ap.add_argument("--ramp", type=int, default=400)
    ap.add_argument("--quiet-parts", type=int, default=5000)
    ap.add_argument("--quiet-runs", type=int, default=4)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = Recipe.load(bundled_recipe("rt"))
    db = out / "results.db"
    if not args.db and db.exists():
        raise SystemExit(f"{db} exists: remove it or choose another --out")
    url = args.db or f"sqlite:///{db}"
    figures = {"recipe": recipe.name, "spc": SpcSettings().__dict__,
               "quiet": quiet_line(Inspector(recipe), args.quiet_parts, args.quiet_runs),
               "drift": drifting_line(recipe, url, (1, 4), args.start, args.ramp, args.parts)}
    if args.report:
        figures["published"] = publish_with_metrics(recipe, out / "versions")
        from station.report_cli import _qt_app
        from station.core.report import build_report, parse_when, write_csv, write_html
        from station.ui.report_pdf import write_pdf

        since, until = parse_when("1d"), parse_when("0m")
        report = build_report(url, since, until, out / "versions")
        write_html(report, out / "shift_report.html")
        app = _qt_app()  # noqa: F841
        write_pdf(report, out / "shift_report.pdf")
        figures["report"] = {"parts": report.total, "yield_pct": report.yield_pct,
                             "csv_rows": write_csv(url, since, until, out / "results.csv"),
                             "alarms": [a.describe() for a in report.spc.alarms] if report.spc else []}
    print(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
