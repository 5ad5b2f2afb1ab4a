"""What every engine offers the station: fit on registered crops, infer one crop, save as arrays.

The contract, so that adding an engine touches neither the UI nor the CLI:
- its settings are a typed pydantic model (`settings_model`), checked when the engine is made;
- it declares what it can do (`capabilities`): a training run of epochs or a fit in one pass, classes or
  good/not good only, what its map shows and on what scale, whether one instance may serve two threads;
- `EngineOutput.cell_scores` is on the scale `capabilities.cell_scale` says (see CellScale);
- training progress is `progress(message, fraction)`, and an engine that trains by epochs reports each
  epoch as a structured `TrainingEvent` through `report_epoch` as well;
- the order of classes (the OK class first) is `ok_first`, wherever classes are listed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel

from station.core.errors import EngineError
from station.core.grid import CellGrid

Progress = Callable[[str, float], None]  # (message, fraction done)
REFERENCE_CELL_PX = 24  # the cell size px settings were measured at (the demo connector's pitch)

#: "score": cell scores are on the image score's scale (thresholds apply per cell; 1x the NG threshold is
#: "at NG"). "share": cell scores are where the engine looked, non-negative and summing to 1 over the cells
#: (a ViT's attention): they say which pin, not how bad; per-cell thresholds do not apply to them.
CellScale = Literal["score", "share"]


def ok_first(names, ok_class: str) -> list[str]:
    """The order of classes everywhere in the station: the OK class first, then the others sorted."""
    names = set(names)
    return [ok_class] * (ok_class in names) + sorted(names - {ok_class})


@dataclass(frozen=True)
class Capabilities:
    """What an engine declares, so the UI and the CLI ask it instead of knowing engines by name."""

    trainable: bool = False  # trains by epochs (--epochs, --pretrained, a training folder, curves); else one fit
    names_classes: bool = False  # class_probs name the defect; else good / not good only
    cell_scale: CellScale = "score"
    map_name: str = "cell score"  # what its map shows, for the legend
    thread_safe: bool = False  # one instance may infer on two threads at once
    summary: str = ""  # one line for the engineer choosing an engine


@dataclass(frozen=True)
class TrainingEvent:
    """One epoch of a training run, as the training view plots it."""

    epoch: int  # 1-based
    epochs: int
    metrics: dict[str, float]  # e.g. loss, acc, val_acc


EpochSink = Callable[[TrainingEvent], None]


def report_epoch(progress: Progress | None, event: TrainingEvent, fraction: float) -> None:
    """Tell `progress` of an epoch: its `epoch_event` (when it has one) gets the event, and the call the line."""
    if progress is None:
        return
    sink = getattr(progress, "epoch_event", None)
    if sink is not None:
        sink(event)
    metrics = " ".join(f"{k} {v:.3f}" for k, v in event.metrics.items())
    progress(f"epoch {event.epoch}/{event.epochs} {metrics}".strip(), fraction)


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
        return ok_first(self.labels, self.ok_class)

    def indices(self, label: str) -> np.ndarray:
        return np.array([i for i, lab in enumerate(self.labels) if lab == label], dtype=int)


@dataclass
class EngineOutput:
    """One crop's result. `score` grows with how defective the part looks; thresholds apply to it."""

    score: float
    cell_scores: np.ndarray  # (rows, cols), same direction as score, on the engine's capabilities.cell_scale
    class_probs: dict[str, float] | None = None  # engines that name the defect
    extra: dict[str, Any] = field(default_factory=dict)
    #: (H, W) float32 anomaly map at the crop's resolution, same scale as score; engines that map pixels
    pixel_map: np.ndarray | None = None
    #: (col, row) of the cell the engine names as defective, where it is not always the highest cell score
    #: (RT-attention: the heads pick among the most distant cells); None: the cell of highest score
    top_cell: tuple[int, int] | None = None


def output_from_pixel_map(pixel_map: np.ndarray, grid: CellGrid, **fields: Any) -> EngineOutput:
    """The output of an engine that maps pixels: the image score is the map's maximum, each cell's score the
    largest of its pixels (the map's scale, so per-cell thresholds apply)."""
    p = grid.cell_px
    cells = pixel_map[: grid.rows * p, : grid.cols * p].reshape(grid.rows, p, grid.cols, p).max(axis=(1, 3))
    return EngineOutput(float(pixel_map.max()), cells.astype(np.float64), pixel_map=pixel_map, **fields)


def check_crops(crops: np.ndarray, grid: CellGrid, engine: str) -> None:
    """Refuse, in one line, an array that is not a batch of crops of the grid's size."""
    if crops.ndim not in (3, 4) or tuple(crops.shape[1:3]) != (grid.size[1], grid.size[0]):
        raise EngineError(f"the {engine} engine takes {grid.size[0]}x{grid.size[1]} crops, "
                          f"not an array of shape {crops.shape}")


@dataclass
class FitReport:
    thresholds: tuple[float, float]  # (review, ng): score < review -> OK, score >= ng -> NG
    info: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    name: ClassVar[str]
    #: "anomaly" engines only tell good from not good; "classifier" engines name the class.
    kind: ClassVar[str] = "anomaly"
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the engine's settings, checked (bounds, types) before anything is built from them
    settings_model: ClassVar[type[BaseModel] | None] = None

    #: settings in px whose default ("auto") follows the cell size: {key: px at a 24 px cell}
    scaled_px: ClassVar[dict[str, int]] = {}

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        self.grid = grid
        self.config = {**self.default_config(), **(config or {})}
        for key, at_24 in self.scaled_px.items():
            if self.config.get(key) == "auto":  # resolved here, so a recipe saves the number it used
                self.config[key] = max(1, int(round(at_24 * grid.cell_px / REFERENCE_CELL_PX)))
        if self.settings_model is not None:
            from station.core.engines.settings import check_settings

            check_settings(self.settings_model, self.config, self.name)

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

    def copy(self) -> Engine:
        """An engine of its own with the same settings and learned arrays, for another thread (the threshold
        tuner scores a recipe while the line runs it): an engine is not shared between threads unless its
        capabilities say it is thread-safe."""
        twin = type(self)(self.grid, dict(self.config))
        twin.load_arrays(self.arrays())
        return twin

    @property
    def device(self) -> str:
        return "cpu"
