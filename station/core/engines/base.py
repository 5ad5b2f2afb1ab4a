"""What every engine offers the station: fit on registered crops, infer one crop, save as arrays."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from station.core.grid import CellGrid

Progress = Callable[[str, float], None]  # (message, fraction done)
REFERENCE_CELL_PX = 24  # the cell size px settings were measured at (the demo connector's pitch)


@dataclass
class TrainingSet:
    """Registered training crops with their labels, as every engine receives them."""

    crops: np.ndarray  # (N, H, W, 3) uint8 RGB, canonical size of the grid
    labels: list[str]
    cells: list[tuple[int, int] | None]  # labelled defective cell (col, row), where known
    grid: CellGrid
    ok_class: str = "good"

    @property
    def classes(self) -> list[str]:
        names = set(self.labels)
        return [self.ok_class] * (self.ok_class in names) + sorted(names - {self.ok_class})

    def indices(self, label: str) -> np.ndarray:
        return np.array([i for i, lab in enumerate(self.labels) if lab == label], dtype=int)


@dataclass
class EngineOutput:
    """One crop's result. `score` grows with how defective the part looks; thresholds apply to it."""

    score: float
    cell_scores: np.ndarray  # (rows, cols), same direction as score
    class_probs: dict[str, float] | None = None  # engines that name the defect
    extra: dict[str, Any] = field(default_factory=dict)
    #: (H, W) float32 anomaly map at the crop's resolution, same scale as score; engines that map pixels
    pixel_map: np.ndarray | None = None


@dataclass
class FitReport:
    thresholds: tuple[float, float]  # (review, ng): score < review -> OK, score >= ng -> NG
    info: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    name: ClassVar[str]
    #: "anomaly" engines only tell good from not good; "classifier" engines name the class.
    kind: ClassVar[str] = "anomaly"

    #: settings in px whose default ("auto") follows the cell size: {key: px at a 24 px cell}
    scaled_px: ClassVar[dict[str, int]] = {}

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        self.grid = grid
        self.config = {**self.default_config(), **(config or {})}
        for key, at_24 in self.scaled_px.items():
            if self.config.get(key) == "auto":  # resolved here, so a recipe saves the number it used
                self.config[key] = max(1, int(round(at_24 * grid.cell_px / REFERENCE_CELL_PX)))

    #: settings added after recipes were written without them, with the value that gives those recipes
    #: their old behaviour (a saved recipe holds its whole config, so a key it lacks predates the setting)
    saved_before: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_saved(cls, grid: CellGrid, config: dict[str, Any]) -> Engine:
        """The engine of a saved recipe: settings it lacks take their pre-setting value, not today's default."""
        return cls(grid, {**cls.saved_before, **config})

    @abstractmethod
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport: ...

    @abstractmethod
    def infer(self, crop: np.ndarray) -> EngineOutput: ...

    def infer_batch(self, crops: np.ndarray) -> list[EngineOutput]:
        return [self.infer(c) for c in crops]

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Everything learned, as named arrays for the recipe's safetensors file."""

    @abstractmethod
    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore from `arrays()`; raise EngineError when something is missing or of the wrong shape."""

    @property
    def device(self) -> str:
        return "cpu"
