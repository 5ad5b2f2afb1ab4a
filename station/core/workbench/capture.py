"""Captured frames saved into a labelled dataset folder (`ROOT/<class>/*.png`), and the browser model over it.

Frames are written full size as lossless PNG (temporary file, fsync, rename); the defective cell,
where the engineer clicked one, goes into `manifest.json` in the format `station.core.dataset`
reads. Deleting moves a file to `ROOT/.trash/` from where it can be restored. A failed write
(disk full, read-only) raises CaptureError and keeps the frame in `pending` for a retry.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.core.engines.base import ok_first
from station.core.dataset import MAX_MANIFEST_BYTES, OK_CLASS
from station.core.imageio import is_image_file
from station.core.workbench._fs import describe, fsync_dir, read_json, write_bytes_atomic, write_json_atomic
from station.core.workbench.audit import AuditLog
from station.core.workbench.errors import AuditError, CaptureError

logger = logging.getLogger(__name__)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRASH = ".trash"
TRASH_INDEX = "index.json"
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
MAX_SIDE = 20000


@dataclass(frozen=True)
class DatasetItem:
    path: Path
    label: str
    cell: tuple[int, int] | None

    @property
    def key(self) -> str:
        return f"{self.label}/{self.path.name}"


@dataclass
class PendingFrame:
    """A frame whose capture failed; it stays here (in memory) until `retry_pending` stores it."""

    frame: np.ndarray
    label: str
    cell: tuple[int, int] | None
    error: str


def check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL.match(label):
        raise CaptureError(f"{label!r} is not a usable class name (letters, digits, '_' or '-', up to 64)")
    return label


def _check_cell(cell) -> tuple[int, int] | None:
    if cell is None:
        return None
    try:
        col, row = (int(v) for v in cell)
    except (TypeError, ValueError):
        raise CaptureError(f"a cell is (column, row), not {cell!r}") from None
    if not (0 <= col < 64 and 0 <= row < 64):
        raise CaptureError(f"cell {(col, row)} is outside any grid")
    return col, row


def encode_png(frame: np.ndarray) -> bytes:
    """Lossless PNG of an RGB/RGBA/grey uint8 or uint16 frame, at its full size."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise CaptureError("the frame to capture is not an image")
    if frame.dtype not in (np.uint8, np.uint16):
        raise CaptureError(f"frames of type {frame.dtype} cannot be stored losslessly as PNG")
    if max(frame.shape[:2]) > MAX_SIDE:
        raise CaptureError(f"frame of {frame.shape[1]}x{frame.shape[0]} px is too large")
    if frame.ndim == 3:
        channels = frame.shape[2]
        if channels == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        elif channels == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGBA2BGRA)
        elif channels != 1:
            raise CaptureError(f"frames with {channels} channels cannot be stored")
    ok, data = cv2.imencode(".png", np.ascontiguousarray(frame), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise CaptureError("the frame could not be encoded as PNG")
    return data.tobytes()


class DatasetFolder:
    """Capture into, browse and edit an ImageFolder dataset. Thread-safe (one lock per folder object)."""

    def __init__(self, root: str | Path, ok_class: str = OK_CLASS, audit: AuditLog | None = None,
                 actor: Callable[[], dict[str, str]] | None = None) -> None:
        self.root = Path(root)
        self.ok_class = ok_class
        self.pending: list[PendingFrame] = []
        self._lock = threading.RLock()
        self.audit = audit  # capture, relabel, delete and restore are recorded here, by `actor()`
        self._actor = actor

    def _record(self, action: str, what: str, old: Any = None, new: Any = None) -> None:
        """Audit a change of the dataset before it is made; one that cannot be recorded is not made."""
        if self.audit is None:
            return
        actor = self._actor() if self._actor is not None else {"role": "?", "user": "?"}
        try:
            self.audit.record(actor, action, what, old, new, dataset=str(self.root))
        except AuditError as exc:
            raise CaptureError(str(exc)) from None

    # -- manifest ------------------------------------------------------------------------------
    def _read_manifest(self, path: Path | None = None) -> dict[str, Any]:
        path = path or self.root / MANIFEST
        if not path.exists():
            return {"schema": 1, "images": []}
        try:
            doc = read_json(path, MAX_MANIFEST_BYTES)
        except OSError as exc:
            raise CaptureError(f"cannot read {path}: {describe(exc)}") from None
        except ValueError as exc:
            raise CaptureError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not all(
                isinstance(item, dict) and isinstance(item.get("file"), str) for item in doc["images"]):
            raise CaptureError(f"{path} is not a dataset manifest (expected an 'images' list of {{'file': ...}})")
        return doc

    def _write_manifest(self, doc: dict[str, Any], path: Path | None = None) -> None:
        write_json_atomic(path or self.root / MANIFEST, doc, mode=0o644)

    @staticmethod
    def _entries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {item["file"]: item for item in doc["images"]}

    # -- browsing ------------------------------------------------------------------------------
    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise CaptureError(f"the dataset folder {self.root} is gone (deleted, or its drive unplugged?)")

    def classes(self) -> list[str]:
        """Class folders, the OK class first."""
        if not self.root.is_dir():
            return []
        names = {p.name for p in self.root.iterdir() if p.is_dir() and LABEL.match(p.name)}
        return ok_first(names, self.ok_class)

    def items(self, label: str | None = None) -> list[DatasetItem]:
        with self._lock:
            labels = [check_label(label)] if label else self.classes()
            entries = self._entries(self._read_manifest()) if self.root.is_dir() else {}
            out = []
            for lab in labels:
                folder = self.root / lab
                if not folder.is_dir():
                    continue
                for p in sorted(p for p in folder.iterdir() if is_image_file(p)):
                    cell = entries.get(f"{lab}/{p.name}", {}).get("cell")
                    out.append(DatasetItem(p, lab, _safe_cell(cell)))
            return out

    def counts(self) -> dict[str, int]:
        with self._lock:  # a capture in another thread may add a class folder between the two reads
            out = {c: 0 for c in self.classes()}
            for item in self.items():
                out[item.label] += 1
            return out

    # -- capture -------------------------------------------------------------------------------
    def capture(self, frame: np.ndarray, label: str, cell: tuple[int, int] | None = None) -> DatasetItem:
        """Store a frame under `label` (an existing or a new class). On failure the frame is kept in `pending`."""
        check_label(label)
        cell = _check_cell(cell)
        data = encode_png(frame)
        try:
            item = self._store(data, label, cell)
        except CaptureError as exc:
            self.pending.append(PendingFrame(np.array(frame, copy=True), label, cell, str(exc)))
            raise CaptureError(f"{exc}; the frame is kept for a retry ({len(self.pending)} waiting)") from None
        self._record_capture(item)
        return item

    def _record_capture(self, item: DatasetItem) -> None:
        """A capture adds a file and loses nothing: it is recorded after it is saved (its name known)."""
        try:
            self._record("capture", f"{item.label}/{item.path.name}", None,
                         {"label": item.label, "cell": list(item.cell) if item.cell else None})
        except CaptureError as exc:
            log.error("the capture of %s was not recorded: %s", item.path, exc)

    def retry_pending(self) -> list[DatasetItem]:
        """Store the frames whose capture failed; those that fail again stay pending (the error is raised)."""
        stored = []
        with self._lock:
            while self.pending:
                p = self.pending[0]
                stored.append(self._store(encode_png(p.frame), p.label, p.cell))
                self.pending.pop(0)
                self._record_capture(stored[-1])
        return stored

    def _store(self, png: bytes, label: str, cell: tuple[int, int] | None) -> DatasetItem:
        with self._lock:
            self._check_root()
            folder = self.root / label
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            path = folder / f"{label}_{stamp}.png"
            n = 1
            while path.exists():
                path = folder / f"{label}_{stamp}_{n}.png"
                n += 1
            try:
                doc = self._read_manifest()
                folder.mkdir(exist_ok=True)
                write_bytes_atomic(path, png, mode=0o644)
                try:
                    doc["images"].append({"file": f"{label}/{path.name}", "class": label,
                                          "cell": list(cell) if cell else None})
                    self._write_manifest(doc)
                except OSError:
                    path.unlink(missing_ok=True)  # no image without its manifest entry
                    raise
            except OSError as exc:
                raise CaptureError(f"cannot save the frame into {folder}: {describe(exc)}") from None
            return DatasetItem(path, label, cell)

    # -- editing -------------------------------------------------------------------------------
    def _own(self, path: str | Path) -> tuple[Path, str]:
        path = Path(path)
        if (path.parent.parent.resolve() != self.root.resolve() or not LABEL.match(path.parent.name)
                or not is_image_file(path)):
            raise CaptureError(f"{path} is not an image of the dataset {self.root}")
        return path, path.parent.name

    def relabel(self, path: str | Path, label: str, cell: tuple[int, int] | None | str = "keep") -> DatasetItem:
        """Move an image to another class (new or existing); its manifest entry follows it."""
        check_label(label)
        with self._lock:
            path, old_label = self._own(path)
            doc = self._read_manifest()
            entries = self._entries(doc)
            old_key = f"{old_label}/{path.name}"
            entry = entries.get(old_key, {"file": old_key, "class": old_label, "cell": None})
            new_cell = _safe_cell(entry.get("cell")) if cell == "keep" else _check_cell(cell)
            if label == self.ok_class:
                new_cell = None
            target = self.root / label / path.name
            if target.exists() and target != path:
                target = target.with_name(f"{target.stem}_{old_label}{target.suffix}")
            new_entry = {**entry, "file": f"{label}/{target.name}", "class": label,
                         "cell": list(new_cell) if new_cell else None}
            doc["images"] = [i for i in doc["images"] if i["file"] != old_key] + [new_entry]
            self._record("relabel", old_key, {"label": old_label, "cell": entry.get("cell")},
                         {"label": label, "file": new_entry["file"], "cell": new_entry["cell"]})
            self._move_with_manifest(path, target, doc, "relabel")
            return DatasetItem(target, label, new_cell)

    def delete(self, path: str | Path) -> Path:
        """Move an image into `.trash/` (with its manifest entry) so it can be restored; returns the trash path."""
        with self._lock:
            path, label = self._own(path)
            doc = self._read_manifest()
            key = f"{label}/{path.name}"
            entry = self._entries(doc).get(key, {"file": key, "class": label, "cell": None})
            trash = self.root / TRASH
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = trash / f"{stamp}__{label}__{path.name}"
            self._record("delete", key, {"label": label, "cell": entry.get("cell")}, {"trash": target.name})
            try:
                trash.mkdir(exist_ok=True)
                index = self._read_manifest(trash / TRASH_INDEX)
                index["images"].append({**entry, "file": target.name, "original": key})
                self._write_manifest(index, trash / TRASH_INDEX)
            except OSError as exc:
                raise CaptureError(f"cannot move {path.name} to the trash: {describe(exc)}") from None
            doc["images"] = [i for i in doc["images"] if i["file"] != key]
            self._move_with_manifest(path, target, doc, "delete")
            return target

    def trash_items(self) -> list[dict[str, Any]]:
        """Trashed images, each {'file': name in .trash, 'original': 'class/name', 'cell': ...}."""
        index = self.root / TRASH / TRASH_INDEX
        if not index.exists():
            return []
        return [i for i in self._read_manifest(index)["images"] if (self.root / TRASH / i["file"]).is_file()]

    def restore(self, trash_name: str) -> DatasetItem:
        """Put a trashed image back under its class, with its cell."""
        with self._lock:
            trash = self.root / TRASH
            index = self._read_manifest(trash / TRASH_INDEX)
            entry = next((i for i in index["images"] if i["file"] == trash_name), None)
            source = trash / Path(trash_name).name
            if entry is None or not source.is_file():
                raise CaptureError(f"{trash_name} is not in the trash of {self.root}")
            original = str(entry.get("original", ""))
            label, _, name = original.partition("/")
            check_label(label)
            if not name or "/" in name or name.startswith("."):
                raise CaptureError(f"the trash entry {trash_name} is damaged")
            target = self.root / label / name
            n = 1
            while target.exists():
                target = self.root / label / f"{Path(name).stem}_restored{n}{Path(name).suffix}"
                n += 1
            cell = _safe_cell(entry.get("cell"))
            doc = self._read_manifest()
            kept = {k: v for k, v in entry.items() if k not in ("file", "original", "class", "cell")}
            doc["images"].append({**kept, "file": f"{label}/{target.name}", "class": label,
                                  "cell": list(cell) if cell else None})
            try:
                target.parent.mkdir(exist_ok=True)
            except OSError as exc:
                raise CaptureError(f"cannot restore {name}: {describe(exc)}") from None
            self._record("restore", f"{label}/{target.name}", {"trash": trash_name}, {"label": label})
            self._move_with_manifest(source, target, doc, "restore")
            index["images"] = [i for i in index["images"] if i["file"] != trash_name]
            try:
                self._write_manifest(index, trash / TRASH_INDEX)
            except OSError as exc:  # a stale trash entry whose file is gone is not listed by trash_items
                logger.warning("the trash index of %s could not be updated: %s", trash, exc)
            return DatasetItem(target, label, cell)

    def _move_with_manifest(self, source: Path, target: Path, doc: dict[str, Any], what: str) -> None:
        """Rename the file, then write the manifest; if the manifest cannot be written, move the file back."""
        try:
            target.parent.mkdir(exist_ok=True)
            os.rename(source, target)
        except OSError as exc:
            raise CaptureError(f"cannot {what} {source.name}: {describe(exc)}") from None
        try:
            self._write_manifest(doc)
        except OSError as exc:
            try:
                os.rename(target, source)
            except OSError:
                pass
            raise CaptureError(f"cannot {what} {source.name}: the manifest cannot be written "
                               f"({describe(exc)})") from None
        fsync_dir(source.parent)
        fsync_dir(target.parent)


def _safe_cell(cell) -> tuple[int, int] | None:
    if cell is None:
        return None
    try:
        return _check_cell(cell)
    except CaptureError:
        return None


__all__ = ["DatasetFolder", "DatasetItem", "PendingFrame", "encode_png", "check_label"]
