"""The result log: every inspection as a row (SQLAlchemy; SQLite in WAL mode by default, a PostgreSQL URL
for a plant), written by a writer thread that never dies, with NG images archived atomically.

Log before you tell: `add()` gives a LogTicket, and `committed` fires (in the writer thread) with the
tickets whose rows are safe on disk: in the database, or in the spool file when the database cannot
take them (a full disk, a server that is down). Whoever tells the line (the screen's "logged" mark, a
PLC) waits for that. Rows that neither the database nor the spool can take are held in a bounded list
in memory (their images dropped first) and retried; what overflows is counted as lost and shown. Every
failure sets `problem`, a line with its cause ("disk full", "archive not writable", "database
unreachable", "name not encodable") that the window shows in red until the log is healthy again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from station.core.errors import StationError
from station.core.inspector import InspectionResult
from station.core.live import Signal
from station.core.log_ticket import LogTicket, cause_of, is_data_error
from station.core.database import open_engine
from station.core.result_archive import ImageArchive, Pending
from station.core.result_rows import LIMITS, InspectionRow, cell_scores_json, note_on, safe_text, timings_json
from station.core.retention import Retention, RetentionPolicy
from station.core.spool import Spool, encode_row

logger = logging.getLogger(__name__)

ARCHIVE_CHOICES = ("none", "ng", "all")
ON_FAILURE_CHOICES = ("stop", "continue")
__all__ = ["ARCHIVE_CHOICES", "ON_FAILURE_CHOICES", "InspectionRow", "LogTicket", "ResultStore", "cause_of"]


def shown_url(url: str) -> str:
    """The database URL as it may be shown or logged: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(an unreadable database URL)"


class ResultStore(ImageArchive):
    """Rows in, written in the background; `problem` is "" while every row reaches the database."""

    def __init__(self, url: str, archive_dir: str | Path | None = None, archive: str = "ng",
                 station: str = "station", queue_size: int = 1024, put_timeout_s: float = 0.2,
                 on_problem: Callable[[str], None] | None = None, spool_path: str | Path | None = None,
                 on_failure: str = "continue", retention: RetentionPolicy | None = None,
                 image_budget_mb: float = 256.0, memory_rows: int = 20000, retry_s: float = 1.0) -> None:
        if archive not in ARCHIVE_CHOICES:
            raise StationError(f"archive must be one of {', '.join(ARCHIVE_CHOICES)}, not {archive!r}")
        if on_failure not in ON_FAILURE_CHOICES:
            raise StationError(f"on_failure must be one of {', '.join(ON_FAILURE_CHOICES)}, not {on_failure!r}")
        try:
            self._engine = open_engine(url)  # created or migrated to this station's schema
        except ImportError as exc:  # a PostgreSQL URL without its driver installed
            raise StationError(f"cannot open the result database {shown_url(url)}: its driver is not installed "
                               f"({exc.name or exc})") from None
        except (SQLAlchemyError, ValueError, OSError) as exc:
            raise StationError(f"cannot open the result database {shown_url(url)}: {exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        self.url, self.archive, self.station, self.on_failure = url, archive, station, on_failure
        self.archive_dir = Path(archive_dir) if archive_dir else None
        if spool_path is None and self._engine.dialect.name == "sqlite":
            db = self._engine.url.database
            spool_path = Path(db).with_name(Path(db).name + ".spool.jsonl") if db and db != ":memory:" else None
        try:
            self.spool = Spool(spool_path) if spool_path else None
        except OSError as exc:
            raise StationError(f"cannot read the result spool {spool_path}: {exc.strerror or exc}") from None
        self.committed = Signal()  # list[LogTicket] whose rows are durable; emitted in the writer thread
        self.problem_changed = Signal()  # the new `problem`; emitted in whichever thread changed it
        if on_problem is not None:
            self.problem_changed.connect(on_problem)
        self.retention = Retention(retention, self._engine, self.archive_dir) if retention else None
        self._queue: queue.Queue[Pending | None] = queue.Queue(maxsize=queue_size)
        self._put_timeout = put_timeout_s
        self._held: deque[Pending] = deque()  # rows neither the database nor the spool took
        self._memory_rows, self._retry_s = memory_rows, retry_s
        self._image_budget = int(image_budget_mb * 1e6)
        self._image_bytes = 0
        self._in_flight = 0  # rows the writer took from the queue and has not settled yet
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=10000)
        self.written = 0  # rows committed to the database (by this store, spool drains included)
        self.lost = 0  # rows that could not be kept anywhere
        self.images_dropped = 0  # images not archived (archive failing or the queue's image budget spent)
        self.db_cause = ""  # why rows are not reaching the database; "" while they are
        self.archive_cause = ""
        self.disk_warning = ""
        self.writer_error = ""
        self.problem = ""
        self.close_message = ""
        self._db_retry_at = 0.0
        self._closed = False
        self._images: queue.Queue[Pending | None] = queue.Queue()  # bounded in bytes by add()
        self._archiver = threading.Thread(target=self._run_archiver, name="result-archiver", daemon=True)
        self._archiver.start()
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    # -- producer side (inference thread) ------------------------------------------------------
    def add(self, result: InspectionResult, frame_name: str, image: np.ndarray | None = None,
            source: str = "", part_id: str | None = None, trigger_time: datetime | None = None) -> LogTicket:
        """Queue one result; its ticket says when the row is safe (never blocks for long)."""
        verdict = result.verdict.value
        ticket = LogTicket(uuid.uuid4().hex, verdict)
        row = {
            "uid": ticket.uid, "time": datetime.now(timezone.utc), "station": safe_text(self.station, 100),
            "frame": safe_text(frame_name, LIMITS["frame"]), "verdict": verdict,
            "label": safe_text(result.label, LIMITS["label"]),
            "score": float(result.score) if np.isfinite(result.score) else None,
            "top_cell": None if result.top_cell is None else f"{result.top_cell[0]},{result.top_cell[1]}",
            "recipe_name": safe_text(source or "", LIMITS["recipe_name"]),
            "recipe_hash": safe_text(result.recipe_hash, LIMITS["recipe_hash"]),
            "timings": safe_text(timings_json(result.timings_ms)), "image_path": None,
            "message": safe_text(result.message), "cell_scores": cell_scores_json(result.cell_scores),
            "part_id": None if part_id is None else safe_text(str(part_id), LIMITS["part_id"]),
            "trigger_time": trigger_time,
        }
        keep = (image is not None and self.archive_dir is not None
                and (self.archive == "all" or (self.archive == "ng" and verdict != "OK")))
        if keep:
            with self._lock:
                if self._image_bytes + image.nbytes > self._image_budget:
                    keep = False
                    self.images_dropped += 1
                    row["message"] = note_on(row["message"], "image not archived: the archive cannot keep up")
                else:
                    self._image_bytes += image.nbytes
        item = Pending(row, image if keep else None, ticket)
        try:
            self._queue.put(item, timeout=self._put_timeout)
        except queue.Full:
            self._hold([item])
            self._update_problem()
        return ticket

    @property
    def pending(self) -> int:
        """Rows not yet safe on disk (queued or held in memory)."""
        with self._lock:
            return self._queue.qsize() + len(self._held) + self._in_flight

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    @property
    def spooled(self) -> int:
        return self.spool.count if self.spool is not None else 0

    @property
    def failing(self) -> bool:
        """Rows are not reaching the database (spooled, held or lost)."""
        return bool(self.db_cause)

    @property
    def hold_line(self) -> bool:
        """With on_failure="stop": inspection must wait, because results cannot be logged or keep up."""
        if self.on_failure != "stop":
            return False
        return self.failing or self.held > 0 or self._queue.qsize() >= self._queue.maxsize * 0.9

    def commit_latency_ms(self) -> dict[str, float | int | None]:
        """Median and 95th percentile of add() to durable over the last rows (ms)."""
        values = np.array(list(self._latencies))
        if not values.size:
            return {"p50": None, "p95": None, "n": 0}
        return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3),
                "n": int(values.size)}

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued and stop; False when rows could not be made safe (see close_message)."""
        if self._closed:
            return not self.close_message
        self._closed = True
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.error("result writer did not take the stop request within %.1f s", timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._images.put(None)
        self._archiver.join(max(0.5, deadline - time.monotonic()))
        if self._archiver.is_alive():
            logger.error("the image archiver did not finish in time: %d images not archived", self._images.qsize())
        unsafe = self.pending
        if self._thread.is_alive():
            self.close_message = (f"The result log did not finish in time: {unsafe} results may not have been "
                                  f"logged ({self.db_cause or 'the database is slow'}).")
        elif unsafe:
            self.close_message = (f"{unsafe} results could not be logged ({self.db_cause or 'unknown cause'}) "
                                  "and are lost.")
        if self.lost:
            self.close_message = (self.close_message + f" {self.lost} results were lost during the run.").strip()
        if self.spooled and not self.close_message:
            logger.warning("%d results wait in the spool %s; they go to the database at the next start",
                           self.spooled, self.spool.path)
        if not self._thread.is_alive() and not self._archiver.is_alive():
            self._engine.dispose()
        return not self.close_message

    def recent(self, limit: int = 100) -> list[InspectionRow]:
        with Session(self._engine) as s:
            return list(s.scalars(select(InspectionRow).order_by(InspectionRow.id.desc()).limit(limit)))

    # -- status ----------------------------------------------------------------------------------
    def _update_problem(self) -> None:
        parts = []
        if self.db_cause:
            where = [f"{self.spooled} kept in the spool file"] if self.spooled else []
            if self.held:
                where.append(f"{self.held} held in memory only")
            parts.append(f"results are not being logged ({self.db_cause})" + (": " + ", ".join(where) if where else ""))
        elif self.held:
            parts.append(f"result log cannot keep up: {self.held} results held in memory")
        if self.lost:
            parts.append(f"{self.lost} results not logged (lost)")
        if self.archive_cause:
            parts.append(f"images not archived ({self.archive_cause})")
        if self.disk_warning:
            parts.append(self.disk_warning)
        if self.writer_error:
            parts.append(f"result writer error: {self.writer_error}")
        problem = "; ".join(parts)
        if problem and self.hold_line:
            problem = "inspection stopped: " + problem
        if problem != self.problem:
            self.problem = problem
            (logger.error if problem else logger.info)("result log: %s", problem or "healthy again")
            self.problem_changed.emit(problem)

    # -- writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while True:
            try:
                stopping = self._step(stopping)
                if stopping and self._queue.empty():
                    self._finish()
                    return
            except Exception as exc:  # noqa: BLE001 - the writer never dies: log, show, carry on
                logger.exception("result writer: unexpected error; it carries on")
                self.writer_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._update_problem()
                time.sleep(0.2)

    def _step(self, stopping: bool) -> bool:
        batch: list[Pending] = []
        try:
            first = self._queue.get(timeout=0 if stopping else 0.25)
        except queue.Empty:
            first = ...
        if first is None:
            stopping = True
        elif first is not ...:
            batch.append(first)
            self._in_flight = 1
            while len(batch) < 64:  # small batches when busy
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
        if batch:
            self._in_flight = len(batch)
            try:
                self._settle_batch(batch)
            except Exception:
                self._hold([p for p in batch if not p.ticket.durable])  # kept for a retry, not dropped
                raise
            finally:
                self._in_flight = 0
        if self.held and self._db_due():
            self._retry_held()
        if self.spooled and self._db_due():
            self._drain_spool()  # also how a database that was away is tried again
        if self.retention is not None and (self.retention.due() or (self.db_cause == "disk full"
                                                                    and self.retention.due(5.0))):
            self._run_retention()
        if self.writer_error and batch:
            self.writer_error = ""  # a batch went through after the error
        self._update_problem()
        return stopping

    def _finish(self) -> None:
        """The store is closing: one last try for what is held, then the spool."""
        if self.held:
            self._db_retry_at = 0.0
            self._retry_held()
        if self.spooled and not self.db_cause:
            self._drain_spool()
        self._update_problem()

    def _db_due(self) -> bool:
        return not self.db_cause or time.monotonic() >= self._db_retry_at

    def _settle_batch(self, batch: list[Pending]) -> None:
        """Rows first, images after: a verdict is told as soon as its row is committed, not after its
        image is encoded (hundreds of ms at 2048 px); the row then gets the image's path."""
        imaged = [p for p in batch if p.image is not None]
        if self._db_due() and self._insert([p.row for p in batch]):
            self._settle(batch, "logged")
            for item in imaged:
                self._images.put(item)  # the archiver encodes it; bytes bounded by the image budget in add()
            return
        try:
            self._archive_images(imaged)  # the spool keeps the path with the row
        finally:
            self._release_images(imaged)
        self._spool_or_hold(batch)

    def _insert(self, rows: list[dict], dedupe: bool = False) -> bool:
        """Commit rows in one transaction; False (and db_cause set) when the database did not take them."""
        try:
            self._insert_rows(rows, dedupe)
        except (SQLAlchemyError, OSError, UnicodeError) as exc:
            if is_data_error(exc) and len(rows) > 1:
                logger.warning("the database refused a batch (%s); rows are written one by one", cause_of(exc))
                return all(self._insert([row], dedupe) for row in rows)
            if is_data_error(exc):
                self._reject(rows[0], exc)
                return True  # the row is set aside on disk, nothing to retry
            cause = cause_of(exc)
            logger.error("result log: the database did not take %d rows (%s): %s", len(rows), cause,
                         str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.db_cause = cause
            self._db_retry_at = time.monotonic() + self._retry_s
            # a connection that hit a full disk (or lost its server) may stay unusable: the next try
            # opens fresh ones
            self._engine.dispose()
            return False
        if self.db_cause:
            logger.info("result log: the database takes rows again")
        self.db_cause = ""
        self.written += len(rows)
        return True

    def _insert_rows(self, rows: list[dict], dedupe: bool) -> None:
        with Session(self._engine) as s, s.begin():
            if dedupe:  # a drain cut short by a crash may have committed some of these already
                uids = [r["uid"] for r in rows]
                known = set(s.scalars(select(InspectionRow.uid).where(InspectionRow.uid.in_(uids))))
                rows = [r for r in rows if r["uid"] not in known]
            s.add_all([InspectionRow(**row) for row in rows])

    def _reject(self, row: dict, exc: BaseException) -> None:
        """A row the database refuses on its own: kept beside the spool and counted, never retried forever."""
        cause = cause_of(exc)
        logger.error("result log: the database refused a row (%s): %s", cause, encode_row(row).strip())
        self.lost += 1
        if self.spool is not None:
            try:
                with open(self.spool.path.with_name(self.spool.path.name + ".rejected"), "a", encoding="ascii") as f:
                    f.write(encode_row(row))
            except OSError as write_exc:
                logger.error("the refused row could not be kept on disk either: %s", write_exc)

    def _spool_or_hold(self, batch: list[Pending]) -> None:
        if self.spool is not None:
            try:
                self.spool_append([p.row for p in batch])
            except OSError as exc:
                logger.error("result log: the spool %s did not take %d rows (%s)", self.spool.path, len(batch),
                             cause_of(exc))
            else:
                self._settle(batch, "spooled")
                return
        self._hold(batch)

    def spool_append(self, rows: list[dict]) -> None:
        self.spool.append(rows)

    def _hold(self, batch: list[Pending]) -> None:
        with self._lock:
            for item in batch:
                if item.image is not None:
                    self._image_bytes -= item.image.nbytes
                    item.image = None
                    self.images_dropped += 1
                if len(self._held) >= self._memory_rows:
                    self.lost += 1
                    item.ticket.settle("lost")
                else:
                    self._held.append(item)
                    item.ticket.settle("held")

    def _retry_held(self) -> None:
        with self._lock:
            batch = list(self._held)
            self._held.clear()
        for i in range(0, len(batch), 500):
            chunk = batch[i:i + 500]
            if self._db_due() and self._insert([p.row for p in chunk]):
                self._settle(chunk, "logged")
            else:
                self._spool_or_hold(chunk)  # what neither takes goes back into the (bounded) list

    def _drain_spool(self) -> None:
        """Move the spool's rows into the database (oldest first); the spool goes when all are in."""
        moved = 0
        for chunk in self.spool.chunks():
            if not self._insert(chunk, dedupe=True):
                return
            moved += len(chunk)
        self.spool.clear()
        logger.info("result log: %d spooled results moved to the database", moved)

    def _settle(self, batch: list[Pending], state: str) -> None:
        for item in batch:
            item.ticket.settle(state)
            self._latencies.append((item.ticket.done_at - item.ticket.added_at) * 1e3)
        self.committed.emit([item.ticket for item in batch])

    def _run_retention(self) -> None:
        try:
            self.disk_warning = self.retention.run()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("retention pass failed (%s); the next one tries again", cause_of(exc))
