"""Small file-system helpers the workbench shares: durable atomic writes and OS errors worded for people."""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any


def describe(exc: OSError) -> str:
    """A short reason a person understands: 'the disk is full', 'the folder is read-only', ..."""
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return "the disk is full"
    if code == errno.EROFS:
        return "the disk is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (read-only folder?)"
    if code == errno.ENOENT:
        return "the folder does not exist (deleted, or the drive was unplugged?)"
    return exc.strerror or str(exc)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; some file systems refuse, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    Raises OSError; the old file (if any) is untouched and no temporary file is left behind.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(tmp, flags, 0o600 if mode is None else mode)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, doc: Any, mode: int | None = None) -> None:
    write_bytes_atomic(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), mode)


def read_json(path: Path, max_bytes: int) -> Any:
    """Parse a small JSON file; raises OSError, ValueError (bad JSON or too large)."""
    if path.stat().st_size > max_bytes:
        raise ValueError(f"file is larger than {max_bytes} bytes")
    return json.loads(path.read_text(encoding="utf-8"))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to an open descriptor and fsync it (os.write may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
