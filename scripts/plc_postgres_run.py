"""The PLC simulator's run against PostgreSQL: starts a throwaway PostgreSQL server on loopback the way the
tests do (tests/postgres_server.py: initdb and pg_ctl, as the `postgres` user when root), makes an empty
database, and runs scripts/plc_simulator.py with `--db` on it; then stops the server and removes its files.

    PYTHONPATH=. python scripts/plc_postgres_run.py --minutes 10

Prints the simulator's JSON (rows, part IDs, duplicates, trigger-to-result latency) and exits with its code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres_server import PostgresServer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--reconnect-every", type=float, default=30.0)
    args = p.parse_args(argv)
    server = PostgresServer()
    try:
        url = server.new_database()
        with tempfile.TemporaryDirectory(prefix="plc-pg-") as out:
            run = subprocess.run([sys.executable, str(ROOT / "scripts" / "plc_simulator.py"), "--minutes",
                                  str(args.minutes), "--reconnect-every", str(args.reconnect_every), "--db", url,
                                  "--out", out], check=False)
        return run.returncode
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
