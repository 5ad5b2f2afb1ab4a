"""Commit latency of the result log: from `ResultStore.add()` to the row committed (WAL, synchronous=NORMAL),
i.e. how long a verdict waits before it may be told to the line. Prints one JSON object.

    PYTHONPATH=. python scripts/bench_commit.py --rate 30 --seconds 20 --archive ng --size 1024
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.core.inspector import InspectionResult  # noqa: E402
from station.core.results import ResultStore  # noqa: E402
from station.core.verdict import Verdict  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=30.0, help="results per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--archive", choices=("none", "ng", "all"), default="ng")
    p.add_argument("--ng-every", type=int, default=20, help="one NG in N results (5 %% by default)")
    p.add_argument("--size", type=int, default=1024, help="frame size in px (square, RGB)")
    p.add_argument("--folder", help="where the database goes (default: a temporary folder)")
    args = p.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-commit-"))
    store = ResultStore(f"sqlite:///{folder / 'results.db'}", archive_dir=folder / "archive", archive=args.archive)
    frame = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    tickets, t0, i = [], time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        verdict = Verdict.NG if i % args.ng_every == 0 else Verdict.OK
        result = InspectionResult(verdict, "defect" if verdict is Verdict.NG else "good", 1.0, None, None,
                                  {"engine": 1.0}, "sha256:bench")
        tickets.append(store.add(result, f"{i}.png", frame))
        i += 1
        time.sleep(max(0.0, t0 + i / args.rate - time.perf_counter()))
    all_logged = all(t.wait(10) for t in tickets)
    lat = np.array([(t.done_at - t.added_at) * 1e3 for t in tickets if t.done_at is not None])
    ng = np.array([(t.done_at - t.added_at) * 1e3 for t in tickets if t.done_at is not None and t.verdict == "NG"])
    store.close()
    print(json.dumps({
        "results": len(tickets), "all_logged": all_logged, "rate_per_s": args.rate, "archive": args.archive,
        "frame_px": args.size, "commit_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "commit_ms_p95": round(float(np.percentile(lat, 95)), 2), "commit_ms_max": round(float(lat.max()), 2),
        "ng_commit_ms_p50": round(float(np.percentile(ng, 50)), 2) if ng.size else None,
        "ng_commit_ms_p95": round(float(np.percentile(ng, 95)), 2) if ng.size else None}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
