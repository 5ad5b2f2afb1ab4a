"""The joined engine: two of the free-form choice's candidates, each on a crop of its own size, read as the fused
engine reads its parts.

The free-form choice measures each candidate engine on its own crop (the RT method and the fused engine on a
128 px crop, the patch memory on 256 px and on a crop half or twice that). Where the engineer asks for the joined
engine (`station train --engine joined`, or the workbench), it joins the candidate it chose with the next best
(station.core.freeform): the recipe's crop is the larger one, and each part reads it resized to its own grid. Each part's map is brought back to the recipe's
crop and counted, as in the fused engine, in spreads of its log score over good parts held out of the fit; where
either is above a typical good part, the spreads of both add up. The image score is the joined map's maximum.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from station.core.engines.base import Capabilities, FitReport
from station.core.engines.fused_engine import FusedEngine
from station.core.engines.settings import _Bounded
from station.core.grid import CellGrid

JOINED_PARTS = ("rt", "texture", "patch", "mt", "fused")  # anomaly engines with a map, the fused one among them


class PartGrid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cols: int = Field(ge=1, le=64)
    rows: int = Field(ge=1, le=64)
    cell_px: int = Field(ge=4, le=256)


class JoinedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = Field(max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    grid: PartGrid | None = None  # the part's own crop; none: the recipe's


class JoinedSettings(_Bounded):
    parts: list[JoinedPart] = Field(min_length=2, max_length=3)
    holdout: float = Field(gt=0.0, lt=0.5)
    rule: Literal["sum"]


class JoinedEngine(FusedEngine):
    name = "joined"
    settings_model = JoinedSettings
    part_names = JOINED_PARTS
    saved_before: dict[str, Any] = {}
    capabilities = Capabilities(map_name="spreads above a typical good part, the parts' evidence per pixel",
                                summary="joined: the free-form choice's two best candidates, each on a crop of its "
                                        "own size, read against good parts; what each sees of a defect adds up")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        # the engineer's pick without a measured choice: the patch memory and the fused engine on the recipe's crop
        return {"parts": [{"engine": "patch", "config": {}},
                          {"engine": "fused", "config": {}}], "holdout": 0.2, "rule": "sum"}

    def _part_grid(self, part: dict[str, Any]) -> CellGrid:
        grid = part.get("grid")
        return CellGrid(int(grid["cols"]), int(grid["rows"]), int(grid["cell_px"])) if grid else self.grid

    def _part_crops(self, k: int, crops: np.ndarray) -> np.ndarray:
        size = self.parts[k].grid.size
        if crops.shape[1:3] == (size[1], size[0]):
            return crops
        return np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in crops]) if len(crops) \
            else np.zeros((0, size[1], size[0], *crops.shape[3:]), crops.dtype)

    def _part_reports(self, reports: list[FitReport]) -> dict[str, Any]:
        """Each part's own fit report, with its crop: a patch part's search is there (docs/engineer.md)."""
        return {"part_fits": [{"engine": part.name, "crop": list(part.grid.size),
                               **{k: v for k, v in report.info.items() if isinstance(v, (str, int, float, bool))}}
                              for part, report in zip(self.parts, reports)]}
