"""The texture engine: each pixel predicted from its neighbours, and a map of what the prediction misses.

A classic model of texture (a linear, Markov-field-like predictor): on every level of an image pyramid of
the good crops, each pixel's grey level is fitted by least squares as a weighted sum of the pixels on a ring
around it (8 neighbours at `radius_px`, never itself), so the weights learn the texture's own directions
(stripes, grain, a weave). A defect is what the ring cannot predict: a hole, a scratch across the grain, a
stain. The residual of each pixel is standardised by the good crops' residuals at that position (shrunk to
the whole crop's spread where few images are known), its magnitude smoothed; the map is the largest over
the levels, at the crop's resolution, and the image score is its maximum. It needs no alignment and fits in
seconds; each crop is normalised to its own mean and spread first, so a lamp that dims changes nothing.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import Field, StrictInt

from station.core.engines.base import (Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet,
                                       check_crops, output_from_pixel_map)
from station.core.engines.calibration import held_out_thresholds
from station.core.engines.settings import _Bounded
from station.core.errors import EngineError
from station.core.imageio import to_gray

MIN_GOOD = 4
RING = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
SAMPLES = 400_000  # pixels the predictor of one level is fitted on (drawn evenly from the good crops)
BATCH = 32  # crops whose ring of neighbours is held at once
SHRINK = 10.0  # images' worth of weight the whole crop's residual spread has beside a position's own


class TextureSettings(_Bounded):
    levels: list[StrictInt] = Field(min_length=1, max_length=4)
    radius_px: StrictInt = Field(ge=1, le=8)
    sigma_px: float = Field(ge=0.0, le=16.0)
    holdout: float = Field(gt=0.0, lt=0.5)


def _normalised(crops: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 grey crops, each to zero mean and unit spread."""
    grey = np.stack([to_gray(c) if c.ndim == 3 else c for c in crops]).astype(np.float32)
    mean = grey.mean(axis=(1, 2), keepdims=True)
    std = grey.std(axis=(1, 2), keepdims=True)
    return (grey - mean) / np.maximum(std, 1e-3)


def _level(images: np.ndarray, level: int) -> np.ndarray:
    for _ in range(level):
        images = np.stack([cv2.pyrDown(im) for im in images])
    return images


def _ring(images: np.ndarray, r: int) -> np.ndarray:
    """(N, H, W, 8) the ring of neighbours `r` px away from every pixel (edges mirrored)."""
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (r, r), (r, r)), mode="reflect")
    return np.stack([padded[:, r + dy * r:r + dy * r + h, r + dx * r:r + dx * r + w] for dy, dx in RING], axis=-1)


class TextureEngine(Engine):
    name = "texture"
    kind = "anomaly"
    settings_model = TextureSettings
    capabilities = Capabilities(map_name="what the texture's own pattern does not predict, per pixel",
                                summary="texture model: fits in seconds from good images; surfaces, grain and "
                                        "weaves, aligned or not; a pixel map")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"levels": [0, 1], "radius_px": 2, "sigma_px": 1.5, "holdout": 0.15}

    def __init__(self, grid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        levels = self.config["levels"]
        w, h = grid.size
        if len(set(levels)) != len(levels) or any(not 0 <= lv <= 3 for lv in levels):
            raise EngineError(f"texture levels must be distinct pyramid levels from 0 to 3, not {levels!r}")
        smallest = min(w, h) >> max(levels)
        if smallest < 4 * int(self.config["radius_px"]):
            raise EngineError(f"a {w}x{h} crop is too small for pyramid level {max(levels)} with a "
                              f"{self.config['radius_px']} px ring")
        self.weights: np.ndarray | None = None  # (levels, 9): the ring's 8 weights and a constant
        self.mean: list[np.ndarray] = []  # per level (h, w): the good residual's mean at each position
        self.spread: list[np.ndarray] = []  # per level (h, w): its standard deviation, shrunk

    # -- the model ------------------------------------------------------------------------------
    def _residual(self, images: np.ndarray, k: int) -> np.ndarray:
        """Each pixel minus its prediction from the ring, BATCH images at a time (the ring is 8 copies)."""
        r = int(self.config["radius_px"])
        w = self.weights[k]
        out = np.empty(images.shape, np.float32)
        for i in range(0, len(images), BATCH):
            part = images[i:i + BATCH]
            out[i:i + BATCH] = part - (_ring(part, r) @ w[:8] + w[8])
        return out

    def _maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 maps at the crop's resolution: standardised residual magnitudes, largest level."""
        x = _normalised(crops)
        h, w = x.shape[1:]
        sigma, r = float(self.config["sigma_px"]), int(self.config["radius_px"])
        out = np.zeros(x.shape, np.float32)
        for k, level in enumerate(self.config["levels"]):
            z = np.abs((self._residual(_level(x, level), k) - self.mean[k]) / self.spread[k])
            for i, m in enumerate(z):
                m = cv2.GaussianBlur(m, (0, 0), sigma) if sigma > 0 else m.copy()
                edge = r  # the mirrored ring at the border predicts itself: its pixels are left out
                m[:edge], m[-edge:], m[:, :edge], m[:, -edge:] = 0, 0, 0, 0
                if level:
                    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
                np.maximum(out[i], m, out=out[i])
        return out

    def _output(self, pixel_map: np.ndarray) -> EngineOutput:
        return output_from_pixel_map(pixel_map, self.grid)

    def _fit_model(self, x: np.ndarray, rng: np.random.Generator) -> None:
        r = int(self.config["radius_px"])
        weights, self.mean, self.spread = [], [], []
        for level in self.config["levels"]:
            images = _level(x, level)
            # the predictor is fitted on SAMPLES pixels; the ring is built only for images enough to hold them
            per_image = images.shape[1] * images.shape[2]
            some = rng.permutation(len(images))[:max(1, int(np.ceil(2 * SAMPLES / per_image)))]
            ring = _ring(images[some], r).reshape(-1, len(RING))
            pick = rng.integers(0, ring.shape[0], min(SAMPLES, ring.shape[0]))
            a = np.concatenate([ring[pick], np.ones((len(pick), 1), np.float32)], axis=1).astype(np.float64)
            t = images[some].reshape(-1)[pick].astype(np.float64)
            del ring
            w = np.linalg.solve(a.T @ a + 1e-6 * len(pick) * np.eye(a.shape[1]), a.T @ t)
            weights.append(w.astype(np.float32))
            self.weights = np.stack(weights)
            res = self._residual(images, len(weights) - 1)
            n = len(res)
            local_var = res.var(axis=0)
            spread = np.sqrt((n * local_var + SHRINK * res.var()) / (n + SHRINK)).astype(np.float32)
            self.mean.append(res.mean(axis=0).astype(np.float32))
            self.spread.append(np.maximum(spread, 1e-3))

    # -- Engine -----------------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        good_idx = data.indices(data.ok_class)
        if len(good_idx) < MIN_GOOD:
            raise EngineError(f"the texture engine needs at least {MIN_GOOD} '{data.ok_class}' images, "
                              f"got {len(good_idx)}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(good_idx)
        n_hold = max(2, int(round(len(order) * float(self.config["holdout"]))))
        held, kept = order[:n_hold], order[n_hold:]
        if progress:
            progress("fitting the texture's predictor", 0.2)
        self._fit_model(_normalised(data.crops[kept]), rng)
        held_out = np.array([self._output(m).score for m in self._maps(data.crops[held])])
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = np.array([self._output(m).score for m in self._maps(data.crops[defect_idx])]) \
            if defect_idx.size else np.array([])
        thresholds, calibration = held_out_thresholds(held_out, defect_scores)
        if progress:
            progress("texture model ready", 1.0)
        return FitReport(thresholds, {
            "model_images": int(len(kept)), "held_out_good_images": int(len(held)), **calibration,
        })

    def infer(self, crop: np.ndarray) -> EngineOutput:
        return self.infer_batch(crop[None])[0]

    def infer_batch(self, crops: np.ndarray) -> list[EngineOutput]:
        if self.weights is None:
            raise EngineError("the texture engine has not been fitted")
        check_crops(crops, self.grid, "texture")
        return [self._output(m) for m in self._maps(crops)]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.weights is None:
            raise EngineError("the texture engine has not been fitted")
        out = {"weights": self.weights}
        for k in range(len(self.mean)):
            out[f"mean.{k}"], out[f"spread.{k}"] = self.mean[k], self.spread[k]
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        levels = self.config["levels"]
        weights = np.asarray(arrays.get("weights", np.zeros(0)), dtype=np.float32)
        if weights.shape != (len(levels), len(RING) + 1):
            raise EngineError(f"texture weights have shape {weights.shape}, expected {(len(levels), len(RING) + 1)}")
        w, h = self.grid.size
        mean, spread = [], []
        for k, level in enumerate(levels):
            shape = _level(np.zeros((1, h, w), np.float32), level).shape[1:]
            m, s = arrays.get(f"mean.{k}"), arrays.get(f"spread.{k}")
            if m is None or s is None or m.shape != shape or s.shape != shape:
                raise EngineError(f"texture level {level}: its residual statistics are missing or not {shape}")
            s = np.asarray(s, np.float32)
            if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
                raise EngineError(f"texture level {level}: its residual statistics are not finite and positive")
            mean.append(np.asarray(m, np.float32))
            spread.append(s)
        if not np.isfinite(weights).all():
            raise EngineError("texture weights are not finite")
        self.weights, self.mean, self.spread = weights, mean, spread
