"""Drawing a cell grid over frames, for the engineer: the taught region, or where registration put the grid."""

from __future__ import annotations

import cv2
import numpy as np

from station.core.grid import CellGrid
from station.core.imageio import to_rgb
from station.core.pattern import Roi


def grid_lines(roi: Roi, cols: int, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The grid's lines as (start, end) points in golden-frame px: every column and row border."""
    ux, uy = roi.axes()
    down = uy + roi.shear * ux
    tl = roi.corners()[0]
    lines = []
    for i in range(cols + 1):
        a = tl + ux * roi.w * i / cols
        lines.append((a, a + down * roi.h))
    for j in range(rows + 1):
        a = tl + down * roi.h * j / rows
        lines.append((a, a + ux * roi.w))
    return lines


def draw_grid(image: np.ndarray, roi: Roi, cols: int, rows: int, matrix: np.ndarray | None = None,
              colour: tuple[int, int, int] = (0, 220, 255)) -> np.ndarray:
    """An RGB copy of `image` with the grid drawn on it; `matrix` (2x3, golden -> this frame) moves the grid
    to where registration found the part."""
    out = to_rgb(image).copy()
    scale = max(1, int(round(max(out.shape[:2]) / 400)))
    for a, b in grid_lines(roi, cols, rows):
        if matrix is not None:
            a, b = matrix[:, :2] @ a + matrix[:, 2], matrix[:, :2] @ b + matrix[:, 2]
        cv2.line(out, tuple(int(round(v * 16)) for v in a), tuple(int(round(v * 16)) for v in b), colour, scale,
                 cv2.LINE_AA, shift=4)
    return out


def contact_sheet(images: list[np.ndarray], columns: int = 4, tile: int = 256) -> np.ndarray:
    """Images side by side (RGB), each scaled to `tile` px on its long side."""
    tiles = []
    for img in images:
        s = tile / max(img.shape[:2])
        t = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
        canvas = np.full((tile, tile, 3), 40, np.uint8)
        canvas[:t.shape[0], :t.shape[1]] = t
        tiles.append(canvas)
    while len(tiles) % columns:
        tiles.append(np.full((tile, tile, 3), 40, np.uint8))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def draw_canonical_grid(image: np.ndarray, matrix: np.ndarray, grid: CellGrid,
                        colour: tuple[int, int, int] = (0, 220, 255)) -> np.ndarray:
    """The grid drawn where a registration matrix (canonical -> frame) puts it."""
    w, h = grid.size
    roi = Roi(w / 2, h / 2, w, h, 0.0)
    return draw_grid(image, roi, grid.cols, grid.rows, matrix=matrix, colour=colour)


