"""A toy engine that lives only in the tests: it proves an engine can be added without touching
station/ui or station/cli.py, and it refuses to be used by two threads at once (the tuner's race test)."""

from __future__ import annotations

import threading
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from station.core.engines.base import Capabilities, Engine, EngineOutput, FitReport, TrainingSet
from station.core.errors import EngineError
from station.core.verdict import calibrate_thresholds


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gain: float = Field(1.0, gt=0, le=10)
    dwell_ms: float = Field(2.0, ge=0, le=50)  # time spent inside infer, so two threads would overlap


class ToyEngine(Engine):
    name = "toy"
    kind = "anomaly"
    settings_model = ToySettings
    capabilities = Capabilities(map_name="toy difference", summary="Toy: mean difference from the good crop")

    def __init__(self, grid, config=None) -> None:
        super().__init__(grid, config)
        self.mean: np.ndarray | None = None
        self._busy = threading.Lock()
        self.overlaps = 0  # calls that found another thread inside infer

    @classmethod
    def default_config(cls):
        return {"gain": 1.0, "dwell_ms": 2.0}

    def _cells(self, crop: np.ndarray) -> np.ndarray:
        g = crop.astype(np.float32).mean(axis=2) / 255.0
        diff = np.abs(g - self.mean) * float(self.config["gain"])
        p = self.grid.cell_px
        return diff.reshape(self.grid.rows, p, self.grid.cols, p).mean(axis=(1, 3))

    def fit(self, data: TrainingSet, seed: int = 0, progress=None) -> FitReport:
        good = data.indices(data.ok_class)
        self.mean = data.crops[good].astype(np.float32).mean(axis=(0, 3)) / 255.0
        scores = np.array([self._cells(c).max() for c in data.crops])
        is_good = np.array([lab == data.ok_class for lab in data.labels])
        if progress:
            progress("toy fitted", 1.0)
        return FitReport(calibrate_thresholds(scores[is_good], scores[~is_good]))

    def infer(self, crop: np.ndarray) -> EngineOutput:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            raise EngineError("toy engine used by two threads at once")
        try:
            if self.mean is None:
                raise EngineError("toy engine not fitted")
            cells = self._cells(crop)
            time.sleep(float(self.config["dwell_ms"]) / 1e3)
            return EngineOutput(float(cells.max()), cells)
        finally:
            self._busy.release()

    def arrays(self):
        return {"mean": self.mean}

    def load_arrays(self, arrays) -> None:
        mean = arrays.get("mean")
        if mean is None or mean.shape != (self.grid.size[1], self.grid.size[0]):
            raise EngineError("toy arrays: 'mean' missing or of the wrong shape")
        self.mean = np.asarray(mean, dtype=np.float32)
