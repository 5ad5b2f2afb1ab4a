"""The result log's table and database setup: one row per inspection, SQLite in WAL mode, and text that
always encodes (a file name from the disk may carry bytes that are not UTF-8). The table changes only with a
migration (station/migrations); station.core.database runs them when a database is opened."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np

from sqlalchemy import DateTime, Float, Index, Integer, String, Text, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

logger = logging.getLogger(__name__)

#: maximum characters stored per text column (the column sizes below)
LIMITS = {"station": 100, "frame": 500, "verdict": 10, "label": 100, "top_cell": 20, "recipe_name": 200,
          "recipe_hash": 80, "image_path": 500, "uid": 32, "part_id": 64, "cell_scores": 10000}


class Base(DeclarativeBase):
    pass


class InspectionRow(Base):
    __tablename__ = "inspections"
    __table_args__ = (Index("ix_inspections_uid", "uid", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: rows of older stations
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    station: Mapped[str] = mapped_column(String(100))
    frame: Mapped[str] = mapped_column(String(500))
    verdict: Mapped[str] = mapped_column(String(10), index=True)
    label: Mapped[str] = mapped_column(String(100))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    top_cell: Mapped[str | None] = mapped_column(String(20), nullable=True)
    recipe_name: Mapped[str] = mapped_column(String(200))
    recipe_hash: Mapped[str] = mapped_column(String(80), index=True)
    timings: Mapped[str] = mapped_column(Text)
    image_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cell_scores: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON rows x cols; None: not kept
    # the part (station/core/trigger.py): the PLC's ID or a counted one, and when it was triggered
    part_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    trigger_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def safe_text(value: str, limit: int | None = None) -> str:
    """`value` as text every database can store: bytes that were not UTF-8 (the surrogate escapes of
    os.fsdecode) come back as `\\xNN`, other lone surrogates as `\\udNNN`, NUL as `\\x00`."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
        clean = raw.decode("utf-8", "backslashreplace")
    except UnicodeError:  # a surrogate that no file name made (e.g. \ud800)
        clean = value.encode("utf-8", "backslashreplace").decode("utf-8")
    clean = clean.replace("\x00", "\\x00")
    return clean if limit is None else clean[:limit]


def use_wal(engine: Engine) -> None:
    """Every SQLite connection in WAL mode with synchronous=NORMAL: the mode SQLite's documentation
    recommends with WAL (a commit survives a crash of the station; only a power loss may roll back the
    last commits, and the database is never corrupted)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
        finally:
            cursor.close()


def cell_scores_json(cells: np.ndarray | None) -> str | None:
    """Per-cell scores as JSON rows (4 significant digits; null for a score that is not finite), or None for
    no cells or a grid too large to keep in every row."""
    if cells is None:
        return None
    import json

    cells = np.asarray(cells, dtype=float)
    if cells.ndim != 2 or cells.size > 1024:
        return None
    text = json.dumps([[float(f"{v:.4g}") if np.isfinite(v) else None for v in row] for row in cells],
                      separators=(",", ":"))
    return text if len(text) <= LIMITS["cell_scores"] else None


def timings_json(timings: dict[str, float]) -> str:
    import json

    return json.dumps({str(k): round(float(v), 3) for k, v in timings.items() if np.isfinite(v)})


def note_on(message: str, note: str) -> str:
    return f"{message}; {note}" if message else note
