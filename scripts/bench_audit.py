"""Measure the sealed audit log: ms per recorded entry (fsynced, head rewritten) and the time to verify a chain.

    python scripts/bench_audit.py [FOLDER]   (FOLDER: where to write, default a temporary folder; use the
                                               station's disk, not a tmpfs, for a true fsync cost)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=sys.argv[1] if len(sys.argv) > 1 else None))
    os.environ["STATION_KEY_DIR"] = str(base / "key")
    from station.core.workbench.audit import AuditLog

    try:
        log = AuditLog(base / "audit.jsonl")
        start = time.perf_counter()
        for i in range(2000):
            log.record({"role": "engineer", "user": "e"}, "capture", f"good/{i}.png", None, {"label": "good"})
        record_ms = (time.perf_counter() - start) / 2000 * 1000
        start = time.perf_counter()
        check = log.verify()
        verify_ms = (time.perf_counter() - start) * 1000
        print(json.dumps({"record_ms_per_entry": round(record_ms, 2), "verify_ms_2000_entries": round(verify_ms),
                          "intact": check.ok}))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
