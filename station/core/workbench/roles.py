"""Who may change the station: operator by default, engineer after a PIN, locked again after idle time.

The PIN is never stored: only a scrypt hash with a random salt, compared in constant time. After
a few wrong PINs the entry is refused for a growing back-off, so a PIN of a few digits cannot be
tried through quickly at the station.

The PIN file is sealed with the station key (station/core/trust.py): one made elsewhere, edited or
damaged locks engineer mode, and so does a missing one once the audit log shows that a PIN was set.
Only a station with no PIN history offers the first setup; after that a lost PIN file is replaced
by the key holder (`station pin --reset`). Unlocks, wrong PINs and PIN changes are audited.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.core import trust
from station.core.workbench._fs import describe, read_json, write_json_atomic
from station.core.workbench.audit import AuditLog
from station.core.workbench.errors import AccessError, AuditError

log = logging.getLogger(__name__)

PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")
MAX_STORE_BYTES = 64 * 1024
#: scrypt cost: about 16 MiB and tens of milliseconds per try on a line PC
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SEAL_DOMAIN = "engineer-pin"
#: audit actions that show a PIN existed on this station
PIN_ACTIONS = ("pin_set", "pin_change", "pin_reset")
RESET_HINT = "restore it from a backup or reset the PIN with `station pin --reset` (needs the station key)"


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
    seal: str = Field(default="", max_length=200)

    def body(self) -> bytes:
        return trust.canonical(self.model_dump(exclude={"seal"}))


def _fingerprint(seal: str) -> str:
    return hashlib.sha256(seal.encode("ascii")).hexdigest()[:16]


def _kdf(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


class PinStore:
    """The engineer PIN, hashed and sealed, in a small JSON file at a path the caller chooses.

    Never raises on construction: `problem` says why engineer mode is locked ('' when a PIN is usable
    or none was ever set). `audit` is where the store looks for a PIN history (a PIN file that is gone
    after one was set is not "no PIN").
    """

    def __init__(self, path: str | Path, n: int = SCRYPT_N, audit: AuditLog | None = None) -> None:
        self.path = Path(path)
        self.audit = audit
        self._n = n
        self._record: _PinRecord | None = None
        self.problem = ""
        self.reload()

    def reload(self) -> None:
        """Read the PIN file again (it may have been restored or replaced while the station ran)."""
        self._record, self.problem = None, ""
        if self.path.exists():
            try:
                self._record = self._load()
            except AccessError as exc:
                self.problem = str(exc)
        elif self.pin_history():
            self.problem = (f"PIN file missing ({self.path}): engineer mode locked; restore it, or reset the PIN "
                            "with `station pin --reset` (needs the station key)")

    def pin_history(self) -> str:
        """'' when this station shows no sign that a PIN was ever set, else the sign (for the audit)."""
        if self.path.exists():
            return f"the PIN file {self.path} exists"
        if self.audit is None:
            return ""
        check = self.audit.verify()
        if not check.ok:
            return f"the audit log cannot be trusted ({check.problem})"
        try:
            if any(e.get("action") in PIN_ACTIONS for e in self.audit.entries()):
                return "the audit log records a PIN"
        except AuditError as exc:
            return str(exc)
        return ""

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
            raise AccessError(f"cannot read the PIN file {self.path}: {describe(exc)}; engineer mode locked") \
                from None
        except (ValueError, RecursionError):
            raise AccessError(f"the PIN file {self.path} is damaged: engineer mode locked; {RESET_HINT}") from None
        try:
            record = _PinRecord.model_validate(raw)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "document"
            raise AccessError(f"the PIN file {self.path} is invalid at {where}: engineer mode locked; "
                              f"{RESET_HINT}") from None
        try:
            why = trust.seal_problem(SEAL_DOMAIN, record.body(), record.seal)
        except trust.TrustError as exc:
            raise AccessError(f"the PIN file cannot be checked ({exc}): engineer mode locked") from None
        if why:
            raise AccessError(f"the PIN file {self.path} is refused: {why}; engineer mode locked; {RESET_HINT}")
        last = self._last_pin_file()
        if last and last != _fingerprint(record.seal):
            raise AccessError(f"the PIN file {self.path} is not the one last set on this station (an older copy "
                              f"put back?): engineer mode locked; {RESET_HINT}")
        return record

    def set_pin(self, pin: str, user: str = "engineer", action: str = "", actor: dict[str, str] | None = None,
                **details) -> None:
        """Hash, seal and store a new PIN (4 to 12 digits). Who may call this is the Session's business.

        With `action` (pin_set, pin_change, pin_reset) the audit entry is written first and names the new
        file by its fingerprint, so an older PIN file put back later is refused."""
        if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
            raise AccessError("a PIN is 4 to 12 digits")
        salt = os.urandom(16)
        record = _PinRecord(schema_version=1, kdf="scrypt", n=self._n, r=SCRYPT_R, p=SCRYPT_P, salt=salt.hex(),
                            hash=_kdf(pin, salt, self._n, SCRYPT_R, SCRYPT_P).hex(), user=user)
        try:
            record.seal = trust.seal(SEAL_DOMAIN, record.body())
        except trust.TrustError as exc:
            raise AccessError(f"cannot seal the PIN: {exc}") from None
        if action and self.audit is not None:
            try:
                self.audit.record(actor or {"role": "?", "user": "?"}, action, f"engineer PIN {self.path}",
                                  self.problem or None, {"user": user, "pin_file": _fingerprint(record.seal)},
                                  **details)
            except AuditError as exc:
                raise AccessError(str(exc)) from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, record.model_dump(), mode=0o600)
        except OSError as exc:
            raise AccessError(f"cannot save the PIN to {self.path}: {describe(exc)}") from None
        self._record, self.problem = record, ""

    def _last_pin_file(self) -> str:
        """The fingerprint of the PIN file the audit log says was set last ('' when it says none)."""
        if self.audit is None:
            return ""
        try:
            entries = self.audit.entries()
        except AuditError:
            return ""
        for entry in reversed(entries):
            if entry.get("action") in PIN_ACTIONS and "seal" in entry:
                new = entry.get("new")
                return str(new.get("pin_file", "")) if isinstance(new, dict) else ""
        return ""

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
                 free_tries: int = 3, backoff_seconds: float = 5.0, max_backoff_seconds: float = 300.0,
                 audit: AuditLog | None = None) -> None:
        if idle_seconds <= 0:
            raise AccessError("the idle time before locking must be positive")
        self.store = store
        self.audit = audit if audit is not None else store.audit
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
    def _record(self, action: str, what: str, new=None, required: bool = False,
                actor: dict[str, str] | None = None) -> None:
        """Audit an access event; `required`: one that cannot be recorded is refused (AccessError)."""
        if self.audit is None:
            return
        try:
            self.audit.record(actor or self.actor, action, what, None, new)
        except AuditError as exc:
            if required:
                raise AccessError(f"{exc}") from None
            log.error("%s was not recorded: %s", action, exc)

    def unlock(self, pin: str) -> Role:
        """Enter engineer mode; a wrong PIN raises AccessError with a message for the person at the station."""
        with self._lock:
            if self.store.problem:
                self._record("unlock_refused", "engineer mode", self.store.problem)
                raise AccessError(self.store.problem)
            if not self.store.has_pin:
                raise AccessError("no engineer PIN is set on this station; set one first")
            wait = self.seconds_blocked()
            if wait > 0:
                raise AccessError(f"too many wrong PINs: try again in {int(wait + 0.999)} s")
            if self.store.verify(pin):
                self._record("unlock", "engineer mode", self.store.user, required=True,
                             actor={"role": Role.ENGINEER.value, "user": self.store.user})
                self._failures = 0
                self._last_activity = self.clock()
                self._set_role(Role.ENGINEER)
                return self._role
            self._failures += 1
            self._record("unlock_failed", "engineer mode", {"failures": self._failures})
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
        """Set the first PIN (only on a station with no PIN history) or change it (engineer mode only)."""
        with self._lock:
            if self.store.problem:
                raise AccessError(self.store.problem)
            if self.store.has_pin:
                self.require_engineer("changing the PIN")
                action = "pin_change"
            else:
                history = self.store.pin_history()
                if history:
                    raise AccessError(f"a PIN was set on this station before ({history}): engineer mode locked; "
                                      "reset the PIN with `station pin --reset` (needs the station key)")
                action = "pin_set"
            if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
                raise AccessError("a PIN is 4 to 12 digits")
            self.store.set_pin(pin, user, action=action,
                               actor=self.actor if action == "pin_change" else {"role": "first-setup", "user": user})


def os_user() -> str:
    """The OS account running this process, as the audit log names the key holder."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "?"


def reset_pin(store: PinStore, pin: str, user: str = "engineer", reason: str = "") -> None:
    """Replace a lost, damaged or forgotten PIN: the key holder's act (`station pin --reset`), audited first."""
    if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
        raise AccessError("a PIN is 4 to 12 digits")
    store.set_pin(pin, user, action="pin_reset", actor={"role": "key-holder", "user": os_user()}, reason=reason)
