"""Retention of the image archive and the result log: by age, by total size, and a floor of free disk.

Only what the station made is ever deleted: an archived image is removed only when a row of the result
log names it, it lies inside the archive folder and its name is one the station gives
(`YYYYMMDD/<verdict>/HHMMSS_ffffff[_uid].png`); anything else in the folder is left alone. Images go
first (they are the bulk); rows go only by their own age and size limits, never for the disk floor.
Each pass does a bounded amount of work, so the writer thread that runs it stays responsive.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from station.core.result_rows import InspectionRow

logger = logging.getLogger(__name__)

ARCHIVE_NAME = re.compile(r"^\d{8}/(OK|NG|REVIEW)/\d{6}_\d{6}(_[0-9a-f]{8})?\.png$")
BATCH = 200  # rows looked at per query
MAX_PER_PASS = 2000  # files or rows deleted per pass at most
FLOOR_STEP = 20  # images removed between two looks at the free space (a few hundred MB at 2048 px)


@dataclass(frozen=True)
class RetentionPolicy:
    """Limits; 0 means no limit of that kind."""

    archive_keep_days: float = 0.0
    results_keep_days: float = 0.0
    archive_max_mb: float = 0.0
    results_db_max_mb: float = 0.0
    min_free_mb: float = 0.0
    interval_s: float = 60.0

    @classmethod
    def from_settings(cls, settings) -> RetentionPolicy:
        return cls(settings.archive_keep_days, settings.results_keep_days, settings.archive_max_gb * 1000,
                   settings.results_db_max_mb, settings.min_free_disk_mb)

    def describe(self) -> str:
        def lim(v: float, unit: str) -> str:
            return "no limit" if not v else f"{v:g} {unit}"
        return (f"images kept {lim(self.archive_keep_days, 'days')}, at most {lim(self.archive_max_mb, 'MB')}; "
                f"results kept {lim(self.results_keep_days, 'days')}, database at most "
                f"{lim(self.results_db_max_mb, 'MB')}; free disk kept above {lim(self.min_free_mb, 'MB')}")


def is_station_image(path: Path, archive_dir: Path) -> bool:
    """True when `path` is an archive file name the station gives, inside `archive_dir`."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(archive_dir))
    except ValueError:
        return False
    return bool(ARCHIVE_NAME.match(rel.as_posix())) and not path.is_symlink()


def archive_size(archive_dir: Path) -> int:
    """Bytes of the station's own files in the archive (the rest of the folder is not counted)."""
    total = 0
    if not archive_dir.is_dir():
        return 0
    for day in os.scandir(archive_dir):
        if not (day.is_dir(follow_symlinks=False) and re.fullmatch(r"\d{8}", day.name)):
            continue
        for verdict in os.scandir(day.path):
            if verdict.is_dir(follow_symlinks=False) and verdict.name in ("OK", "NG", "REVIEW"):
                for f in os.scandir(verdict.path):
                    if f.is_file(follow_symlinks=False) and ARCHIVE_NAME.match(f"{day.name}/{verdict.name}/{f.name}"):
                        total += f.stat(follow_symlinks=False).st_size
    return total


class Retention:
    """Applies a RetentionPolicy to one database and one archive folder; `run()` is one bounded pass."""

    def __init__(self, policy: RetentionPolicy, engine: Engine, archive_dir: Path | None) -> None:
        self.policy, self.engine, self.archive_dir = policy, engine, archive_dir
        self.archive_bytes: int | None = None  # counted on the first pass, then kept up to date
        self.deleted_images = 0
        self.deleted_rows = 0
        self.free_mb: float | None = None
        self._last = -1e9
        self._bytes_lock = threading.Lock()  # archived() runs in the archiver thread, passes in the writer's

    def due(self, gap_s: float | None = None) -> bool:
        """A pass is due: `gap_s` (default: the policy's interval) since the last one."""
        return time.monotonic() - self._last >= (self.policy.interval_s if gap_s is None else gap_s)

    def archived(self, nbytes: int) -> None:
        with self._bytes_lock:
            if self.archive_bytes is not None:
                self.archive_bytes += nbytes

    def run(self) -> str:
        """One pass; returns a warning for the operator ("" when the limits hold)."""
        self._last = time.monotonic()
        p = self.policy
        if self.archive_dir is not None and self.archive_bytes is None:
            counted = archive_size(self.archive_dir)
            with self._bytes_lock:
                self.archive_bytes = counted
        budget = MAX_PER_PASS
        if p.archive_keep_days and self.archive_dir is not None:
            budget -= self._drop_images(budget, older_than=_cutoff(p.archive_keep_days))
        if p.archive_max_mb and self.archive_dir is not None:
            while budget > 0 and self.archive_bytes > p.archive_max_mb * 1e6:
                n = self._drop_images(min(budget, BATCH))
                budget -= n
                if not n:
                    break
        warning = ""
        if p.min_free_mb:
            while budget > 0 and self._free_mb() < p.min_free_mb:
                n = self._drop_images(min(budget, FLOOR_STEP)) if self.archive_dir is not None else 0
                budget -= n
                if not n:
                    break
            if self._free_mb() < p.min_free_mb:
                warning = f"disk nearly full: {self.free_mb:.0f} MB free (floor {p.min_free_mb:g} MB)"
        if p.results_keep_days:
            self._drop_rows(MAX_PER_PASS, older_than=_cutoff(p.results_keep_days))
        if p.results_db_max_mb and self._db_used_mb() > p.results_db_max_mb:
            self._drop_rows(MAX_PER_PASS)
        return warning

    def _free_mb(self) -> float:
        where = self.archive_dir if self.archive_dir is not None and self.archive_dir.exists() else self._db_folder()
        if where is None:
            self.free_mb = float("inf")
        else:
            try:
                self.free_mb = shutil.disk_usage(where).free / 1e6
            except OSError as exc:
                logger.warning("free disk space of %s unknown: %s", where, exc)
                self.free_mb = float("inf")
        return self.free_mb

    def _db_folder(self) -> Path | None:
        db = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        return Path(db).parent if db and db != ":memory:" else None

    def _db_used_mb(self) -> float:
        if self.engine.dialect.name != "sqlite":
            return 0.0  # a server database keeps its own size; only its age limit applies
        with self.engine.connect() as conn:
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
            size = conn.execute(text("PRAGMA page_size")).scalar_one()
        return (pages - free) * size / 1e6

    def _drop_images(self, limit: int, older_than: datetime | None = None) -> int:
        """Delete the oldest archived images (at most `limit`) and clear their rows' image_path."""
        done = 0
        while done < limit:
            query = select(InspectionRow.id, InspectionRow.image_path).where(InspectionRow.image_path.is_not(None))
            if older_than is not None:
                query = query.where(InspectionRow.time < older_than)
            with Session(self.engine) as s:
                rows = s.execute(query.order_by(InspectionRow.time).limit(min(BATCH, limit - done))).all()
            if not rows:
                break
            for _, image_path in rows:
                self._unlink(Path(image_path))
            with Session(self.engine) as s, s.begin():
                s.execute(update(InspectionRow).where(InspectionRow.id.in_([r[0] for r in rows]))
                          .values(image_path=None))
            done += len(rows)
        if done:
            logger.info("retention: %d archived images removed", done)
        return done

    def _unlink(self, path: Path) -> None:
        if self.archive_dir is None or not is_station_image(path, self.archive_dir):
            logger.warning("retention: %s is not an image the station archived; left alone", path)
            return
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("retention: cannot remove %s: %s", path, exc)
            return
        self.deleted_images += 1
        with self._bytes_lock:
            if self.archive_bytes is not None:
                self.archive_bytes = max(0, self.archive_bytes - size)
        for folder in (path.parent, path.parent.parent):  # the verdict and day folders the station made
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or not ours to remove): that is fine

    def _drop_rows(self, limit: int, older_than: datetime | None = None) -> None:
        """Delete the oldest rows (their images first), at most `limit`."""
        query = select(InspectionRow.id, InspectionRow.image_path)
        if older_than is not None:
            query = query.where(InspectionRow.time < older_than)
        with Session(self.engine) as s:
            rows = s.execute(query.order_by(InspectionRow.time).limit(limit)).all()
        if not rows:
            return
        for _, image_path in rows:
            if image_path:
                self._unlink(Path(image_path))
        with Session(self.engine) as s, s.begin():
            for i in range(0, len(rows), BATCH):
                s.execute(delete(InspectionRow).where(InspectionRow.id.in_([r[0] for r in rows[i:i + BATCH]])))
        self.deleted_rows += len(rows)
        logger.info("retention: %d result rows removed", len(rows))


def _cutoff(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)
