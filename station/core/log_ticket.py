"""A result's way into the result log (LogTicket), and the operator's words for why a write failed."""

from __future__ import annotations

import errno
import threading
import time

from sqlalchemy.exc import DBAPIError


class LogTicket:
    """One result on its way to the log. `state`: queued, then logged (in the database) or spooled (in
    the spool file, moved to the database later); held (in memory only, not yet safe) or lost."""

    __slots__ = ("uid", "verdict", "state", "added_at", "done_at", "_event")

    def __init__(self, uid: str, verdict: str) -> None:
        self.uid, self.verdict, self.state = uid, verdict, "queued"
        self.added_at, self.done_at = time.perf_counter(), None
        self._event = threading.Event()

    @property
    def durable(self) -> bool:
        """The row is on disk: safe to tell the line."""
        return self.state in ("logged", "spooled")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the row is durable (or lost); True when durable."""
        return self._event.wait(timeout) and self.durable

    def settle(self, state: str) -> None:
        self.state = state
        if state != "held":
            self.done_at = time.perf_counter()
            self._event.set()


def cause_of(exc: BaseException) -> str:
    """The operator's word for why a write failed."""
    if isinstance(exc, UnicodeError):
        return "name not encodable"
    inner = getattr(exc, "orig", None) or exc
    if isinstance(inner, UnicodeError):
        return "name not encodable"
    if isinstance(inner, OSError) and inner.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    text = str(inner).lower()
    if "disk is full" in text or "no space left" in text:
        return "disk full"
    if isinstance(exc, (DBAPIError, OSError)) or isinstance(inner, OSError):
        return "database unreachable"
    return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}".rstrip(": ")


def is_data_error(exc: BaseException) -> bool:
    """A row the database refuses (not a database that is away): retrying it as is will not help."""
    from sqlalchemy.exc import DataError, IntegrityError, StatementError

    inner = getattr(exc, "orig", None) or exc
    return (isinstance(exc, (DataError, IntegrityError, UnicodeError))
            or isinstance(inner, UnicodeError)
            or (isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)))
