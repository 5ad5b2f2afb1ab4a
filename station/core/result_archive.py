"""The result log's image archive: images of committed rows are encoded and written by a thread of their own
(a PNG of a 2048 px frame takes hundreds of ms; no verdict waits for it), atomically, and their paths then
recorded in the rows. A mixin of ResultStore (station/core/results.py), which owns the queue and the state."""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from station.core.errors import StationError
from station.core.imageio import to_rgb
from station.core.log_ticket import LogTicket, cause_of
from station.core.result_rows import LIMITS, InspectionRow, note_on, safe_text

logger = logging.getLogger(__name__)


@dataclass
class Pending:
    row: dict
    image: np.ndarray | None
    ticket: LogTicket


class ImageArchive:
    """The archive half of the result store: what the archiver thread does with each committed row's image."""

    def _run_archiver(self) -> None:
        """The archive thread: encode and write images of committed rows, then record their paths."""
        while True:
            item = self._images.get()
            if item is None:
                return
            try:
                self._archive_images([item])
                self._record_images([item])
            except Exception as exc:  # noqa: BLE001 - the archiver never dies either
                logger.exception("image archiver: unexpected error; it carries on")
                self.writer_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            finally:
                self._release_images([item])

    def _record_images(self, items: list[Pending]) -> None:
        try:
            with Session(self._engine) as s, s.begin():
                for item in items:
                    s.execute(update(InspectionRow).where(InspectionRow.uid == item.row["uid"])
                              .values(image_path=item.row["image_path"], message=item.row["message"]))
        except (SQLAlchemyError, OSError) as exc:
            logger.error("result log: %d archived images could not be recorded in their rows (%s): %s", len(items),
                         cause_of(exc), ", ".join(str(i.row["image_path"]) for i in items))

    def _release_images(self, batch: list[Pending]) -> None:
        with self._lock:
            for item in batch:
                if item.image is not None:
                    self._image_bytes -= item.image.nbytes
                    item.image = None

    def _archive_images(self, batch: list[Pending]) -> None:
        for item in batch:
            if item.image is None:
                continue
            try:
                path, nbytes = self._archive(item)
            except (OSError, StationError, cv2.error) as exc:
                cause = cause_of(exc) if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) \
                    else "archive not writable"
                if cause != self.archive_cause:
                    logger.error("result log: image not archived (%s): %s", cause, exc)
                self.archive_cause = cause
                self.images_dropped += 1
                item.row["message"] = note_on(item.row["message"], f"image not archived: {cause}")
                continue
            item.row["image_path"] = safe_text(str(path), LIMITS["image_path"])
            self.archive_cause = ""
            if self.retention is not None:
                self.retention.archived(nbytes)

    def _archive(self, item: Pending) -> tuple[Path, int]:
        stamp = item.row["time"]
        folder = self.archive_dir / stamp.strftime("%Y%m%d") / item.row["verdict"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stamp.strftime('%H%M%S_%f')}_{item.ticket.uid[:8]}.png"
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(to_rgb(item.image), cv2.COLOR_RGB2BGR))
        if not ok:
            raise StationError("the image could not be encoded as PNG")
        data = encoded.tobytes()
        self.write_archive_file(path, data)
        return path, len(data)

    @staticmethod
    def write_archive_file(path: Path, data: bytes) -> None:
        """Atomic: a temporary file, then a rename; a failed write leaves no half file behind."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
