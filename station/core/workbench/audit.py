"""The audit log: one JSON line per change or access (who, when, what, old and new value), fsynced and chained.

Append-only: entries are only ever added. A failed write raises AuditError, and callers write the
entry *before* they make the change, so a change that cannot be recorded is not made.

Each entry carries its number (`seq`), the seal of the entry before it (`prev`) and its own seal
(`seal`, an HMAC with the station key, station/core/trust.py), so an entry cannot be edited, removed
or inserted without the key. The first sealed entry's `prev` is the SHA-256 of every byte before it,
so the lines written before the chain existed are protected too. The chain's head (last number and
seal, itself sealed) is also kept beside the key, so cutting entries off the end or deleting the log
is seen. `verify()` says what is wrong; the workbench runs it at start and shows it in red.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from station.core import trust
from station.core.workbench._fs import describe, read_json, write_all, write_json_atomic
from station.core.workbench.errors import AuditError

try:
    import fcntl
except ImportError:  # not on Windows: one process per log there
    fcntl = None

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1024 * 1024
REQUIRED = ("time", "role", "user", "action", "what", "old", "new")
DOMAIN, HEAD_DOMAIN = "audit-entry", "audit-head"
HEADS_DIR = "audit-heads"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so an entry never holds something the log could not store (numpy, Path, ...)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _parse_entry(line: bytes | str) -> dict[str, Any]:
    """One audit line as its entry; ValueError when it is not JSON or lacks a field every entry has."""
    entry = json.loads(line)
    if not isinstance(entry, dict) or any(k not in entry for k in REQUIRED):
        raise ValueError("missing fields")
    return entry


def _entry_seal(entry: dict[str, Any], key: bytes | None = None) -> str:
    return trust.seal(DOMAIN, trust.canonical({k: v for k, v in entry.items() if k != "seal"}), key)


def _start(prefix: bytes) -> str:
    return "start:sha256:" + hashlib.sha256(prefix).hexdigest()


@dataclass(frozen=True)
class AuditCheck:
    """What `verify()` found. `problems`: what is wrong and not yet acknowledged by an engineer (a break
    found now, or one recorded earlier); `unrecorded`: those found now that the log does not hold yet."""

    entries: int = 0
    sealed: int = 0
    problems: tuple[str, ...] = ()
    unrecorded: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> str:
        """One line for the screen ('' when whole)."""
        if not self.problems:
            return ""
        more = len(self.problems) - 1
        return self.problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._tail: tuple[int, int, str] | None = None  # (file size, seq, seal) after our last write

    @property
    def head_path(self) -> Path:
        """The chain's head, beside the station key (one per log, named by the log's absolute path)."""
        name = hashlib.sha256(str(self.path.resolve()).encode("utf-8")).hexdigest()[:20]
        return trust.key_dir() / HEADS_DIR / f"{name}.json"

    # -- writing -------------------------------------------------------------------------------
    def record(self, actor: dict[str, str], action: str, what: str, old: Any = None, new: Any = None,
               **details: Any) -> dict[str, Any]:
        """Append one sealed entry and fsync it. `actor` is `Session.actor` ({"role": ..., "user": ...})."""
        entry = {"time": utc_now(), "role": str(actor.get("role", "?")), "user": str(actor.get("user", "?")),
                 "action": action, "what": what, "old": _jsonable(old), "new": _jsonable(new)}
        if details:
            entry["details"] = _jsonable(details)
        with self._lock:
            try:
                key = trust.station_key()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_EX)  # another station process may append too
                    seq, prev, size = self._chain_end(fd)
                    entry.update(seq=seq, prev=prev)
                    entry["seal"] = _entry_seal(entry, key)
                    line = (json.dumps(entry, sort_keys=False) + "\n").encode("utf-8")
                    if len(line) > MAX_LINE_BYTES:
                        raise AuditError(f"audit entry for {what!r} is too large to record")
                    write_all(fd, line)
                    self._tail = (size + len(line), seq, entry["seal"])
                    self._write_head(seq, entry["seal"], key)
                finally:
                    os.close(fd)
            except trust.TrustError as exc:
                raise AuditError(f"cannot seal the audit entry: {exc}; the change was not made") from None
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {describe(exc)}; "
                                 "the change was not made") from None
        return entry

    def _chain_end(self, fd: int) -> tuple[int, str, int]:
        """(next seq, its prev, file size) for an append to the open log; a torn last line is cut off first."""
        size = os.fstat(fd).st_size
        if self._tail is not None and self._tail[0] == size:
            return self._tail[1] + 1, self._tail[2], size
        if size == 0:
            return 1, _start(b""), 0
        start = max(0, size - 2 * MAX_LINE_BYTES)
        tail = os.pread(fd, size - start, start)
        if not tail.endswith(b"\n"):  # a write cut off by a crash: never acknowledged, not an entry
            cut = tail.rfind(b"\n")
            new_size = start + cut + 1 if cut >= 0 else start
            log.warning("the audit log %s ends in a torn line (%d bytes); it is cut off before appending",
                        self.path, size - new_size)
            os.ftruncate(fd, new_size)
            return self._chain_end_after_cut(fd)
        lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
        try:
            last = json.loads(lines[-1])
            if isinstance(last, dict) and isinstance(last.get("seq"), int) and isinstance(last.get("seal"), str):
                return last["seq"] + 1, last["seal"], size
        except ValueError:
            pass
        # the log so far holds no sealed entry at its end (written before the chain): the chain starts here
        return 1, _start(self._read_prefix(fd, size)), size

    def _chain_end_after_cut(self, fd: int) -> tuple[int, str, int]:
        self._tail = None
        return self._chain_end(fd)

    @staticmethod
    def _read_prefix(fd: int, size: int) -> bytes:
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, min(1 << 20, size - offset), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def _write_head(self, seq: int, seal: str, key: bytes) -> None:
        body = {"log": str(self.path.resolve()), "seq": seq, "seal": seal}
        head = {**body, "head_seal": trust.seal(HEAD_DOMAIN, trust.canonical(body), key)}
        self.head_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.head_path, head, mode=0o600)

    # -- reading -------------------------------------------------------------------------------
    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {describe(exc)}") from None

    def entries(self) -> list[dict[str, Any]]:
        """All entries, oldest first. A torn last line (power cut mid-write) is skipped; damage elsewhere raises."""
        if not self.path.exists():
            return []
        lines = self._lines()
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = _parse_entry(line)
            except ValueError:
                if i == len(lines) - 1:  # no newline after it: a write that never finished
                    break
                raise AuditError(f"the audit log {self.path} is damaged at line {i + 1}") from None
            out.append(entry)
        return out

    def _head(self, key: bytes) -> tuple[dict[str, Any] | None, str]:
        path = self.head_path
        if not path.exists():
            return None, ""
        try:
            head = read_json(path, 64 * 1024)
            body = {k: head[k] for k in ("log", "seq", "seal")}
            if not isinstance(body["seq"], int):
                raise TypeError("seq")
        except (OSError, ValueError, KeyError, TypeError):
            return None, f"its head {path} is damaged"
        why = trust.seal_problem(HEAD_DOMAIN, trust.canonical(body), str(head.get("head_seal", "")), key)
        return (None, f"its head {path} is not genuine ({why})") if why else (body, "")

    def verify(self) -> AuditCheck:
        """Check the whole chain and its head; never raises for what it finds (the problems say it)."""
        try:
            key = trust.station_key()
        except trust.TrustError as exc:
            problem = f"the audit log cannot be checked: {exc}"
            return AuditCheck(problems=(problem,), unrecorded=(problem,))
        head, head_problem = self._head(key)
        raw = b""
        if self.path.exists():
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                problem = f"cannot read the audit log {self.path}: {describe(exc)}"
                return AuditCheck(problems=(problem,), unrecorded=(problem,))
        elif head is not None:
            head_problem = f"the audit log {self.path} is missing: its head records {head['seq']} entries (deleted?)"
        return self._verify_bytes(raw, head, head_problem, key)

    def _verify_bytes(self, raw: bytes, head: dict[str, Any] | None, head_problem: str, key: bytes) -> AuditCheck:
        where = f"the audit log {self.path}"
        lines = raw.split(b"\n")
        offset, count, sealed, seq, prev = 0, 0, 0, 0, ""
        seals: dict[int, str] = {}
        found: list[str] = []  # breaks found now (since the last acknowledgement)
        recorded: list[str] = []  # breaks the log records (since the last acknowledgement)
        for i, line in enumerate(lines):
            line_start, offset = offset, offset + len(line) + 1
            if not line.strip():
                continue
            try:
                entry = _parse_entry(line)
            except ValueError:
                if i == len(lines) - 1:
                    break  # a torn write (no newline after it): the next record cuts it off
                found.append(f"{where} is damaged at line {i + 1} (edited?)")
                continue
            count += 1
            if "seal" not in entry:
                if sealed:
                    found.append(f"{where} has an unsealed entry at line {i + 1}: it was added by hand")
                continue  # an entry from before the chain, protected by the first sealed entry's `prev`
            why = trust.seal_problem(DOMAIN, trust.canonical({k: v for k, v in entry.items() if k != "seal"}),
                                     str(entry["seal"]), key)
            if why:
                found.append(f"{where} is broken at line {i + 1}: {why}")
                if isinstance(entry.get("seq"), int):  # go on from what it claims: one edit, one problem
                    seq, prev, sealed = entry["seq"], str(entry["seal"]), sealed + 1
                continue
            expected_prev = prev if sealed else _start(raw[:line_start])
            if entry.get("seq") != seq + 1 or entry.get("prev") != expected_prev:
                found.append(f"{where} is broken before line {i + 1} (entry {entry.get('seq')}): entries were "
                             "removed, inserted or changed")
            seq, prev, sealed = int(entry["seq"]), str(entry["seal"]), sealed + 1
            seals[seq] = prev
            if entry["action"] == "audit_broken":
                recorded.append(str(entry["new"]))
            elif entry["action"] == "audit_acknowledged":
                found, recorded = [], []
        if not head_problem and head is not None:
            if head["seq"] > seq:
                head_problem = (f"{where} ends at entry {seq} but its head records entry {head['seq']}: "
                                "entries were cut off the end")
            elif seals.get(head["seq"]) != head["seal"]:
                head_problem = f"{where} does not match its head at entry {head['seq']}"
        elif not head_problem and sealed:
            head_problem = f"{where} has lost its head {self.head_path} (deleted?)"
        if head_problem:
            found.append(head_problem)
        unrecorded = tuple(p for p in found if p not in recorded)
        return AuditCheck(count, sealed, tuple(dict.fromkeys(found + recorded)), unrecorded)

    def ensure_recorded(self, check: AuditCheck) -> None:
        """Record the breaks `check` found that the log does not hold yet (once, not at every start)."""
        for problem in check.unrecorded:
            self.record({"role": "station", "user": "station"}, "audit_broken", f"audit log {self.path}", None,
                        problem)

    def acknowledge(self, actor: dict[str, str], check: AuditCheck, note: str = "") -> None:
        """An engineer has seen the problems: record that; later checks report only what happens after."""
        if actor.get("role") != "engineer":
            raise AuditError("acknowledging audit problems needs engineer mode")
        self.record(actor, "audit_acknowledged", f"audit log {self.path}", list(check.problems), None,
                    note=str(note)[:2000])
