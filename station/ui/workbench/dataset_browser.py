"""The capture dataset: images per class with their counts, thumbnails, relabel, delete to the trash
and restore from it, and a retry for frames whose capture failed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from station.core.errors import StationError
from station.core.imageio import read_image
from station.core.registration import Registrar
from station.core.workbench.errors import WorkbenchError
from station.ui.image_canvas import ImageCanvas, to_qimage
from station.ui.workbench.workbench import Workbench

THUMB = 96
MAX_THUMBS = 400  # a class with thousands of images shows its newest ones; the count is exact


class DatasetBrowser(QWidget):
    def __init__(self, workbench: Workbench, parent=None) -> None:
        super().__init__(parent)
        self.workbench = workbench
        self._thumb_cache: dict[tuple[str, float], QIcon] = {}
        self.where = QLabel(self)
        self.where.setWordWrap(True)
        self.counts = QTableWidget(0, 2, self)
        self.counts.setHorizontalHeaderLabels(["Class", "Images"])
        self.counts.verticalHeader().hide()
        self.counts.horizontalHeader().setStretchLastSection(True)
        self.counts.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.counts.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.counts.setMaximumWidth(220)
        self.thumbs = QListWidget(self)
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB, THUMB))
        self.thumbs.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbs.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.thumbs.setUniformItemSizes(True)
        self.trash = QListWidget(self)
        self.trash.setMaximumHeight(110)
        self.trash.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.relabel_to = QComboBox(self)
        self.relabel_to.setEditable(True)
        self.relabel_to.setToolTip("Existing class, or type a new class name")
        self.relabel_button = QPushButton("Move selected to class", self)
        self.delete_button = QPushButton("Delete selected (to trash)", self)
        self.restore_button = QPushButton("Restore from trash", self)
        self.retry_button = QPushButton("Retry failed captures", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.preview = ImageCanvas(self)
        self.preview.placeholder = "Click an image to see it full size, with its labelled cell outlined"
        self.preview.setMinimumWidth(300)
        self.preview_caption = QLabel("", self)
        self.preview_caption.setWordWrap(True)

        left = QWidget(self)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("Images per class (click to filter)", self))
        lv.addWidget(self.counts, 1)
        right = QWidget(self)
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.thumbs, 1)
        edit = QHBoxLayout()
        edit.addWidget(self.relabel_to, 1)
        edit.addWidget(self.relabel_button)
        edit.addWidget(self.delete_button)
        rv.addLayout(edit)
        rv.addWidget(QLabel("Trash (deleted images can be restored)", self))
        rv.addWidget(self.trash)
        tr = QHBoxLayout()
        tr.addWidget(self.restore_button)
        tr.addWidget(self.retry_button)
        tr.addStretch(1)
        rv.addLayout(tr)
        preview = QWidget(self)
        pv = QVBoxLayout(preview)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(self.preview, 1)
        pv.addWidget(self.preview_caption)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(left)
        split.addWidget(right)
        split.addWidget(preview)
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.where)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

        self.counts.itemSelectionChanged.connect(self._fill_thumbs)
        self.thumbs.currentItemChanged.connect(self._show_preview)
        self.relabel_button.clicked.connect(self.relabel_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.restore_button.clicked.connect(self.restore_selected)
        self.retry_button.clicked.connect(self.retry_pending)
        workbench.dataset_changed.connect(self.refresh)
        workbench.role_changed.connect(self._on_role)
        self.refresh()
        self._on_role(workbench.session.role.value)

    # -- showing --------------------------------------------------------------------------------
    def _on_role(self, role: str) -> None:
        for b in (self.relabel_button, self.delete_button, self.restore_button, self.retry_button):
            b.setEnabled(role == "engineer")

    def selected_class(self) -> str | None:
        rows = {i.row() for i in self.counts.selectedItems()}
        if not rows:
            return None
        item = self.counts.item(min(rows), 0)
        return None if item is None or item.data(Qt.ItemDataRole.UserRole) == "*" else item.text()

    def refresh(self) -> None:
        ds = self.workbench.dataset
        keep = self.selected_class()
        try:
            counts = ds.counts()
            trash = ds.trash_items()
        except WorkbenchError as exc:
            self.status.setText(str(exc))
            counts, trash = {}, []
        pending = len(ds.pending)
        self.where.setText(f"Dataset folder: {ds.root}  \u2013  {sum(counts.values())} images in {len(counts)} "
                           f"classes" + (f"  \u2013  {pending} failed capture(s) waiting for a retry" if pending else ""))
        self.retry_button.setText(f"Retry failed captures ({pending})")
        self.counts.blockSignals(True)
        self.counts.setRowCount(len(counts) + 1)
        all_item = QTableWidgetItem("all classes")
        all_item.setData(Qt.ItemDataRole.UserRole, "*")
        self.counts.setItem(0, 0, all_item)
        self.counts.setItem(0, 1, QTableWidgetItem(str(sum(counts.values()))))
        select = 0
        for row, (label, n) in enumerate(counts.items(), start=1):
            self.counts.setItem(row, 0, QTableWidgetItem(label))
            count = QTableWidgetItem(str(n))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.counts.setItem(row, 1, count)
            if label == keep:
                select = row
        self.counts.selectRow(select)
        self.counts.blockSignals(False)
        names = list(counts) or [ds.ok_class]
        recipe = self.workbench.service.recipe
        for c in (recipe.doc.classes if recipe is not None else []):
            if c not in names:
                names.append(c)
        current = self.relabel_to.currentText()
        self.relabel_to.clear()
        self.relabel_to.addItems(names)
        if current:
            self.relabel_to.setCurrentText(current)
        self.trash.clear()
        for entry in trash:
            item = QListWidgetItem(f"{entry.get('original', entry['file'])}  (deleted)")
            item.setData(Qt.ItemDataRole.UserRole, entry["file"])
            self.trash.addItem(item)
        self._fill_thumbs()

    def _icon(self, path: Path) -> QIcon:
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            return QIcon()
        icon = self._thumb_cache.get(key)
        if icon is None:
            try:
                image = read_image(path)
            except Exception:  # noqa: BLE001 - an unreadable file gets an empty tile, not an error box
                return QIcon()
            h, w = image.shape[:2]
            s = THUMB / max(h, w)
            small = cv2.resize(image, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
            icon = self._thumb_cache[key] = QIcon(QPixmap.fromImage(to_qimage(small)))
        return icon

    def _fill_thumbs(self) -> None:
        self.thumbs.clear()
        try:
            items = self.workbench.dataset.items(self.selected_class())
        except WorkbenchError as exc:
            self.status.setText(str(exc))
            return
        for entry in items[-MAX_THUMBS:]:
            cell = f"\ncell c{entry.cell[0]} r{entry.cell[1]}" if entry.cell else ""
            item = QListWidgetItem(self._icon(entry.path), f"{entry.label}{cell}")
            item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            item.setToolTip(f"{entry.path.name}{cell.replace(chr(10), '  ')}")
            self.thumbs.addItem(item)

    def _show_preview(self, current, _previous=None) -> None:
        """The selected image full size; its labelled cell outlined through the running recipe's registration."""
        if current is None:
            self.preview.set_frame(None)
            self.preview_caption.setText("")
            return
        path = Path(current.data(Qt.ItemDataRole.UserRole))
        try:
            image = read_image(path)
        except StationError as exc:
            self.preview.set_frame(None)
            self.preview_caption.setText(str(exc))
            return
        text = f"{path.parent.name}/{path.name}  \u2013  {image.shape[1]} x {image.shape[0]} px"
        cell = next((i.cell for i in self.workbench.dataset.items(path.parent.name) if i.path == path), None)
        recipe = self.workbench.service.recipe
        if cell is not None and recipe is not None:
            text += f"  \u2013  defective cell: column {cell[0]}, row {cell[1]}"
            try:
                reg = Registrar(recipe.region, recipe.grid).register(image)
                g = recipe.grid
                w, h = g.size[0] / g.cols, g.size[1] / g.rows
                corners = np.array([[cell[0] * w, cell[1] * h], [(cell[0] + 1) * w, cell[1] * h],
                                    [(cell[0] + 1) * w, (cell[1] + 1) * h], [cell[0] * w, (cell[1] + 1) * h]])
                image = image.copy()
                thick = max(2, image.shape[1] // 200)
                cv2.polylines(image, [reg.to_frame(corners).round().astype(np.int32)], True, (255, 40, 40), thick)
            except StationError as exc:
                text += f" (not outlined: {exc})"
        self.preview.set_frame(image)
        self.preview_caption.setText(text)

    # -- editing --------------------------------------------------------------------------------
    def _selected_paths(self) -> list[str]:
        return [i.data(Qt.ItemDataRole.UserRole) for i in self.thumbs.selectedItems()]

    def _run(self, what: str, fn, items) -> int:
        done = 0
        try:
            self.workbench.require_engineer(what)
            for item in items:
                fn(item)
                done += 1
        except WorkbenchError as exc:
            self.status.setText(f"{what}: {exc} ({done} done)")
            self.workbench.report("error", str(exc))
        else:
            self.status.setText(f"{what}: {done} done")
        self.workbench.dataset_changed.emit()
        return done

    def relabel_selected(self) -> int:
        label = self.relabel_to.currentText().strip()
        return self._run(f"move to {label!r}", self._relabel_one, self._selected_paths())

    def _relabel_one(self, path: str) -> None:
        self.workbench.dataset.relabel(path, self.relabel_to.currentText().strip())

    def delete_selected(self) -> int:
        return self._run("delete", self.workbench.dataset.delete, self._selected_paths())

    def restore_selected(self) -> int:
        names = [i.data(Qt.ItemDataRole.UserRole) for i in self.trash.selectedItems()]
        return self._run("restore", self.workbench.dataset.restore, names)

    def retry_pending(self) -> int:
        return self._run("retry failed captures", self._retry_all, [None])

    def _retry_all(self, _unused) -> None:
        self.workbench.dataset.retry_pending()
