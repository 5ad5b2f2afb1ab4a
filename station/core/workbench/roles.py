"""Who may change the station: operator by default, engineer after a PIN, locked again after idle time.

The PIN is never stored: only a scrypt hash with a random salt, compared in constant time. After
a few wrong PINs the entry is refused for a growing back-off, so a PIN of a few digits cannot be
tried through quickly at the station.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.core.workbench._fs import describe, read_json, write_json_atomic
from station.core.workbench.errors import AccessError

PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")
MAX_STORE_BYTES = 64 * 1024
#: scrypt cost: about 16 MiB and tens of milliseconds per try on a line PC
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class Role(str, Enum):
    OPERATOR = "operator"
    ENGINEER = "engineer"


class _PinRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(ge=1, le=1)
    kdf: str = Field(pattern="^scrypt$")
    n: int = Field(ge=2**10, le=2**20)
    r: int = Field(ge=1, le=32)
    p: int = Field(ge=1, le=16)
    salt: str = Field(pattern="^[0-9a-f]{32,128}$")
    hash: str = Field(pattern="^[0-9a-f]{64}$")
    user: str = Field(default="engineer", min_length=1, max_length=64)


def _kdf(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


class PinStore:
    """The engineer PIN, hashed, in a small JSON file at a path the caller chooses."""

    def __init__(self, path: str | Path, n: int = SCRYPT_N) -> None:
        self.path = Path(path)
        self._n = n
        self._record: _PinRecord | None = None
        if self.path.exists():
            self._record = self._load()

    @property
    def has_pin(self) -> bool:
        return self._record is not None

    @property
    def user(self) -> str:
        return self._record.user if self._record else "engineer"

    def _load(self) -> _PinRecord:
        try:
            raw = read_json(self.path, MAX_STORE_BYTES)
        except OSError as exc:
            raise AccessError(f"cannot read the PIN file {self.path}: {describe(exc)}") from None
        except ValueError as exc:
            raise AccessError(f"the PIN file {self.path} is damaged ({exc}); set a new PIN") from None
        try:
            return _PinRecord.model_validate(raw)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "document"
            raise AccessError(f"the PIN file {self.path} is invalid at {where}; set a new PIN") from None

    def set_pin(self, pin: str, user: str = "engineer") -> None:
        """Hash and store a new PIN (4 to 12 digits). Who may call this is the Session's business."""
        if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
            raise AccessError("a PIN is 4 to 12 digits")
        salt = os.urandom(16)
        record = _PinRecord(schema_version=1, kdf="scrypt", n=self._n, r=SCRYPT_R, p=SCRYPT_P, salt=salt.hex(),
                            hash=_kdf(pin, salt, self._n, SCRYPT_R, SCRYPT_P).hex(), user=user)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, record.model_dump(), mode=0o600)
        except OSError as exc:
            raise AccessError(f"cannot save the PIN to {self.path}: {describe(exc)}") from None
        self._record = record

    def verify(self, pin: str) -> bool:
        if self._record is None or not isinstance(pin, str) or len(pin) > 64:
            return False
        rec = self._record
        candidate = _kdf(pin, bytes.fromhex(rec.salt), rec.n, rec.r, rec.p)
        return hmac.compare_digest(candidate, bytes.fromhex(rec.hash))


class Session:
    """The station's current role. Operator unless unlocked; engineer mode ends after `idle_seconds`.

    `clock` (monotonic seconds) is injectable for tests. The GUI calls `touch()` on every engineer
    interaction and reads `role` (which applies the idle lock) on a timer. Thread-safe.
    """

    def __init__(self, store: PinStore, idle_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 free_tries: int = 3, backoff_seconds: float = 5.0, max_backoff_seconds: float = 300.0) -> None:
        if idle_seconds <= 0:
            raise AccessError("the idle time before locking must be positive")
        self.store = store
        self.idle_seconds = float(idle_seconds)
        self.clock = clock
        self.free_tries = int(free_tries)
        self.backoff_seconds = float(backoff_seconds)
        self.max_backoff_seconds = float(max_backoff_seconds)
        self._lock = threading.RLock()
        self._role = Role.OPERATOR
        self._last_activity = clock()
        self._failures = 0
        self._blocked_until = float("-inf")
        self._listeners: list[Callable[[Role], None]] = []

    # -- observing -----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Role], None]) -> None:
        """Call `callback(role)` whenever the role changes (from the thread that caused the change)."""
        self._listeners.append(callback)

    def _set_role(self, role: Role) -> None:
        changed = role is not self._role
        self._role = role
        if changed:
            for cb in list(self._listeners):
                cb(role)

    @property
    def role(self) -> Role:
        with self._lock:
            if self._role is Role.ENGINEER and self.clock() - self._last_activity >= self.idle_seconds:
                self._set_role(Role.OPERATOR)
            return self._role

    @property
    def is_engineer(self) -> bool:
        return self.role is Role.ENGINEER

    @property
    def user(self) -> str:
        return self.store.user if self.role is Role.ENGINEER else "operator"

    @property
    def actor(self) -> dict[str, str]:
        """Who is acting, as the audit log records it."""
        role = self.role
        return {"role": role.value, "user": self.store.user if role is Role.ENGINEER else "operator"}

    def seconds_until_lock(self) -> float | None:
        with self._lock:
            if self.role is not Role.ENGINEER:
                return None
            return max(0.0, self.idle_seconds - (self.clock() - self._last_activity))

    def seconds_blocked(self) -> float:
        """How long PIN entry is refused after repeated wrong PINs (0 when it is open)."""
        with self._lock:
            return max(0.0, self._blocked_until - self.clock())

    # -- acting --------------------------------------------------------------------------------
    def unlock(self, pin: str) -> Role:
        """Enter engineer mode; a wrong PIN raises AccessError with a message for the person at the station."""
        with self._lock:
            if not self.store.has_pin:
                raise AccessError("no engineer PIN is set on this station; set one first")
            wait = self.seconds_blocked()
            if wait > 0:
                raise AccessError(f"too many wrong PINs: try again in {int(wait + 0.999)} s")
            if self.store.verify(pin):
                self._failures = 0
                self._last_activity = self.clock()
                self._set_role(Role.ENGINEER)
                return self._role
            self._failures += 1
            over = self._failures - self.free_tries
            if over >= 0:
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** over)
                self._blocked_until = self.clock() + delay
                raise AccessError(f"wrong PIN; PIN entry is blocked for {int(delay + 0.999)} s")
            left = self.free_tries - self._failures
            raise AccessError(f"wrong PIN ({left} {'try' if left == 1 else 'tries'} left before a wait)")

    def lock(self) -> None:
        with self._lock:
            self._set_role(Role.OPERATOR)

    def touch(self) -> None:
        """Note engineer activity, which postpones the idle lock."""
        with self._lock:
            if self.role is Role.ENGINEER:
                self._last_activity = self.clock()

    def require_engineer(self, action: str = "this") -> None:
        """Raise AccessError unless in engineer mode; counts as activity."""
        with self._lock:
            if self.role is not Role.ENGINEER:
                raise AccessError(f"{action} needs engineer mode: unlock with the engineer PIN")
            self._last_activity = self.clock()

    def set_pin(self, pin: str, user: str = "engineer") -> None:
        """Set the first PIN (allowed when none exists) or change it (engineer mode only)."""
        with self._lock:
            if self.store.has_pin:
                self.require_engineer("changing the PIN")
            self.store.set_pin(pin, user)
