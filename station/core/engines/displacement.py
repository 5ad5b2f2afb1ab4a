"""Where each cell's content moved: the displacement of a cell against its good standard vector.

RT and SOART metrics say how far a cell is from a standard, not which way its content moved. From a
camera looking at the part's diagonal that direction is what tells the defect modes apart: a pushed
pin's top moves along the line of sight, a leaning pin's sideways, a missing pin matches nowhere.
The RT-attention engine's displacement head reads it. (Fed to the ViT as three more input channels
it made the ViT worse on the demo test split, 0.983 -> 0.963, so the ViT does not use it.)
"""

from __future__ import annotations

import cv2
import numpy as np

from station.core.grid import CellGrid


def vertex(three: np.ndarray) -> float:
    """Sub-pixel offset (-0.5..0.5) of the peak of a parabola through three samples around the middle one."""
    if len(three) != 3:
        return 0.0
    a, b, c = (float(v) for v in three)
    curve = a - 2.0 * b + c
    return float(np.clip(0.5 * (a - c) / curve, -0.5, 0.5)) if curve < 0 else 0.0


def cell_shifts(scaled: np.ndarray, standard: np.ndarray, grid: CellGrid, shift_px: int,
                cells=None, inside: bool = False) -> np.ndarray:
    """(len(cells), 3) tokens (dx, dy, r) of one scaled grey crop (H, W): where within `shift_px` each
    cell's standard (n_cells, cell_px**2) matches the crop best (px, sub-pixel, + is right and down),
    and how well (Pearson r; a flat window, which matches nothing, gives r = 0). All cells when
    `cells` is None; the crop is padded once for all of them. With `inside`, a cell on the crop's border
    is only matched where the template lies wholly inside the crop (never against replicated edge pixels)."""
    s, c = int(shift_px), grid.cell_px
    cells = range(grid.n_cells) if cells is None else cells
    padded = np.pad(np.asarray(scaled, dtype=np.float32), s, mode="edge")
    out = np.empty((len(cells), 3), dtype=np.float32)
    for j, cell in enumerate(cells):
        col, row = grid.cell(int(cell))
        window = padded[row * c: (row + 1) * c + 2 * s, col * c: (col + 1) * c + 2 * s]
        template = np.asarray(standard[int(cell)], dtype=np.float32).reshape(c, c)
        r = cv2.matchTemplate(np.ascontiguousarray(window), np.ascontiguousarray(template), cv2.TM_CCOEFF_NORMED)
        r = np.clip(np.nan_to_num(r, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        if inside:
            h, w = np.asarray(scaled).shape
            y0, x0 = row * c - s, col * c - s  # crop coordinates of offset (0, 0)
            ys, xs = np.arange(r.shape[0]) + y0, np.arange(r.shape[1]) + x0
            ok = ((ys >= 0) & (ys + c <= h))[:, None] & ((xs >= 0) & (xs + c <= w))[None, :]
            r = np.where(ok, r, -2.0)
        y, x = np.unravel_index(int(np.argmax(r)), r.shape)
        out[j] = (x - s + vertex(r[y, max(x - 1, 0): x + 2]) * (0 < x < r.shape[1] - 1),
                  y - s + vertex(r[max(y - 1, 0): y + 2, x]) * (0 < y < r.shape[0] - 1),
                  r[y, x])
    return out


def cell_contrast(scaled: np.ndarray, standard: np.ndarray, grid: CellGrid, cells=None) -> np.ndarray:
    """(len(cells), 3) changes of each unshifted cell against its standard: of its contrast (standard
    deviation of its pixels), and of the mean brightness of its top half and of its bottom half. A pin
    that is gone takes its bright top out of the cell; one pushed in keeps its top, lower; one leaning
    shows its side, so the halves change unlike a push's."""
    c = grid.cell_px
    cells = range(grid.n_cells) if cells is None else cells
    img = np.asarray(scaled, dtype=np.float64)
    out = np.empty((len(cells), 3), dtype=np.float32)
    for j, cell in enumerate(cells):
        col, row = grid.cell(int(cell))
        y = img[row * c: (row + 1) * c, col * c: (col + 1) * c]
        x = np.asarray(standard[int(cell)], dtype=np.float64).reshape(c, c)
        half = c // 2
        out[j] = (y.std() - x.std(), y[:half].mean() - x[:half].mean(), y[half:].mean() - x[half:].mean())
    return out


def chroma(crop: np.ndarray) -> np.ndarray:
    """(H, W) float32 warm-minus-cool channel of an RGB crop, red minus blue in -1..1; zero for a grey crop.
    Where a part's features differ from what lies behind them in colour more than in brightness (cream pins
    in front of a pale blue table, in the first row of the demo line) the displacement search finds them here."""
    if crop.ndim != 3 or crop.shape[2] < 3:
        return np.zeros(crop.shape[:2], np.float32)
    rgb = np.asarray(crop, dtype=np.float32)
    return (rgb[..., 0] - rgb[..., 2]) / 255.0


def better_match(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row by row, the (dx, dy, r) token of `cell_shifts` from two channels whose match is better (higher r;
    the first on a tie)."""
    first, second = np.asarray(first), np.asarray(second)
    return np.where((second[:, 2] > first[:, 2])[:, None], second, first)
