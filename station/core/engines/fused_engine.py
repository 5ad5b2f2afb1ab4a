"""The fused engine: several anomaly engines on the same crop, each read against its own good parts.

Each part (say the RT method per patch, which knows where things belong, the texture model, which knows
what the surface looks like, and the image MT, which knows the whole surface's layout) is fitted on most of
the good images; the rest tell how each part scores a good image (median and spread of the logarithm of its
score). A part's map then counts in those spreads how far a pixel is from a typical good part. By the rule
`sum` (the default) the fused map adds, where any part is above a typical good part, the spreads of every
part that is: a defect two parts each see a little counts more than noise one part sees; by the rule `max`
(recipes saved before the rule existed) the largest decides. The image score is the fused map's maximum;
good images held out of the fit set the thresholds. After that the parts are fitted again on every good image.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from station.core.engines.base import (Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet,
                                       output_from_pixel_map)
from station.core.engines.calibration import held_out_thresholds
from station.core.engines.settings import _Bounded
from station.core.errors import EngineError
from station.core.grid import CellGrid

MIN_GOOD = 8
PARTS = ("rt", "texture", "patch", "mt")  # anomaly engines with a map that may be fused
MIN_Z = -40.0  # spreads below a typical good part counted at most (a blank map is not minus infinity)
KNEE = 8.0  # beyond this many spreads a pixel's distance grows by its logarithm only: it stays ordered, and
# its exponential stays finite (40 spreads read as 11.5, a million as 21.8)
MIN_SPREAD = 0.05  # the least spread of log good scores counted: 5 %; near-identical good parts must not make
# every small difference dozens of spreads


class FusedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = Field(max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)


class FusedSettings(_Bounded):
    parts: list[FusedPart] = Field(min_length=2, max_length=4)
    holdout: float = Field(gt=0.0, lt=0.5)
    rule: Literal["max", "sum"]


class FusedEngine(Engine):
    name = "fused"
    kind = "anomaly"
    settings_model = FusedSettings
    capabilities = Capabilities(map_name="spreads above a typical good part, the parts' evidence per pixel",
                                summary="fused: several anomaly engines, each read against good parts; what "
                                        "each sees of a defect adds up")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"parts": [{"engine": "rt", "config": {"pixel_map": True, "search_px": 0}},
                          {"engine": "texture", "config": {}}], "holdout": 0.2, "rule": "sum"}

    saved_before = {"rule": "max"}
    part_names: tuple[str, ...] = PARTS

    def _part_grid(self, part: dict[str, Any]) -> CellGrid:
        """The grid a part reads: the engine's own (every part of the fused engine reads the same crop)."""
        return self.grid

    def _part_crops(self, k: int, crops: np.ndarray) -> np.ndarray:
        """The crops part `k` reads, from the engine's: the same ones."""
        return crops

    def __init__(self, grid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        from station.core.engines import engine_class

        self.parts: list[Engine] = []
        for part in self.config["parts"]:
            name = part["engine"]
            if name not in self.part_names:
                raise EngineError(f"the {self.name} engine joins {', '.join(self.part_names)}, not {name!r}")
            self.parts.append(engine_class(name)(self._part_grid(part), part.get("config", {})))
        self.config["parts"] = [{**part, "engine": p.name, "config": dict(p.config)}
                                for part, p in zip(self.config["parts"], self.parts)]
        self.centre: np.ndarray | None = None  # per part: the median of log good scores
        self.spread: np.ndarray | None = None  # per part: their robust spread

    # -- fusing -------------------------------------------------------------------------------------
    def _part_map(self, out: EngineOutput) -> np.ndarray:
        if out.pixel_map is not None:
            if out.pixel_map.shape != (self.grid.size[1], self.grid.size[0]):  # a part on a crop of its own size
                return cv2.resize(out.pixel_map.astype(np.float32), self.grid.size, interpolation=cv2.INTER_LINEAR)
            return out.pixel_map.astype(np.float32)
        finite = np.nan_to_num(out.cell_scores, posinf=np.finfo(np.float32).max / 4).astype(np.float32)
        return cv2.resize(finite, self.grid.size, interpolation=cv2.INTER_NEAREST)

    def _fuse(self, outputs: list[EngineOutput]) -> EngineOutput:
        maps = []
        for k, out in enumerate(outputs):
            logged = np.log(np.maximum(self._part_map(out), 1e-12))
            maps.append(np.maximum((logged - self.centre[k]) / self.spread[k], MIN_Z))
        z = np.max(maps, axis=0)
        if self.config["rule"] == "sum":  # evidence adds up where several parts see something
            z = np.where(z > 0, np.sum(np.maximum(maps, 0.0), axis=0), z)
        z = np.where(z > KNEE, KNEE + np.log1p(np.maximum(z - KNEE, 0.0)), z)
        fused = np.exp(z).astype(np.float32)
        return output_from_pixel_map(fused, self.grid, extra={"parts": {part.name: round(float(out.score), 6)
                                                                        for part, out in zip(self.parts, outputs)}})

    # -- Engine ----------------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        good_idx = data.indices(data.ok_class)
        if len(good_idx) < MIN_GOOD:
            raise EngineError(f"the {self.name} engine needs at least {MIN_GOOD} '{data.ok_class}' images, "
                              f"got {len(good_idx)}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(good_idx)
        n_hold = max(3, int(round(len(order) * float(self.config["holdout"]))))
        held, kept = order[:n_hold], order[n_hold:]
        for k, part in enumerate(self.parts):
            if progress:
                progress(f"fitting {part.name} on most good images", 0.1 + 0.4 * k / len(self.parts))
            part.fit(self._part_set(k, data.crops[kept], data.ok_class), seed=seed)
        per_part = [part.infer_batch(self._part_crops(k, data.crops[held])) for k, part in enumerate(self.parts)]
        logs = np.log(np.maximum(np.array([[o.score for o in outs] for outs in per_part], dtype=float), 1e-12))
        self.centre = np.median(logs, axis=1)
        mad = np.median(np.abs(logs - self.centre[:, None]), axis=1) * 1.4826
        self.spread = np.maximum(mad, MIN_SPREAD)
        held_out = np.array([self._fuse(list(outs)).score for outs in zip(*per_part)])
        reports = []
        for k, part in enumerate(self.parts):
            if progress:
                progress(f"fitting {part.name} on every good image", 0.6 + 0.4 * k / len(self.parts))
            reports.append(part.fit(self._part_set(k, data.crops[good_idx], data.ok_class), seed=seed))
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = np.array([o.score for o in self.infer_batch(data.crops[defect_idx])]) \
            if defect_idx.size else np.array([])
        thresholds, calibration = held_out_thresholds(held_out, defect_scores)
        if progress:
            progress("fused engine ready", 1.0)
        return FitReport(thresholds, {
            "parts": [p.name for p in self.parts], "held_out_good_images": int(len(held)),
            "part_good_log_median": [round(float(c), 4) for c in self.centre],
            "part_good_log_spread": [round(float(s), 4) for s in self.spread],
            **self._part_reports(reports), **calibration,
        })

    def _part_set(self, k: int, crops: np.ndarray, ok_class: str) -> TrainingSet:
        """Good crops as part `k` is fitted on them."""
        part = self.parts[k]
        return TrainingSet(self._part_crops(k, crops), [ok_class] * len(crops), [None] * len(crops), part.grid,
                           ok_class)

    def _part_reports(self, reports: list[FitReport]) -> dict[str, Any]:
        """What the fit report says of its parts' own fits: nothing, for the fused engine (its parts read the same
        crop, and what they report is about it)."""
        return {}

    def infer(self, crop: np.ndarray) -> EngineOutput:
        return self.infer_batch(crop[None])[0]

    def infer_batch(self, crops: np.ndarray) -> list[EngineOutput]:
        if self.centre is None or self.spread is None:
            raise EngineError(f"the {self.name} engine has not been fitted")
        per_part = [part.infer_batch(self._part_crops(k, crops)) for k, part in enumerate(self.parts)]
        return [self._fuse(list(outs)) for outs in zip(*per_part)]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.centre is None or self.spread is None:
            raise EngineError(f"the {self.name} engine has not been fitted")
        out = {"fused.centre": self.centre.astype(np.float64), "fused.spread": self.spread.astype(np.float64)}
        for k, part in enumerate(self.parts):
            out.update({f"part{k}.{name}": a for name, a in part.arrays().items()})
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(self.parts)
        centre, spread = arrays.get("fused.centre"), arrays.get("fused.spread")
        if centre is None or spread is None or np.shape(centre) != (n,) or np.shape(spread) != (n,):
            raise EngineError(f"the {self.name} engine's good-score statistics are missing or not for {n} parts")
        centre, spread = np.asarray(centre, float), np.asarray(spread, float)
        if not (np.isfinite(centre).all() and np.isfinite(spread).all() and (spread > 0).all()):
            raise EngineError(f"the {self.name} engine's good-score statistics are not finite and positive")
        for k, part in enumerate(self.parts):
            prefix = f"part{k}."
            part.load_arrays({name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)})
        self.centre, self.spread = centre, spread
