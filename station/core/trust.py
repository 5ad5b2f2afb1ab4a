"""The station key: a random secret in its own 0600 file that seals (HMAC-SHA256) what the station trusts.

Recipes, the active-version pointer, the PIN file and the audit log's chain carry a seal made with
this key. A SHA-256 anyone can recompute from a file; a seal needs the key, which lives outside
the sealed files (SECURITY.md says whom this stops and whom it cannot). Each kind of sealed thing
has its own domain string, so a seal made for one can never be replayed as another.

The key lives in `STATION_KEY_DIR`, else the station's config folder. It is made on first use
(exclusively, so two processes never make two keys) and refused when other users may read it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from station.core.errors import StationError

log = logging.getLogger(__name__)

KEY_FILE = "station.key"
KEY_BYTES = 32
SEAL_PREFIX = "hmac-sha256"
_cache: dict[str, tuple[tuple[int, ...], bytes]] = {}
_cache_lock = threading.Lock()


class TrustError(StationError):
    """The station key cannot be made or read, or a seal does not match."""


def key_dir() -> Path:
    """`STATION_KEY_DIR`, else the station's config folder (the key sits beside the settings)."""
    env = os.environ.get("STATION_KEY_DIR")
    if env:
        return Path(env)
    from station.core.settings import config_dir

    return config_dir()


def key_path() -> Path:
    return key_dir() / KEY_FILE


def key_exists() -> bool:
    return key_path().is_file()


def _read_key(path: Path) -> bytes:
    try:
        st = path.stat()
        if os.name == "posix" and st.st_mode & 0o077:
            raise TrustError(f"the station key {path} may be read by other users (mode "
                             f"{st.st_mode & 0o777:o}); run `chmod 600 {path}` and start again")
        if st.st_size > 256:
            raise TrustError(f"the station key {path} is damaged (too large); restore it from a backup")
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, TrustError):
            raise
        raise TrustError(f"cannot read the station key {path}: {exc}") from None
    if len(key) != KEY_BYTES:
        raise TrustError(f"the station key {path} is damaged ({len(key)} bytes, not {KEY_BYTES}); "
                         "restore it from a backup")
    return key


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        data = (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("made a new station key at %s", path)


def station_key(create: bool = True) -> bytes:
    """The key's bytes; made on first use when `create`. Raises TrustError with a one-line reason."""
    path = key_path()
    with _cache_lock:
        try:
            st = path.stat()
        except FileNotFoundError:
            if not create:
                raise TrustError(f"there is no station key at {path}") from None
            try:
                _create_key(path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError as exc:
                raise TrustError(f"cannot make the station key {path}: {exc.strerror or exc}") from None
            st = path.stat()
        except OSError as exc:
            raise TrustError(f"cannot read the station key {path}: {exc.strerror or exc}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_mode, st.st_size)
        cached = _cache.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
        key = _read_key(path)
        _cache[str(path)] = (stamp, key)
        return key


def key_id(key: bytes) -> str:
    """A short public name of a key (so a message can tell "made on another station" from "edited")."""
    return hashlib.sha256(b"station-key-id\0" + key).hexdigest()[:12]


def canonical(doc: Any) -> bytes:
    """The bytes a JSON document is sealed as: sorted keys, no spaces, so formatting never matters."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def seal(domain: str, payload: bytes, key: bytes | None = None) -> str:
    """`hmac-sha256:<key id>:<hex>` over `domain` and `payload`."""
    key = station_key() if key is None else key
    mac = hmac.new(key, domain.encode("ascii") + b"\0" + payload, hashlib.sha256).hexdigest()
    return f"{SEAL_PREFIX}:{key_id(key)}:{mac}"


def seal_problem(domain: str, payload: bytes, sealed: str, key: bytes | None = None) -> str:
    """'' when `sealed` is this station's seal of `payload`, else why not (for a one-line message)."""
    if not sealed:
        return "it carries no seal of this station"
    key = station_key() if key is None else key
    parts = str(sealed).split(":")
    if len(parts) != 3 or parts[0] != SEAL_PREFIX:
        return "its seal is not a seal this station makes"
    if parts[1] != key_id(key):
        return "it was sealed with another station's key (made elsewhere, or this station's key was replaced)"
    if not hmac.compare_digest(seal(domain, payload, key), str(sealed)):
        return "its seal does not match its content: it was changed after it was sealed"
    return ""


__all__ = ["TrustError", "canonical", "key_dir", "key_exists", "key_id", "key_path", "seal", "seal_problem",
           "station_key"]
