"""The plus-minus analysis (the QEU "plus-minus table", DESIGN §2.2): for one image, every cell's
metrics against each standard vector with their signs, the RT distance to each unit space and the
attention's class distribution, so an engineer sees which standard vector each cell leans to.

The data (`PlusMinusTable`) is computed here, Qt-free, for the CLI and the GUI alike; `render_table`
draws it as an image with OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.core.errors import EngineError
from station.core.imageio import write_image
from station.core.inspector import Inspector
from station.core.recipe import Recipe
from station.core.engines.rt import METRIC_SETS


@dataclass
class CellRow:
    cell: tuple[int, int]  # (col, row)
    metrics: dict[str, list[float]]  # standard -> raw metrics (Y1, Y2[, Y3])
    deviation: dict[str, list[float]]  # standard -> signed deviation from that unit space, in its SDs
    distance: dict[str, float]  # standard -> RT distance D^2
    probs: dict[str, float] | None  # class -> attention probability (None in anomaly fallback)
    odds: float | None  # log(p(defect) / p(good))
    leans_to: str  # the standard of smallest RT distance
    shift: list[float] | None = None  # the displacement head's token (see shift_names), where the recipe has the head
    shift_probs: dict[str, float] | None = None  # class -> the displacement head's probability


@dataclass
class PlusMinusTable:
    image: str
    standards: list[str]
    metric_names: list[str]
    classes: list[str]
    verdict: str
    label: str
    score: float
    top_cell: tuple[int, int] | None
    class_probs: dict[str, float] | None
    rows: list[CellRow] = field(default_factory=list)
    crop: np.ndarray | None = None  # registered crop (H, W, 3) RGB, for the picture; not in JSON
    shift_names: list[str] | None = None  # what each entry of a cell's displacement token is

    def to_dict(self) -> dict[str, Any]:
        def clean(v):
            if isinstance(v, float):
                return round(v, 6) if np.isfinite(v) else None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "image": self.image, "standards": self.standards, "metric_names": self.metric_names,
            "shift_names": self.shift_names, "classes": self.classes, "verdict": self.verdict, "label": self.label, "score": float(self.score),
            "top_cell": list(self.top_cell) if self.top_cell else None, "class_probs": self.class_probs,
            "cells": [{"cell": list(r.cell), "metrics": r.metrics, "deviation": r.deviation, "distance": r.distance,
                       "probs": r.probs, "odds": r.odds, "leans_to": r.leans_to,
                       "shift": r.shift, "shift_probs": r.shift_probs} for r in self.rows],
        })


def plus_minus_table(recipe: Recipe, image: np.ndarray, name: str = "") -> PlusMinusTable:
    """Register the image with the recipe, inspect it, and tabulate the engine's analysis per cell."""
    engine = recipe.engine
    if not hasattr(engine, "analyse"):
        raise EngineError(f"the plus-minus analysis needs the rt-attention engine; recipe {recipe.name!r} uses "
                          f"{engine.name!r}")
    result = Inspector(recipe).inspect(image)
    if result.registered is None:
        raise EngineError(f"no part to analyse: {result.message}")
    data = engine.analyse(result.registered.crop)
    standards = engine.standards
    metric_names = list(METRIC_SETS[engine.config["metrics"]])
    if engine.n_parts > 1:  # one set of metrics per block of the cell, blocks in row-major order
        metric_names = [f"{name}.{b}" for b in range(engine.n_parts) for name in metric_names]
    classes = list(engine.classes)
    rows = []
    for i in range(engine.grid.n_cells):
        dist = {s: float(data["distance"][i, j]) for j, s in enumerate(standards)}
        probs = None
        if "log_probs" in data:
            probs = {c: float(np.exp(data["log_probs"][i, k])) for k, c in enumerate(classes)}
        rows.append(CellRow(
            engine.grid.cell(i),
            {s: [float(v) for v in data["metrics"][i, j]] for j, s in enumerate(standards)},
            {s: [float(v) for v in data["deviation"][i, j]] for j, s in enumerate(standards)},
            dist, probs, float(data["odds"][i]) if "odds" in data else None, min(dist, key=dist.get),
            [float(v) for v in data["shift"][i]] if "shift" in data else None,
            {c: float(np.exp(data["shift_log_probs"][i, k])) for k, c in enumerate(classes)}
            if "shift_log_probs" in data else None))
    return PlusMinusTable(name, standards, metric_names, classes, result.verdict.value, result.label,
                          float(result.score), result.top_cell, result.class_probs, rows, result.registered.crop,
                          engine.shift_names if "shift" in data else None)


# -- drawing ---------------------------------------------------------------------------------
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ROW_H, _COL_W, _LABEL_W = 22, 62, 70
_PLUS, _MINUS = np.array([60, 60, 220]), np.array([220, 120, 40])  # BGR: red for +, blue for -
# column heads that fit a column (the JSON keeps the full names)
_SHORT = {"d_contrast": "d contr", "d_top": "d top", "d_bottom": "d bottom", "chroma_dx": "chr dx",
          "chroma_dy": "chr dy", "chroma_r": "chr r"}


def _signed_colour(z: float) -> tuple[int, int, int]:
    """White at 0, towards red for +, towards blue for -, saturating at 3 standard deviations."""
    if not np.isfinite(z):
        return (150, 150, 150)
    a = min(abs(z) / 3.0, 1.0)
    c = (1 - a) * np.array([255, 255, 255]) + a * (_PLUS if z > 0 else _MINUS)
    return tuple(int(v) for v in c)


def _text(img, s, x, y, scale=0.42, colour=(20, 20, 20), thick=1):
    cv2.putText(img, s, (int(x), int(y)), _FONT, scale, colour, thick, cv2.LINE_AA)


def render_table(table: PlusMinusTable) -> np.ndarray:
    """The table as a BGR image: one row per cell, per standard the signed deviations (coloured + red,
    - blue) and D^2 (the smallest, the standard the cell leans to, outlined), then the attention, then
    the displacement head's token and class probabilities (the top cell's class joins the two heads)."""
    m, s = len(table.metric_names), len(table.standards)
    n_prob = len(table.classes) if table.rows and table.rows[0].probs is not None else 0
    shifted = bool(table.rows) and table.rows[0].shift is not None and table.rows[0].shift_probs is not None
    names = list(table.shift_names or [f"t{k}" for k in range(len(table.rows[0].shift))]) if shifted else []
    n_shift = len(names) + len(table.classes) if shifted else 0
    cols = s * (m + 1) + n_prob + (1 if n_prob else 0) + n_shift
    thumb_w = 0
    crop = table.crop
    if crop is not None:
        scale = (len(table.rows) * _ROW_H) / crop.shape[0]
        thumb = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_NEAREST)
        thumb_w = thumb.shape[1] + 20
    top = 3 * _ROW_H + 2 * _ROW_H
    width = thumb_w + _LABEL_W + cols * _COL_W + 10
    height = top + len(table.rows) * _ROW_H + _ROW_H
    img = np.full((height, width, 3), 255, np.uint8)
    probs = ", ".join(f"{k} {v:.2f}" for k, v in (table.class_probs or {}).items())
    _text(img, f"{table.image}   verdict {table.verdict}   class {table.label}   score {table.score:.3g}", 8, 18,
          0.5, thick=1)
    _text(img, f"top cell {table.top_cell}   {probs}", 8, 18 + _ROW_H, 0.45)
    _text(img, "deviation from each unit space in SDs: red +, blue -; D^2 outlined where smallest", 8,
          18 + 2 * _ROW_H, 0.4, (90, 90, 90))
    x0 = thumb_w + _LABEL_W
    y_head = 3 * _ROW_H
    for j, std in enumerate(table.standards):  # group headers
        gx = x0 + j * (m + 1) * _COL_W
        cv2.rectangle(img, (gx, y_head), (gx + (m + 1) * _COL_W - 2, y_head + _ROW_H - 3), (235, 235, 235), -1)
        _text(img, f"vs {std}", gx + 4, y_head + 15, 0.45)
        for k, name in enumerate([*table.metric_names, "D^2"]):
            _text(img, name, gx + k * _COL_W + 6, y_head + _ROW_H + 15, 0.42)
    if n_prob:
        gx = x0 + s * (m + 1) * _COL_W
        cv2.rectangle(img, (gx, y_head), (gx + (n_prob + 1) * _COL_W - 2, y_head + _ROW_H - 3), (235, 235, 235), -1)
        _text(img, "attention p(class)", gx + 4, y_head + 15, 0.45)
        for k, name in enumerate([*table.classes, "logodds"]):
            _text(img, name[:7], gx + k * _COL_W + 4, y_head + _ROW_H + 15, 0.4)
    gx_shift = x0 + (s * (m + 1) + n_prob + (1 if n_prob else 0)) * _COL_W
    if shifted:
        cv2.rectangle(img, (gx_shift, y_head), (gx_shift + n_shift * _COL_W - 2, y_head + _ROW_H - 3),
                      (235, 235, 235), -1)
        _text(img, "displacement head: token, then p(class)", gx_shift + 4, y_head + 15, 0.45)
        for k, name in enumerate([*[_SHORT.get(n, n) for n in names], *table.classes]):
            _text(img, name[:8], gx_shift + k * _COL_W + 4, y_head + _ROW_H + 15, 0.4)
    for r, row in enumerate(table.rows):
        y = top + r * _ROW_H
        is_top = table.top_cell is not None and tuple(row.cell) == tuple(table.top_cell)
        if is_top:
            cv2.rectangle(img, (thumb_w, y), (width - 4, y + _ROW_H - 1), (0, 200, 255), -1)
        _text(img, f"c{row.cell[0]} r{row.cell[1]}", thumb_w + 6, y + 15, 0.42, thick=2 if is_top else 1)
        for j, std in enumerate(table.standards):
            gx = x0 + j * (m + 1) * _COL_W
            for k, z in enumerate(row.deviation[std]):
                x = gx + k * _COL_W
                cv2.rectangle(img, (x + 1, y + 1), (x + _COL_W - 2, y + _ROW_H - 2), _signed_colour(z), -1)
                _text(img, f"{z:+.2f}" if abs(z) < 100 else f"{z:+.0e}", x + 4, y + 15, 0.4)
            x = gx + m * _COL_W
            d2 = row.distance[std]
            _text(img, f"{d2:.3g}", x + 4, y + 15, 0.4)
            if std == row.leans_to:
                cv2.rectangle(img, (x + 1, y + 1), (x + _COL_W - 2, y + _ROW_H - 2), (0, 150, 0), 2)
        if row.probs is not None:
            gx = x0 + s * (m + 1) * _COL_W
            for k, c in enumerate(table.classes):
                p = row.probs[c]
                x = gx + k * _COL_W
                shade = tuple(int(v) for v in (1 - p) * np.array([255, 255, 255]) + p * np.array([120, 210, 120]))
                cv2.rectangle(img, (x + 1, y + 1), (x + _COL_W - 2, y + _ROW_H - 2), shade, -1)
                _text(img, f"{p:.2f}", x + 6, y + 15, 0.4)
            odds = row.odds if row.odds is not None else float("nan")
            _text(img, f"{odds:+.1f}" if abs(odds) < 1e4 else f"{odds:+.0e}", gx + n_prob * _COL_W + 4, y + 15, 0.4)
        if shifted and row.shift is not None and row.shift_probs is not None:
            for k, v in enumerate(row.shift):
                _text(img, f"{v:+.2f}", gx_shift + k * _COL_W + 4, y + 15, 0.4)
            for k, c in enumerate(table.classes):
                p = row.shift_probs[c]
                x = gx_shift + (len(names) + k) * _COL_W
                shade = tuple(int(v) for v in (1 - p) * np.array([255, 255, 255]) + p * np.array([120, 210, 120]))
                cv2.rectangle(img, (x + 1, y + 1), (x + _COL_W - 2, y + _ROW_H - 2), shade, -1)
                _text(img, f"{p:.2f}", x + 6, y + 15, 0.4)
    if crop is not None:
        img[top: top + thumb.shape[0], 8: 8 + thumb.shape[1]] = thumb
        if table.top_cell is not None:
            cell_px = thumb.shape[0] / len(set(r.cell[1] for r in table.rows))
            c, rr = table.top_cell
            cv2.rectangle(img, (int(8 + c * cell_px), int(top + rr * cell_px)),
                          (int(8 + (c + 1) * cell_px), int(top + (rr + 1) * cell_px)), (0, 0, 255), 2)
    return img


def write_explanation(table: PlusMinusTable, out_dir: str | Path, stem: str) -> dict[str, str]:
    """Write `<stem>_plusminus.png` and `.json` into out_dir; returns their paths."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, js = out / f"{stem}_plusminus.png", out / f"{stem}_plusminus.json"
    write_image(png, cv2.cvtColor(render_table(table), cv2.COLOR_BGR2RGB))
    js.write_text(json.dumps(table.to_dict(), indent=1) + "\n", encoding="utf-8")
    return {"png": str(png), "json": str(js)}
