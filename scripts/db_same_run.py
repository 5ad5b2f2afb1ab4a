"""The same demo-line run logged to SQLite and to PostgreSQL: the row counts and the rows must be equal.

Starts a throw-away PostgreSQL server on loopback (tests/postgres_server.py: Debian's postgresql binaries, run
as the postgres user when this runs as root), runs the drifting-pin demo line (scripts/spc_demo.py) into a
fresh SQLite file and into a fresh PostgreSQL database, and compares what each database holds.

    PYTHONPATH=. python scripts/db_same_run.py [--parts 900]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

from postgres_server import PostgresServer  # noqa: E402
from spc_demo import drifting_line  # noqa: E402
from sqlalchemy import create_engine, select  # noqa: E402

from station.core.database import engine_url  # noqa: E402
from station.core.recipe import Recipe  # noqa: E402
from station.core.resources import bundled_recipe  # noqa: E402
from station.core.result_rows import InspectionRow  # noqa: E402

COLUMNS = ("frame", "verdict", "label", "score", "top_cell", "recipe_name", "recipe_hash", "cell_scores")


def rows(url: str) -> list[tuple]:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(*[getattr(InspectionRow, c) for c in COLUMNS])
                                                    .order_by(InspectionRow.id))]
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=900)
    args = ap.parse_args()
    recipe = Recipe.load(bundled_recipe("rt"))
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='station-same-run-')) / 'results.db'}"
    server = PostgresServer()
    try:
        pg_url = server.new_database()
        runs = {name: drifting_line(recipe, url, (1, 4), 300, 400, args.parts)
                for name, url in (("sqlite", sqlite_url), ("postgresql", pg_url))}
        a, b = rows(sqlite_url), rows(pg_url)
    finally:
        server.stop()
    # the inspections are the same images in the same order: the rows may differ only if a database did
    differing = sum(x != y for x, y in zip(a, b))
    print(json.dumps({"parts": args.parts, "rows_sqlite": len(a), "rows_postgresql": len(b),
                      "rows_differing": differing + abs(len(a) - len(b)),
                      "alarm_part": {k: v["alarm_part"] for k, v in runs.items()}}, indent=1))
    return 0 if len(a) == len(b) == args.parts and not differing else 1


if __name__ == "__main__":
    sys.exit(main())
