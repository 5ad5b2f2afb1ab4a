"""The result log: every inspection as a row (SQLAlchemy; SQLite by default, a PostgreSQL URL for a
plant), written by a writer thread from a bounded queue, with NG images archived atomically.

Nothing is dropped silently: a full queue blocks the caller briefly and then counts the row as
lost, a failed write keeps the rows for the next attempt, and both set `problem`, which the
window shows to the operator until the store is healthy again.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import DateTime, Float, Integer, String, Text, create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from station.core.errors import StationError
from station.core.imageio import write_image
from station.core.inspector import InspectionResult

ARCHIVE_CHOICES = ("none", "ng", "all")


class _Base(DeclarativeBase):
    pass


class InspectionRow(_Base):
    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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


@dataclass
class _Pending:
    row: dict
    image: np.ndarray | None


class ResultStore:
    """Rows in, written in the background; `problem` is "" while every row reaches the store."""

    def __init__(self, url: str, archive_dir: str | Path | None = None, archive: str = "ng",
                 station: str = "station", queue_size: int = 512, put_timeout_s: float = 0.2,
                 on_problem: Callable[[str], None] | None = None) -> None:
        if archive not in ARCHIVE_CHOICES:
            raise StationError(f"archive must be one of {', '.join(ARCHIVE_CHOICES)}, not {archive!r}")
        try:
            self._engine = create_engine(url)
            _Base.metadata.create_all(self._engine)
        except (SQLAlchemyError, ValueError) as exc:
            raise StationError(f"cannot open the result database {url}: {exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}") from None
        self.url, self.archive, self.station = url, archive, station
        self.archive_dir = Path(archive_dir) if archive_dir else None
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=queue_size)
        self._put_timeout = put_timeout_s
        self._on_problem = on_problem
        self._backlog: list[_Pending] = []  # rows whose write failed, retried first
        self._lock = threading.Lock()
        self.written = 0
        self.lost = 0
        self.problem = ""
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    # -- producer side (inference thread) ------------------------------------------------------
    def add(self, result: InspectionResult, frame_name: str, image: np.ndarray | None = None,
            source: str = "") -> bool:
        """Queue one result; False (and `problem` set) when the queue stayed full and it was lost."""
        row = {
            "time": datetime.now(timezone.utc), "station": self.station, "frame": frame_name[:500],
            "verdict": result.verdict.value, "label": result.label,
            "score": float(result.score) if np.isfinite(result.score) else None,
            "top_cell": None if result.top_cell is None else f"{result.top_cell[0]},{result.top_cell[1]}",
            "recipe_name": source or "", "recipe_hash": result.recipe_hash,
            "timings": json.dumps({k: round(v, 3) for k, v in result.timings_ms.items()}),
            "message": result.message,
        }
        keep = image is not None and (self.archive == "all" or (self.archive == "ng" and result.verdict.value != "OK"))
        try:
            self._queue.put(_Pending(row, image if keep else None), timeout=self._put_timeout)
            return True
        except queue.Full:
            with self._lock:
                self.lost += 1
            self._report(f"result log cannot keep up: {self.lost} results not logged")
            return False

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued and stop; False when rows could not be written (see `problem`)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._engine.dispose()
        return not self._backlog and self._queue.empty()

    def recent(self, limit: int = 100) -> list[InspectionRow]:
        with Session(self._engine) as s:
            return list(s.scalars(select(InspectionRow).order_by(InspectionRow.id.desc()).limit(limit)))

    # -- writer thread ---------------------------------------------------------------------------
    def _report(self, problem: str) -> None:
        changed = problem != self.problem
        self.problem = problem
        if changed and self._on_problem is not None:
            self._on_problem(problem)

    def _run(self) -> None:
        stopping = False
        while not (stopping and not self._backlog):
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                item = ...
            if item is None:
                stopping = True
            elif item is not ...:
                self._backlog.append(item)
                while len(self._backlog) < 64:  # write in small batches when busy
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    self._backlog.append(more)
            if self._backlog:
                if not self._write(self._backlog) and stopping:
                    return  # rows stay in the backlog; close() reports them
            elif not stopping and self.problem and not self.lost:
                self._report("")

    def _write(self, batch: list[_Pending]) -> bool:
        try:
            for item in batch:
                if item.image is not None and self.archive_dir is not None and item.row.get("image_path") is None:
                    item.row["image_path"] = str(self._archive(item))
            with Session(self._engine) as s, s.begin():
                s.add_all([InspectionRow(**item.row) for item in batch])
        except (SQLAlchemyError, OSError, StationError) as exc:
            self._report(f"results are not being logged: {str(exc).splitlines()[0]} "
                         f"({len(batch)} waiting; they are kept and retried)")
            time.sleep(0.5)
            return False
        self.written += len(batch)
        batch.clear()
        if self.problem and not self.lost:
            self._report("")
        return True

    def _archive(self, item: _Pending) -> Path:
        stamp = item.row["time"].strftime("%Y%m%d")
        folder = self.archive_dir / stamp / item.row["verdict"]
        folder.mkdir(parents=True, exist_ok=True)
        name = item.row["time"].strftime("%H%M%S_%f") + ".png"
        path = folder / name
        write_image(path, item.image)  # atomic: temporary file, then rename
        return path
