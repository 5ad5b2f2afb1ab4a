"""The patch-memory engine: a memory of local descriptors of good crops, and a pixel-level anomaly map.

PatchCore's idea (Roth et al. 2022) without pretrained weights: every 4 x 4 px step of the crop gets a
hand-made descriptor (its pixels at three scales, patch_features.py); the descriptors of the good training
crops are thinned to a memory by greedy k-centre selection; a crop's anomaly map is each descriptor's
distance to its nearest memory descriptor, brought to the crop's resolution and smoothed. The image score
is the map's maximum. Good images held out of the memory set the thresholds. The memory forgets where a
descriptor was seen, so it holds for textures and for views that are not aligned.

With `position_z` (new recipes) the distance is read against what good parts show at the same place: the
held-out good images' mean and spread of the distance's logarithm per pixel turn it into a z-score (below
the mean counts 0). A glint or a sharp edge that every good part has varies from part to part, so its patches are
far from any remembered one on good parts too; as a raw distance it outshone every defect (docs/photographs.md).
Where views are not aligned, every pixel sees the same spread and the z-score only rescales the map.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool, StrictInt

from station.core.engines.base import (Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet,
                                       output_from_pixel_map)
from station.core.engines.calibration import camera_step, held_out_thresholds
from station.core.engines.settings import _Bounded
from station.core.engines.patch_features import (DEFAULT_SCALES, FEATURE_DIM, SCALES, Descriptor, greedy_coreset,
                                                 principal_axes, raw_descriptors)
from station.core.engines.patch_search import CLUSTERS, MemoryIndex
from station.core.errors import EngineError
from station.core.grid import CellGrid

MAX_MEMORY = 65536
MIN_GOOD = 4
SPREAD_FLOOR = 0.25  # a pixel's spread of good log distances counted at least this share of the median pixel's
LOG_EPS = 1e-3  # added to a distance before its logarithm: a patch the memory holds exactly is not minus infinity
MIN_POSITION_IMAGES = 8  # held-out good images needed to read distances per position (fewer: raw distances)
COVERAGE_IMAGES = 64  # good images whose every descriptor is checked against the first memory (at most)
PROBE_CHECK_IMAGES = 8  # held-out good images searched both ways when fitting, to measure what probing costs
PROBE_MAX_EXCESS = 0.01  # probed distances longer than exact ones by more than this share of the mean: exact search


class PatchSettings(_Bounded):
    """The patch engine's settings, bounded: the memory and the candidates decide its size and fit time."""

    memory: StrictInt = Field(ge=16, le=MAX_MEMORY)
    candidates: StrictInt = Field(ge=16, le=10_000_000)
    dims: StrictInt = Field(ge=2, le=FEATURE_DIM)
    holdout: float = Field(gt=0.0, lt=0.5)
    sigma_px: float = Field(ge=0.0, le=32.0)
    position_z: StrictBool = False
    scales: StrictInt = Field(default=DEFAULT_SCALES, ge=3, le=len(SCALES))
    probe: StrictInt = Field(default=0, ge=0, le=CLUSTERS)  # clusters searched per descriptor; 0: the exact search


class PatchMemoryEngine(Engine):
    name = "patch"
    kind = "anomaly"
    settings_model = PatchSettings
    capabilities = Capabilities(map_name="distance to the nearest good patch, per pixel",
                                summary="patch memory: fits in a minute from good images; textures and parts "
                                        "that are not aligned; a pixel map")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"memory": 8192, "candidates": 40000, "dims": 48, "holdout": 0.15, "sigma_px": 4.0,
                "position_z": True, "scales": DEFAULT_SCALES,  # 4: a descriptor that sees 32 px
                "probe": 4}  # 4 of the memory's 64 clusters searched (docs/photographs.md)

    saved_before = {"position_z": False, "probe": 0}  # recipes saved before: raw distances, the exact search

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        w, h = grid.size
        if w % 8 or h % 8:
            raise EngineError(f"the patch engine needs a crop whose sides are multiples of 8 px, not {w}x{h}")
        self.descriptor: Descriptor | None = None
        self.memory: torch.Tensor | None = None
        self._index: MemoryIndex | None = None  # the memory's clusters, built on the first search
        # per pixel, the held-out good parts' mean and spread of the log distance (position_z)
        self.position_mean = np.zeros((h, w), np.float32)
        self.position_spread = np.ones((h, w), np.float32)

    # -- scoring ------------------------------------------------------------------------------
    def _maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 anomaly maps at the crop's resolution."""
        d = self._distances(crops)
        return self._read(np.log(d + LOG_EPS)) if self.config["position_z"] else d

    def _read(self, log_distances: np.ndarray) -> np.ndarray:
        """Log distances read against the good parts' at each pixel: z-scores, 0 below the mean."""
        return np.maximum((log_distances - self.position_mean) / self.position_spread, 0.0).astype(np.float32)

    def _distances(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 distances to the nearest memory descriptor at the crop's resolution, smoothed."""
        feats = self.descriptor(crops)
        n, fh, fw, c = feats.shape
        if self._index is None or self._index.memory is not self.memory:
            self._index = MemoryIndex(self.memory)
        d = self._index.nearest(feats.reshape(-1, c), probe=int(self.config["probe"])).reshape(n, 1, fh, fw)
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
            f = raw_descriptors(crops[i:i + batch], int(self.config["scales"]))
            for one in f.reshape(f.shape[0], -1, f.shape[-1]):
                pick = rng.choice(one.shape[0], min(per_image, one.shape[0]), replace=False)
                rows.append(one[torch.from_numpy(pick)])
        return torch.cat(rows)

    def _uncovered(self, crops: np.ndarray, memory: torch.Tensor, per_image: int, batch: int = 8) -> torch.Tensor:
        """The `per_image` descriptors of each crop farthest from `memory`: what a random draw of a few per
        cent of the positions misses (a glint or an edge every good part has, but on a small share of its
        area), so the final memory covers it and good parts do not read it as a defect."""
        rows, index = [], MemoryIndex(memory)
        for i in range(0, len(crops), batch):
            feats = self.descriptor(crops[i:i + batch])
            for one in feats.reshape(feats.shape[0], -1, feats.shape[-1]):
                far = torch.topk(index.nearest(one), min(per_image, one.shape[0])).indices
                rows.append(one[far])
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
        memory = cand[torch.from_numpy(chosen)].contiguous()
        if progress:
            progress("covering what the first memory misses", 0.55)
        some = kept[rng.permutation(len(kept))[:COVERAGE_IMAGES]]
        per_image = max(1, int(np.ceil(int(self.config["candidates"]) / len(kept))))
        cand = torch.cat([cand, self._uncovered(crops[some], memory, per_image)])
        chosen = greedy_coreset(cand, int(self.config["memory"]), seed)
        self.memory = cand[torch.from_numpy(chosen)].contiguous()
        probing = self._check_probe(crops[held[:PROBE_CHECK_IMAGES]])
        if progress:
            progress("scoring held-out good images", 0.8)
        held_maps = self._distances(crops[held])
        position = bool(self.config["position_z"]) and len(held) >= MIN_POSITION_IMAGES
        if position:
            held_maps = self._read_per_position(held_maps, self._camera_step(crops[held], held_maps))
        elif self.config["position_z"]:  # too few to read per position: every pixel against the whole map's
            logs = np.log(held_maps.astype(np.float64) + LOG_EPS)
            self.position_mean = np.full(held_maps.shape[1:], logs.mean(), np.float32)
            self.position_spread = np.full(held_maps.shape[1:], max(float(logs.std()), 1e-6), np.float32)
            held_maps = self._read(logs)
        held_out = np.array([self._output(m).score for m in held_maps])
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = np.array([self._output(m).score for m in self._maps(crops[defect_idx])]) \
            if defect_idx.size else np.array([])
        thresholds, calibration = held_out_thresholds(held_out, defect_scores)
        if progress:
            progress("memory ready", 1.0)
        return FitReport(thresholds, {
            "memory_images": int(len(kept)), "memory_size": int(self.memory.shape[0]),
            "distance_per_position": position if self.config["position_z"] else "not asked",
            "held_out_good_images": int(len(held)), **probing, **calibration,
        })

    def _check_probe(self, crops: np.ndarray) -> dict[str, Any]:
        """Search a few held-out good crops exactly and probed; where the probed distances are longer than the
        exact ones by more than PROBE_MAX_EXCESS on average (a memory whose clusters do not hold its
        neighbourhoods), search exactly from now on. What was measured goes into the fit report."""
        probe = int(self.config["probe"])
        if probe == 0 or len(crops) == 0:
            return {}
        feats = self.descriptor(crops)
        feats = feats.reshape(-1, feats.shape[-1])
        index = self._index = MemoryIndex(self.memory)
        if index.centres is None:
            return {"search": "exact: the memory is too small to cluster"}
        exact, probed = index.nearest(feats), index.nearest(feats, probe=probe)
        excess = float((probed - exact).mean() / exact.mean().clamp_min(LOG_EPS))
        if excess > PROBE_MAX_EXCESS:
            self.config["probe"] = 0
            return {"search": f"exact: probing {probe} clusters lengthened good distances by {excess:.2%}",
                    "probe_excess": round(excess, 5)}
        return {"search": f"{probe} of {index.centres.shape[0]} clusters", "probe_excess": round(excess, 5)}

    def _camera_step(self, crops: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """(H, W) how far the log distance moves, per pixel, when the camera reads every pixel one grey level
        brighter or darker (the larger, averaged over the crops): a flat black background's patches are all
        but in the memory, and there a grey level more is a large change of a tiny distance's logarithm."""
        log_distances = lambda c: np.log(self._distances(c).astype(np.float64) + LOG_EPS)  # noqa: E731
        return camera_step(log_distances, crops, np.log(distances.astype(np.float64) + LOG_EPS))

    def _read_per_position(self, held: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Keep the held-out good log distances' mean and spread per pixel (the camera's `step` added to the
        spread), and return the held-out maps as each would read against the others (leave one out), so the
        thresholds come from images the statistics did not see."""
        x = np.log(held.astype(np.float64) + LOG_EPS)
        n = len(x)
        s1, s2 = x.sum(axis=0), (x * x).sum(axis=0)
        mean = s1 / n
        spread = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0) + step ** 2)  # no steadier than the camera can tell
        floor = max(float(np.median(spread)) * SPREAD_FLOOR, 1e-6)  # a pixel no steadier than a share of a typical one
        self.position_mean = mean.astype(np.float32)
        self.position_spread = np.maximum(spread, floor).astype(np.float32)
        loo_mean = (s1[None] - x) / (n - 1)
        loo_spread = np.sqrt(np.maximum((s2[None] - x * x) / (n - 1) - loo_mean ** 2, 0.0) + step ** 2)
        return np.maximum((x - loo_mean) / np.maximum(loo_spread, floor), 0.0).astype(np.float32)

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
        out = {**self.descriptor.arrays(), "memory": self.memory.numpy().astype(np.float16)}
        if self.config["position_z"]:
            out.update(position_mean=self.position_mean, position_spread=self.position_spread)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [k for k in ("feat_mean", "feat_std", "projection", "memory") if k not in arrays]
        if missing:
            raise EngineError(f"patch engine arrays {', '.join(missing)} are missing")
        descriptor = Descriptor(arrays["feat_mean"], arrays["feat_std"], arrays["projection"])
        if descriptor.scales != int(self.config["scales"]):
            raise EngineError(f"the patch engine's descriptor has {descriptor.scales} scales, its settings say "
                              f"{self.config['scales']}")
        memory = np.asarray(arrays["memory"])
        if memory.ndim != 2 or memory.shape[1] != descriptor.dims or not 1 <= memory.shape[0] <= MAX_MEMORY:
            raise EngineError(f"patch memory has shape {memory.shape}, expected (n <= {MAX_MEMORY}, "
                              f"{descriptor.dims})")
        if self.config["position_z"]:
            w, h = self.grid.size
            mean, spread = arrays.get("position_mean"), arrays.get("position_spread")
            if mean is None or spread is None or np.shape(mean) != (h, w) or np.shape(spread) != (h, w):
                raise EngineError(f"the patch engine's good distances per position are missing or not {w}x{h}")
            mean, spread = np.asarray(mean, np.float32), np.asarray(spread, np.float32)
            if not (np.isfinite(mean).all() and np.isfinite(spread).all() and (spread > 0).all()):
                raise EngineError("the patch engine's good distances per position are not finite and positive")
            self.position_mean, self.position_spread = mean, spread
        self.descriptor = descriptor
        self.memory = torch.from_numpy(memory.astype(np.float32))
