"""The audit log: one JSON line per recipe or threshold change (who, when, what, old and new value), fsynced.

Append-only: entries are only ever added. A failed write raises AuditError, and callers write the
entry *before* they make the change, so a change that cannot be recorded is not made.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from station.core.workbench._fs import describe, write_all
from station.core.workbench.errors import AuditError

MAX_LINE_BYTES = 1024 * 1024
REQUIRED = ("time", "role", "user", "action", "what", "old", "new")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so an entry never holds something the log could not store (numpy, Path, ...)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, actor: dict[str, str], action: str, what: str, old: Any = None, new: Any = None,
               **details: Any) -> dict[str, Any]:
        """Append one entry and fsync it. `actor` is `Session.actor` ({"role": ..., "user": ...})."""
        entry = {"time": utc_now(), "role": str(actor.get("role", "?")), "user": str(actor.get("user", "?")),
                 "action": action, "what": what, "old": _jsonable(old), "new": _jsonable(new)}
        if details:
            entry["details"] = _jsonable(details)
        line = (json.dumps(entry, sort_keys=False) + "\n").encode("utf-8")
        if len(line) > MAX_LINE_BYTES:
            raise AuditError(f"audit entry for {what!r} is too large to record")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    write_all(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {describe(exc)}; "
                                 "the change was not made") from None
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """All entries, oldest first. A torn last line (power cut mid-write) is skipped; damage elsewhere raises."""
        if not self.path.exists():
            return []
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {describe(exc)}") from None
        lines = raw.split(b"\n")
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or any(k not in entry for k in REQUIRED):
                    raise ValueError("missing fields")
            except ValueError:
                if i == len(lines) - 1:  # no newline after it: a write that never finished
                    break
                raise AuditError(f"the audit log {self.path} is damaged at line {i + 1}") from None
            out.append(entry)
        return out
