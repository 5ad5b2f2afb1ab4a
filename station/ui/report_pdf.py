"""The shift report as PDF, through Qt (QTextDocument printed by QPdfWriter): the report's HTML with each SVG
chart drawn into an image first, since Qt's rich text does not draw inline SVG."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QMarginsF, QSizeF, QUrl
from PySide6.QtGui import QColor, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QTextDocument
from PySide6.QtSvg import QSvgRenderer

from station.core.errors import StationError
from station.core.report import ShiftReport, render_html

logger = logging.getLogger(__name__)

SCALE = 2  # charts drawn at twice their size, so they stay sharp in print


def chart_image(svg: str) -> QImage:
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    if not renderer.isValid():
        raise StationError("a report chart could not be drawn")
    size = renderer.defaultSize()
    image = QImage(size.width() * SCALE, size.height() * SCALE, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    try:
        renderer.render(painter)
    finally:
        painter.end()
    return image


def report_document(report: ShiftReport) -> QTextDocument:
    document = QTextDocument()

    def chart(index: int, svg: str) -> str:
        image = chart_image(svg)
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"chart{index}"), image)
        return f'<img src="chart{index}" width="{image.width() // SCALE}" height="{image.height() // SCALE}">'

    document.setHtml(render_html(report, chart))
    return document


def write_pdf(report: ShiftReport, path: str | Path) -> Path:
    """The report as an A4 PDF at `path` (refused if it exists; written beside it, then renamed)."""
    path = Path(path)
    if path.exists():
        raise StationError(f"{path} exists: choose another name (the report never overwrites a file)")
    tmp = path.with_name(f".{path.name}.tmp")
    document = report_document(report)
    writer = QPdfWriter(str(tmp))
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter))
    writer.setResolution(150)
    writer.setTitle("Shift report")
    writer.setCreator("inspection station")
    # lay the page out at about 96 dpi text widths: A4 minus margins is ~700 px wide
    document.setPageSize(QSizeF(700, 700 * 273 / 186))
    document.print_(writer)
    del writer  # the file is finished when the writer goes
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise StationError(f"the PDF could not be written to {path}")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StationError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
