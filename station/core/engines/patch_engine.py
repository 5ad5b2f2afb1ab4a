"""The patch-memory engine: a memory of local descriptors of good crops, and a pixel-level anomaly map.

PatchCore's idea (Roth et al. 2022) without pretrained weights: every 4 x 4 px step of the crop gets a
hand-made descriptor (its pixels at three scales, patch_features.py); the descriptors of the good training
crops are thinned to a memory by greedy k-centre selection; a crop's anomaly map is each descriptor's
distance to its nearest memory descriptor, brought to the crop's resolution and smoothed. The image score
is the map's maximum. Good images held out of the memory set the thresholds. The memory forgets where a
descriptor was seen, so it holds for textures and for views that are not aligned.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt

from station.core.engines.base import (Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet,
                                       output_from_pixel_map)
from station.core.engines.calibration import held_out_thresholds
from station.core.engines.settings import _Bounded
from station.core.engines.patch_features import (FEATURE_DIM, Descriptor, greedy_coreset, nearest_distance,
                                                 principal_axes, raw_descriptors)
from station.core.errors import EngineError
from station.core.grid import CellGrid

MAX_MEMORY = 65536
MIN_GOOD = 4


class PatchSettings(_Bounded):
    """The patch engine's settings, bounded: the memory and the candidates decide its size and fit time."""

    memory: StrictInt = Field(ge=16, le=MAX_MEMORY)
    candidates: StrictInt = Field(ge=16, le=10_000_000)
    dims: StrictInt = Field(ge=2, le=FEATURE_DIM)
    holdout: float = Field(gt=0.0, lt=0.5)
    sigma_px: float = Field(ge=0.0, le=32.0)


class PatchMemoryEngine(Engine):
    name = "patch"
    kind = "anomaly"
    settings_model = PatchSettings
    capabilities = Capabilities(map_name="distance to the nearest good patch, per pixel",
                                summary="patch memory: fits in a minute from good images; textures and parts "
                                        "that are not aligned; a pixel map")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"memory": 8192, "candidates": 40000, "dims": 48, "holdout": 0.15, "sigma_px": 4.0}

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        w, h = grid.size
        if w % 8 or h % 8:
            raise EngineError(f"the patch engine needs a crop whose sides are multiples of 8 px, not {w}x{h}")
        self.descriptor: Descriptor | None = None
        self.memory: torch.Tensor | None = None

    # -- scoring ------------------------------------------------------------------------------
    def _maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 anomaly maps at the crop's resolution."""
        feats = self.descriptor(crops)
        n, fh, fw, c = feats.shape
        d = nearest_distance(feats.reshape(-1, c), self.memory).reshape(n, 1, fh, fw)
        h, w = crops.shape[1:3]
        up = F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()
        sigma = float(self.config["sigma_px"])
        if sigma > 0:
            up = np.stack([cv2.GaussianBlur(m, (0, 0), sigma) for m in up])
        return up.astype(np.float32)

    def _output(self, pixel_map: np.ndarray) -> EngineOutput:
        return output_from_pixel_map(pixel_map, self.grid)

    def _candidates(self, crops: np.ndarray, n: int, rng: np.random.Generator, batch: int = 8) -> torch.Tensor:
        """About `n` raw descriptors drawn evenly from the crops (never all of them in memory at once)."""
        per_image = max(1, int(np.ceil(n / len(crops))))
        rows = []
        for i in range(0, len(crops), batch):
            f = raw_descriptors(crops[i:i + batch])
            for one in f.reshape(f.shape[0], -1, f.shape[-1]):
                pick = rng.choice(one.shape[0], min(per_image, one.shape[0]), replace=False)
                rows.append(one[torch.from_numpy(pick)])
        return torch.cat(rows)

    # -- Engine ---------------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        good_idx = data.indices(data.ok_class)
        if len(good_idx) < MIN_GOOD:
            raise EngineError(f"the patch engine needs at least {MIN_GOOD} '{data.ok_class}' images, "
                              f"got {len(good_idx)}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(good_idx)
        n_hold = max(2, int(round(len(order) * float(self.config["holdout"]))))
        held, kept = order[:n_hold], order[n_hold:]
        crops = data.crops
        if progress:
            progress("describing the good images", 0.1)
        cand = self._candidates(crops[kept], int(self.config["candidates"]), rng)
        mean, std = cand.mean(dim=0), cand.std(dim=0).clamp_min(1e-3)
        cand = (cand - mean) / std
        axes = principal_axes(cand, int(self.config["dims"]))
        self.descriptor = Descriptor(mean.numpy(), std.numpy(), axes)
        cand = cand @ torch.from_numpy(axes)
        if progress:
            progress("choosing the memory (k-centre coreset)", 0.3)
        chosen = greedy_coreset(cand, int(self.config["memory"]), seed)
        self.memory = cand[torch.from_numpy(chosen)].contiguous()
        if progress:
            progress("scoring held-out good images", 0.8)
        held_out = np.array([self._output(m).score for m in self._maps(crops[held])])
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = np.array([self._output(m).score for m in self._maps(crops[defect_idx])]) \
            if defect_idx.size else np.array([])
        thresholds, calibration = held_out_thresholds(held_out, defect_scores)
        if progress:
            progress("memory ready", 1.0)
        return FitReport(thresholds, {
            "memory_images": int(len(kept)), "memory_size": int(self.memory.shape[0]),
            "held_out_good_images": int(len(held)), **calibration,
        })

    def infer(self, crop: np.ndarray) -> EngineOutput:
        return self.infer_batch(crop[None])[0]

    def infer_batch(self, crops: np.ndarray) -> list[EngineOutput]:
        if self.memory is None or self.descriptor is None:
            raise EngineError("the patch engine has not been fitted")
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise EngineError(f"the patch engine takes RGB crops, not an array of shape {crops.shape}")
        return [self._output(m) for m in self._maps(crops)]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.memory is None or self.descriptor is None:
            raise EngineError("the patch engine has not been fitted")
        return {**self.descriptor.arrays(), "memory": self.memory.numpy().astype(np.float16)}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [k for k in ("feat_mean", "feat_std", "projection", "memory") if k not in arrays]
        if missing:
            raise EngineError(f"patch engine arrays {', '.join(missing)} are missing")
        descriptor = Descriptor(arrays["feat_mean"], arrays["feat_std"], arrays["projection"])
        memory = np.asarray(arrays["memory"])
        if memory.ndim != 2 or memory.shape[1] != descriptor.dims or not 1 <= memory.shape[0] <= MAX_MEMORY:
            raise EngineError(f"patch memory has shape {memory.shape}, expected (n <= {MAX_MEMORY}, "
                              f"{descriptor.dims})")
        self.descriptor = descriptor
        self.memory = torch.from_numpy(memory.astype(np.float32))
