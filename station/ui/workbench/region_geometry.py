"""The region editor's drag geometry, in golden-frame px and free of Qt: what a press grabs (a corner, a grid
line or side, the inside) and the region after the engineer dragged it."""

from __future__ import annotations

import math

import numpy as np

from station.core.errors import RegistrationError
from station.core.pattern import Roi
from station.core.teach import grid_lines

MIN_REGION_PX = 8.0

# what a press grabs: ("rotate", 0), ("corner", i), ("corners", i) (a corner moved alone), ("col", i),
# ("row", j) or ("move", 0)
Grab = tuple[str, int]


def angle_of(v: np.ndarray) -> float:
    """Degrees counter-clockwise as the image is shown (y points down)."""
    return math.degrees(math.atan2(-v[1], v[0]))


def wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def top_middle(roi: Roi) -> np.ndarray:
    """The middle of the region's top side (the columns lean with the shear)."""
    ux, uy = roi.axes()
    return np.array([roi.cx, roi.cy]) - (uy + roi.shear * ux) * roi.h / 2


def grab_at(roi: Roi, cols: int, rows: int, p: np.ndarray, reach: float) -> Grab | None:
    """What a press at `p` grabs of the region and its cols x rows grid, `reach` px away at most: a corner,
    a grid line (its sides included: ("col", 0) is the left side), the inside, or None."""
    corners = roi.corners()
    d = np.linalg.norm(corners - p, axis=1)
    if d.min() <= reach:
        return "corner", int(d.argmin())
    lines = grid_lines(roi, cols, rows)
    dist = [segment_distance(p, a, b) for a, b in lines]
    best = int(np.argmin(dist))
    if dist[best] <= reach * 0.75:
        return ("col", best) if best <= cols else ("row", best - cols - 1)
    ux, uy = roi.axes()
    rel = p - np.array([roi.cx, roi.cy])
    if abs(rel @ ux) <= roi.w / 2 and abs(rel @ uy) <= roi.h / 2:
        return "move", 0
    return None


def dragged_region(start: Roi, grab: Grab, start_point: np.ndarray, point: np.ndarray, cols: int,
                   rows: int) -> Roi | None:
    """The region after dragging what `grab` names from `start_point` to `point`, on a cols x rows grid.
    Angle and shear stay, but for the rotation handle (angle) and a corner dragged alone (the four corners);
    None when no region fits the four corners (too small, or leaning past 45 degrees)."""
    kind, index = grab
    ux, uy = start.axes()
    shear = start.shear
    down = uy + shear * ux  # the direction of the columns: the region is a parallelogram when sheared
    centre = np.array([start.cx, start.cy])

    def region(c: np.ndarray, w: float, h: float, angle: float = start.angle) -> Roi:
        return Roi(float(c[0]), float(c[1]), float(w), float(h), angle, shear)

    if kind == "move":
        return region(centre + (point - start_point), start.w, start.h)
    if kind == "rotate":
        turn = angle_of(point - centre) - angle_of(start_point - centre)
        return region(centre, start.w, start.h, round(wrap(start.angle + turn), 2))
    if kind == "corners":  # this corner alone: the parallelogram closest to the four corners
        corners = start.corners()
        corners[index] = point
        try:
            return Roi.from_corners(corners)
        except RegistrationError:
            return None
    if kind == "corner":  # the opposite corner stays
        opposite = start.corners()[(index + 2) % 4]
        d = point - opposite
        b = float(d @ uy)
        a = float(d @ ux) - shear * b
        a = math.copysign(max(abs(a), MIN_REGION_PX), a)
        b = math.copysign(max(abs(b), MIN_REGION_PX), b)
        return region(opposite + (a * ux + b * down) / 2, abs(a), abs(b))
    # a grid line: the region's first side stays and the pitch follows the line (its far side for line 0);
    # `first` is the middle of the first side, on the line through the centre
    if kind == "col":
        first = centre - ux * start.w / 2

        def along(v: np.ndarray) -> float:  # distance along the x axis, parallel to the columns
            return float(v @ ux) - shear * float(v @ uy)

        axis, length, count = ux, start.w, cols
    else:
        first = centre - down * start.h / 2

        def along(v: np.ndarray) -> float:
            return float(v @ uy)

        axis, length, count = down, start.h, rows
    if index == 0:
        last = first + axis * length
        new = max(along(last - point), MIN_REGION_PX)
        first = last - axis * new
    else:
        new = max(along(point - first) * count / index, MIN_REGION_PX)
    c = first + axis * new / 2
    return region(c, new, start.h) if kind == "col" else region(c, start.w, new)
