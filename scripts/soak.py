"""Soak of the live line with the result log: the demo line inspected by each bundled engine in turn (or
those named), every result logged; reports memory growth after the first minute and dropped results
(inspected but not in the result log). One JSON object per engine, then a summary line.

    PYTHONPATH=. python scripts/soak.py --seconds 3600 --engines rt vit   # the acceptance soak (1 h each)
    PYTHONPATH=. python scripts/soak.py --seconds 90                      # a short check
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.core.inspector import Inspector  # noqa: E402
from station.core.live import LivePipeline  # noqa: E402
from station.core.live_measure import MemoryWatch  # noqa: E402
from station.core.recipe import Recipe  # noqa: E402
from station.core.resources import bundled_recipe  # noqa: E402
from station.core.results import ResultStore  # noqa: E402
from station.core.retention import RetentionPolicy  # noqa: E402
from station.core.sources import make_source  # noqa: E402


class _Tally:
    def __init__(self) -> None:
        self.results = 0
        self.lock = threading.Lock()

    def add(self, item) -> None:
        if item.result is not None:
            with self.lock:
                self.results += 1


def soak(engine: str, seconds: float, fps: float, folder: Path) -> dict:
    store = ResultStore(f"sqlite:///{folder / f'{engine}.db'}", archive_dir=folder / f"archive-{engine}",
                        archive="ng", retention=RetentionPolicy(archive_max_mb=200, min_free_mb=500))
    pipeline = LivePipeline(make_source("demo", fps=fps), Inspector(Recipe.load(bundled_recipe(engine))),
                            store=store)
    tally, memory = _Tally(), MemoryWatch()
    pipeline.result_ready.connect(tally.add)
    pipeline.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and pipeline.running:
        time.sleep(0.5)
        memory.sample(time.perf_counter() - t0)
    pipeline.stop()
    closed = store.close(timeout=10)
    conn = sqlite3.connect(folder / f"{engine}.db")
    rows = conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
    conn.close()
    mem = memory.report()
    return {"engine": engine, "seconds": round(time.perf_counter() - t0, 1), "results": tally.results,
            "rows_in_log": rows, "dropped_results": tally.results - rows, "lost": store.lost,
            "store_closed_clean": closed, "commit_latency_ms": store.commit_latency_ms(),
            "inference_fps": round(tally.results / max(time.perf_counter() - t0, 1e-9), 1),
            "rss_growth_after_60s_mb": mem["rss_growth_after_60s_mb"], "peak_rss_mb": mem["peak_rss_mb"],
            "rss_mb_at": mem["rss_mb_at"], "dropped_frames": pipeline.dropped}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3600.0, help="per engine")
    p.add_argument("--engines", nargs="+", default=["rt", "vit"])
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--folder", help="where the result logs go (default: a temporary folder)")
    args = p.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="station-soak-"))
    reports = [soak(engine, args.seconds, args.fps, folder) for engine in args.engines]
    for report in reports:
        print(json.dumps(report))
    growth = [r["rss_growth_after_60s_mb"] for r in reports]
    ok = all(r["dropped_results"] == 0 and r["lost"] == 0 for r in reports) and all(
        g is not None and g < 50 for g in growth)
    print(json.dumps({"soak_ok": ok, "max_rss_growth_after_60s_mb": max((g for g in growth if g is not None),
                                                                        default=None),
                      "dropped_results": sum(r["dropped_results"] for r in reports)}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
