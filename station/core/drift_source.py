"""A demo line with a drifting pin: the bundled good parts, where one pin fades into the housing a little more
with every part (as a pin that is slowly pushed down or fouled would), for trying the per-pin control charts.

The pin is found the way the station finds it: the recipe's registration locates the part in each frame,
and the cell's corners are mapped back into the frame. Inside that quadrilateral the frame is blended toward
the housing's colour with a weight that rises linearly from 0 (part `start`) to `strength` (part
`start + ramp`). At weight 1 the pin is gone: a missing pin, which the recipe judges NG.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from station.core.errors import RegistrationError, StationError
from station.core.registration import Registrar
from station.core.sources import DemoLineSource, Frame

logger = logging.getLogger(__name__)


class DriftingPinSource(DemoLineSource):
    def __init__(self, recipe, cell: tuple[int, int] = (1, 4), start: int = 100, ramp: int = 400,
                 strength: float = 1.0, path: str | Path | None = None, fps: float = 0.0, seed: int = 0) -> None:
        if path is None:
            from station.core.resources import demo_split

            path = demo_split("test") / "good"
        super().__init__(path, fps=fps, seed=seed)
        grid = recipe.grid
        if not (0 <= cell[0] < grid.cols and 0 <= cell[1] < grid.rows):
            raise StationError(f"cell {cell[0]},{cell[1]} is outside the recipe's {grid.cols} x {grid.rows} grid")
        if start < 0 or ramp < 1 or not 0 < strength <= 1:
            raise StationError("the drift needs start >= 0, ramp >= 1 part and a strength in (0, 1]")
        self.description = f"demo line, pin {cell[0]},{cell[1]} drifting"
        self.cell, self.start, self.ramp, self.strength = cell, start, ramp, strength
        self.registrar = Registrar(recipe.region, grid)
        px = grid.cell_px
        c, r = cell
        self.corners = np.array([[c * px, r * px], [(c + 1) * px, r * px], [(c + 1) * px, (r + 1) * px],
                                 [c * px, (r + 1) * px]], dtype=np.float64)
        self.part = 0

    def weight(self, part: int) -> float:
        return float(np.clip((part - self.start) / self.ramp, 0.0, 1.0) * self.strength)

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is None or frame.image is None:
            return frame
        w = self.weight(self.part)
        self.part += 1
        if w > 0:
            try:
                frame.image[:] = self.fade(frame.image, w)
            except RegistrationError as exc:
                logger.debug("drifting pin not drawn on %s: %s", frame.name, exc)
        return frame

    def fade(self, image: np.ndarray, weight: float) -> np.ndarray:
        """`image` with the drifting cell blended toward the housing colour by `weight`."""
        registered = self.registrar.register(image)
        quad = np.round(registered.to_frame(self.corners)).astype(np.int32)
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, quad, 255)
        inside = mask > 0
        if not inside.any():
            return image
        pixels = image[inside].astype(np.float32)
        housing = np.percentile(pixels, 10, axis=0)  # the darkest tenth of the cell is housing, not pin
        out = image.copy()
        out[inside] = np.clip((1 - weight) * pixels + weight * housing, 0, 255).astype(image.dtype)
        return out
