"""Where the station looked, drawn over the frame: the per-cell anomaly map, the part's outline and
cell grid, and the defective cell, rendered once per result (numpy/OpenCV, no Qt).

Engines score on different scales, so a cell's colour comes from its score divided by the recipe's
NG threshold: 1.0 is "at the NG threshold" for every engine, and the same colour means the same
thing whatever the recipe. An engine whose cell scores are shares of its attention (cell_scale
"share", station/core/engines/base.py) says which pin, not how bad: its top cell takes the image
score's colour and the other cells that colour in proportion to their share.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from station.core.grid import CellGrid
from station.core.inspector import InspectionResult
from station.core.verdict import Verdict

#: the colour scale runs from 0 to SCALE_MAX times the NG threshold
SCALE_MAX = 2.0

#: (normalised score, RGB): OK cells green, the review band amber, at the NG threshold red
_OK_RGB = (0, 170, 80)
_REVIEW_RGB = (255, 190, 0)
_NG_RGB = (230, 30, 30)
_FAR_RGB = (200, 0, 40)  # still red: far beyond the threshold is no less NG

OUTLINE_RGBA = (0, 220, 255, 255)
DEFECT_RGBA = (255, 0, 200, 255)  # the outline of where a pixel map is at or above the NG threshold
GRID_RGBA = (255, 255, 255, 110)
MARK_RGBA = (255, 40, 40, 255)


def colour_stops(review_frac: float) -> list[tuple[float, tuple[int, int, int]]]:
    """The colour scale's stops as (normalised score, RGB); `review_frac` is review / NG threshold."""
    r = float(np.clip(review_frac, 0.05, 0.95))
    return [(0.0, _OK_RGB), (r, _REVIEW_RGB), (1.0, _NG_RGB), (SCALE_MAX, _FAR_RGB)]


def colour_lut(review_frac: float, n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA lookup over normalised scores 0..SCALE_MAX; OK cells are drawn faint."""
    x = np.linspace(0.0, SCALE_MAX, n)
    stops = colour_stops(review_frac)
    at = np.array([s for s, _ in stops])
    rgb = np.stack([np.interp(x, at, [c[i] for _, c in stops]) for i in range(3)], axis=1)
    r = stops[1][0]
    # faint below the review threshold, so a good part stays visible under its map
    alpha = np.interp(x, [0.0, r, 1.0, SCALE_MAX], [70, 150, 210, 230])
    return np.concatenate([rgb, alpha[:, None]], axis=1).round().astype(np.uint8)


@dataclass
class Overlay:
    """Two RGBA layers the size of the frame: `heat` (shown at the user's opacity) and `marks`
    (outline, grid and defective cell, always opaque). Either is None when there is nothing to draw."""

    heat: np.ndarray | None
    marks: np.ndarray | None


def normalise(scores: np.ndarray, ng_threshold: float) -> np.ndarray:
    """Cell scores as multiples of the NG threshold, NaN/inf mapped to the top of the scale."""
    scale = ng_threshold if np.isfinite(ng_threshold) and ng_threshold > 0 else 1.0
    out = np.asarray(scores, dtype=np.float64) / scale
    return np.nan_to_num(out, nan=SCALE_MAX, posinf=SCALE_MAX, neginf=0.0).clip(0.0, SCALE_MAX)


def share_map(shares: np.ndarray, image_level: float) -> np.ndarray:
    """Attention shares drawn on the verdict's scale: the top cell at `image_level` (the image score in NG
    thresholds), the others in proportion; a map with no finite positive share is drawn at 0."""
    s = np.nan_to_num(np.asarray(shares, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, None)
    top = s.max() if s.size else 0.0
    return (s / top * image_level if top > 0 else np.zeros_like(s)).clip(0.0, SCALE_MAX)


class OverlayRenderer:
    """Renders a result's overlay for one recipe (its grid and thresholds); cheap to call per frame."""

    def __init__(self, grid: CellGrid, thresholds: tuple[float, float], cell_scale: str = "score") -> None:
        self.grid = grid
        self.cell_scale = cell_scale
        self.review, self.ng = thresholds
        self.review_frac = self.review / self.ng if self.ng > 0 else 0.5
        self.lut = colour_lut(self.review_frac)

    def render(self, result: InspectionResult, frame_shape: tuple[int, ...]) -> Overlay:
        reg = result.registered
        if reg is None or result.cell_scores is None:
            return Overlay(None, None)
        h, w = frame_shape[:2]
        gw, gh = self.grid.size
        pixel_map = result.pixel_map
        if pixel_map is not None and pixel_map.shape != (gh, gw):
            pixel_map = None  # a map of another size cannot be placed; the cells are drawn instead
        norm = normalise(result.cell_scores if pixel_map is None else pixel_map, self.ng)
        if self.cell_scale == "share" and pixel_map is None:
            norm = share_map(result.cell_scores, normalise(np.array(result.score), self.ng).item())
        idx = np.rint(norm / SCALE_MAX * (len(self.lut) - 1)).astype(np.intp)
        coloured = self.lut[idx]  # (rows, cols, 4) or (gh, gw, 4)
        if pixel_map is None:
            canon = cv2.resize(coloured, (gw, gh), interpolation=cv2.INTER_NEAREST)
        else:  # a map over the whole part: clear where it is well below review, so the part stays visible
            fade = np.clip((norm - 0.5 * self.review_frac) / (0.5 * self.review_frac), 0.0, 1.0)
            canon = np.ascontiguousarray(coloured)
            canon[..., 3] = (canon[..., 3] * fade).astype(np.uint8)
        flags = cv2.INTER_NEAREST if pixel_map is None else cv2.INTER_LINEAR
        heat = cv2.warpAffine(canon, reg.matrix.astype(np.float64), (w, h), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        marks = np.zeros((h, w, 4), np.uint8)
        thick = max(1, round(min(h, w) / 300))
        if pixel_map is not None:
            self._defect_outline(marks, reg, norm >= 1.0, thick + 1)
        for c in range(1, self.grid.cols):
            self._line(marks, reg, (c * self.grid.cell_px, 0), (c * self.grid.cell_px, gh), GRID_RGBA, 1)
        for r in range(1, self.grid.rows):
            self._line(marks, reg, (0, r * self.grid.cell_px), (gw, r * self.grid.cell_px), GRID_RGBA, 1)
        outline = np.rint(reg.outline(self.grid)).astype(np.int32)
        cv2.polylines(marks, [outline], True, OUTLINE_RGBA, thick + 1, cv2.LINE_AA)
        if result.top_cell is not None and result.verdict is not Verdict.OK:
            col, row = result.top_cell
            p = self.grid.cell_px
            m = max(1, p // 10)  # the mark sits just outside the cell so the pin stays visible
            box = np.array([[col * p - m, row * p - m], [(col + 1) * p + m, row * p - m],
                            [(col + 1) * p + m, (row + 1) * p + m], [col * p - m, (row + 1) * p + m]])
            pts = np.rint(reg.to_frame(box)).astype(np.int32)
            cv2.polylines(marks, [pts], True, MARK_RGBA, thick + 2, cv2.LINE_AA)
        return Overlay(heat, marks)

    @staticmethod
    def _defect_outline(marks: np.ndarray, reg, above: np.ndarray, thickness: int) -> None:
        """The outline of the pixels at or above the NG threshold, drawn in frame coordinates."""
        if not above.any():
            return
        contours, _ = cv2.findContours(above.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polys = [np.rint(reg.to_frame(c[:, 0, :].astype(np.float64))).astype(np.int32) for c in contours if len(c) >= 3]
        if polys:
            cv2.polylines(marks, polys, True, DEFECT_RGBA, thickness, cv2.LINE_AA)

    @staticmethod
    def _line(img, reg, a, b, colour, thickness) -> None:
        (x0, y0), (x1, y1) = np.rint(reg.to_frame(np.array([a, b]))).astype(int)
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), colour, thickness, cv2.LINE_AA)


def composite(frame: np.ndarray, overlay: Overlay, opacity: float = 0.6) -> np.ndarray:
    """The frame (RGB uint8) with the overlay blended in; for thumbnails, saved images and tests."""
    out = frame.astype(np.float32)
    for layer, k in ((overlay.heat, opacity), (overlay.marks, 1.0)):
        if layer is None:
            continue
        a = layer[..., 3:4].astype(np.float32) / 255.0 * k
        out = out * (1.0 - a) + layer[..., :3].astype(np.float32) * a
    return out.clip(0, 255).astype(np.uint8)


def thumbnail(frame: np.ndarray, overlay: Overlay | None, height: int = 96, opacity: float = 0.6) -> np.ndarray:
    """A small composite for the strip of recent results (RGB uint8, `height` px high)."""
    h, w = frame.shape[:2]
    size = (max(1, round(w * height / h)), height)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if overlay is None or (overlay.heat is None and overlay.marks is None):
        return np.ascontiguousarray(small)
    layers = Overlay(*(None if x is None else cv2.resize(x, size, interpolation=cv2.INTER_AREA)
                       for x in (overlay.heat, overlay.marks)))
    return composite(small, layers, opacity)
