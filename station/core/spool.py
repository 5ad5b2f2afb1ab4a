"""The result spool: rows that could not reach the database, kept on disk as JSON lines until it is back.

Each append is flushed and synced before it returns, so a row the spool accepted survives a crash; an
append that fails half way (a full disk) is cut back to where it started, so no half line is left for
the next one to continue. Reading validates every line (the file is ours, but a disk can damage it):
a line that cannot be used is copied aside to `<spool>.bad`, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # a row is well under 2 KB; a longer line is damage, not a row
#: the row fields and the JSON types they may have in a spool line
FIELDS: dict[str, tuple[type, ...]] = {
    "uid": (str,), "time": (str,), "station": (str,), "frame": (str,), "verdict": (str,), "label": (str,),
    "score": (float, int, type(None)), "top_cell": (str, type(None)), "recipe_name": (str,),
    "recipe_hash": (str,), "timings": (str,), "image_path": (str, type(None)), "message": (str,),
}
#: fields added later: a spool written by an older station lacks them (they read as None)
LATER_FIELDS: dict[str, tuple[type, ...]] = {"cell_scores": (str, type(None)), "part_id": (str, type(None)),
                                             "trigger_time": (str, type(None))}
ALL_FIELDS = {**FIELDS, **LATER_FIELDS}


def encode_row(row: dict) -> str:
    """One spool line (ASCII, so no name can fail to encode)."""
    out = {k: row.get(k) for k in ALL_FIELDS}
    out["time"] = row["time"].isoformat()
    out["trigger_time"] = row["trigger_time"].isoformat() if row.get("trigger_time") is not None else None
    return json.dumps(out, ensure_ascii=True, allow_nan=False) + "\n"


def decode_row(line: str) -> dict:
    """A row from one spool line; ValueError when the line is not one the spool wrote."""
    if len(line) > MAX_LINE:
        raise ValueError("line too long")
    data = json.loads(line)
    if not isinstance(data, dict) or not set(FIELDS) <= set(data) <= set(ALL_FIELDS):
        raise ValueError("not a spooled row")
    for key in LATER_FIELDS:
        data.setdefault(key, None)
    for key, types in ALL_FIELDS.items():
        if not isinstance(data[key], types) or isinstance(data[key], bool):
            raise ValueError(f"field {key} has the wrong type")
        if isinstance(data[key], str) and len(data[key]) > 10000:
            raise ValueError(f"field {key} too long")
    data["time"] = datetime.fromisoformat(data["time"])
    if data["time"].tzinfo is None:
        raise ValueError("time without a time zone")
    if data["trigger_time"] is not None:
        data["trigger_time"] = datetime.fromisoformat(data["trigger_time"])
        if data["trigger_time"].tzinfo is None:
            raise ValueError("trigger time without a time zone")
    return data


class Spool:
    """An append-only file of rows; `count` is how many it holds (kept, not recounted per call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = self._count_lines()

    def _count_lines(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def append(self, rows: list[dict]) -> None:
        """Write and sync `rows`; raises OSError (the file is left as it was) when that fails."""
        data = "".join(encode_row(r) for r in rows).encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, start)  # no half line for the next append to run into
                except OSError as exc:
                    logger.error("spool %s could not be cut back after a failed write: %s", self.path, exc)
                raise
        finally:
            os.close(fd)
        self.count += len(rows)

    def chunks(self, size: int = 500) -> Iterator[list[dict]]:
        """The spooled rows, oldest first, `size` at a time; bad lines are set aside as they are met."""
        if not self.path.exists():
            return
        chunk: list[dict] = []
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    # a crash mid-append: that row's append never returned, so nobody was told of it
                    self._set_aside(raw, number, "unfinished last line")
                    break
                try:
                    chunk.append(decode_row(raw.decode("ascii")))
                except (ValueError, UnicodeDecodeError, KeyError) as exc:
                    self._set_aside(raw, number, str(exc))
                    continue
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _set_aside(self, raw: bytes, number: int, why: str) -> None:
        logger.error("spool %s line %d cannot be used (%s); copied to %s.bad", self.path, number, why, self.path.name)
        try:
            with open(self.path.with_name(self.path.name + ".bad"), "ab") as f:
                f.write(raw[:MAX_LINE] + (b"" if raw.endswith(b"\n") else b"\n"))
        except OSError as exc:
            logger.error("spool line %d could not be set aside: %s", number, exc)

    def clear(self) -> None:
        """Every row is in the database: the spool starts again empty."""
        self.path.unlink(missing_ok=True)
        self.count = 0
