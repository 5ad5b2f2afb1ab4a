"""A real full disk under the result log: a small tmpfs holds the database, the spool and the archive; a
filler file takes the space, the line keeps adding results (all images archived), then the filler goes.
Measures how soon the failure is shown with its cause, memory while it lasts, and the recovery (every
result that was not counted lost is in the database afterwards). Needs root for `mount -t tmpfs`.

    sudo PYTHONPATH=. python scripts/disk_full.py --size-mb 8 --full-s 10
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.core.inspector import InspectionResult  # noqa: E402
from station.core.live_measure import rss_mb  # noqa: E402
from station.core.results import ResultStore  # noqa: E402
from station.core.verdict import Verdict  # noqa: E402


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run(mount: Path, args) -> dict:
    store = ResultStore(f"sqlite:///{mount / 'results.db'}", archive_dir=mount / "archive", archive="all",
                        spool_path=mount / "results-spool.jsonl")
    frame = np.random.default_rng(0).integers(0, 255, (args.px, args.px, 3), dtype=np.uint8)
    result = InspectionResult(Verdict.NG, "defect", 1.0, None, None, {"engine": 1.0}, "sha256:diskfull")
    filler = mount / "filler.bin"
    with open(filler, "wb") as f:  # leave about 1 MB: a few seconds of results
        f.write(b"\0" * max(0, _free(mount) - (1 << 20)))
    tickets, rss, t0 = [], [], time.perf_counter()
    full_at = shown_at = freed_at = recovered_at = shown_clock = first_failed = None
    rss_before = rss_mb()[0]
    i = 0
    while freed_at is None:  # the line runs until the disk has been full for --full-s seconds
        now = time.perf_counter() - t0
        tickets.append(store.add(result, f"{i}.png", frame))
        i += 1
        if full_at is None and _free(mount) < 64 * 1024:
            full_at = now
        if first_failed is None:  # the first result whose row did not go straight into the database
            first_failed = next((t for t in tickets[-60:] if t.state in ("spooled", "held", "lost")), None)
        if shown_at is None and "disk full" in store.problem:
            shown_at, shown_clock = now, time.perf_counter()
        if full_at is not None:
            rss.append(rss_mb()[0])
            if now - full_at >= args.full_s:
                filler.unlink()  # space returns
                freed_at = now
        time.sleep(max(0.0, t0 + i / args.rate - time.perf_counter()))
    problem_seen = store.problem
    # what was held in memory and spooled must now reach the database, and the next image the archive
    while time.perf_counter() - t0 - freed_at < 30:
        if not store.failing and store.pending == 0 and store.spooled == 0:
            recovered_at = time.perf_counter() - t0
            break
        time.sleep(0.01)
    tickets.append(store.add(result, "after.png", frame))
    tickets[-1].wait(5)
    deadline = time.perf_counter() + 5
    while store.problem and time.perf_counter() < deadline:
        time.sleep(0.01)
    problem_after = store.problem
    store.close()
    conn = sqlite3.connect(mount / "results.db")
    uids = {r[0] for r in conn.execute("SELECT uid FROM inspections")}
    conn.close()
    kept = [t for t in tickets if t.state != "lost"]
    return {"results": len(tickets), "rate_per_s": args.rate, "frame_px": args.px, "tmpfs_mb": args.size_mb,
            "disk_full_at_s": None if full_at is None else round(full_at, 2),
            "disk_full_shown_s_after_first_row_missed_db": None if first_failed is None or shown_clock is None
            else round(shown_clock - first_failed.added_at, 3),
            "rss_mb_before": round(rss_before, 1), "rss_mb_while_full_min_max": [round(min(rss), 1), round(max(rss), 1)]
            if rss else None, "recovered_after_space_returned_s": None if recovered_at is None
            else round(recovered_at - freed_at, 3), "lost": store.lost, "images_not_archived": store.images_dropped,
            "results_not_lost_missing_from_db": sum(t.uid not in uids for t in kept), "problem_while_full": problem_seen,
            "problem_after_recovery": problem_after}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=8)
    p.add_argument("--full-s", type=float, default=10.0, help="how long the disk stays full")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--px", type=int, default=256, help="frame size (images are archived: all)")
    args = p.parse_args()
    mount = Path(tempfile.mkdtemp(prefix="station-diskfull-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        print(f"disk_full: cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})", file=sys.stderr)
        return 2
    try:
        print(json.dumps(run(mount, args), indent=1))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
