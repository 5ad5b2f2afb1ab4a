"""The image MT engine: Taguchi's Mahalanobis-Taguchi method over a descriptor of the whole image.

The MT system in its first form (DESIGN §2.2 uses its RT cousin per cell): a unit space of good images,
each described by one vector, and a new image's Mahalanobis distance to that space, divided by the number of
items, so that a typical good image is near 1. The descriptor follows the surface as a whole rather than
pixel by pixel:

- the grey level's and the local contrast's (the grey level's spread in a small window) means on an n x n
  grid of blocks: where the part is brighter, darker, smoother or rougher than a good one;
- the same blocks' opponent colours (red against green, blue against yellow) where the good images have
  colour;
- quantiles of the grey level, of its gradient, of the Laplacian and of the local contrast over the whole
  image: a hole, a crack or a stain anywhere moves their tails, aligned or not.

The covariance between items is what per-pixel models lack: on a tile whose streaks are brighter in one
place, the neighbouring blocks move together, and only a change that breaks the good images' pattern of
co-movement counts. The map shows where the distance comes from: each block's share of it (its items'
contributions T_j (Σ⁻¹ T)_j, the negative ones dropped), relative to the largest share, as the power the
distance is raised to, so that the block carrying most of the distance reads about the image's distance and
one with half that share its square root; an image no farther than a typical good one (distance <= 1) reads its
distance everywhere. As for every engine that maps pixels, the image score is the map's peak.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import Field, StrictInt

from station.core.engines.base import (Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet,
                                       check_crops, output_from_pixel_map)
from station.core.engines.calibration import camera_step, held_out_thresholds
from station.core.engines.settings import _Bounded
from station.core.errors import EngineError

MIN_GOOD = 5  # the fused engine (8 images at least) fits its parts on the 5 it does not hold out
QUANTILES = {"grey": (1, 5, 25, 50, 75, 95, 99), "gradient": (50, 90, 99, 99.9), "laplacian": (50, 90, 99, 99.9),
             "contrast": (10, 50, 90, 99, 100)}
N_GLOBAL = sum(len(q) for q in QUANTILES.values()) + 1  # and the grey level's spread
CAMERA_STEP_IMAGES = 8  # good crops the camera step is measured on
STILL = 1e-6  # an item whose spread over the good images is below this never varies: it is left out


class MTSettings(_Bounded):
    blocks: StrictInt = Field(ge=2, le=16)
    side_px: StrictInt = Field(ge=32, le=512)
    window_px: StrictInt = Field(ge=3, le=31)
    ridge: float = Field(ge=1e-4, le=10.0)
    holdout: float = Field(gt=0.0, lt=0.5)


def _blocks(x: np.ndarray, n: int) -> np.ndarray:
    """(n * n,) the means of x over an n x n grid of blocks (x's sides are multiples of n)."""
    h, w = x.shape
    return x.reshape(n, h // n, n, w // n).mean(axis=(1, 3)).ravel()


def describe(crop: np.ndarray, blocks: int, side: int, window: int) -> np.ndarray:
    """One image's descriptor: grey and contrast blocks, colour blocks, whole-image quantiles (float64)."""
    side = side // blocks * blocks
    rgb = crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=-1)
    rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    mean = cv2.blur(grey, (window, window))
    contrast = np.log1p(np.sqrt(np.maximum(cv2.blur(grey * grey, (window, window)) - mean * mean, 0.0)))
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    laplacian = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    parts = [_blocks(grey, blocks), _blocks(contrast, blocks), _blocks(r - g, blocks), _blocks(b - (r + g) / 2, blocks),
             np.percentile(grey, QUANTILES["grey"]), [grey.std()],
             np.log1p(np.percentile(gradient, QUANTILES["gradient"])),
             np.log1p(np.percentile(laplacian, QUANTILES["laplacian"])),
             np.percentile(contrast, QUANTILES["contrast"])]
    return np.concatenate([np.ravel(p) for p in parts]).astype(np.float64)


class MTEngine(Engine):
    name = "mt"
    kind = "anomaly"
    settings_model = MTSettings
    capabilities = Capabilities(map_name="each block's share of the image's Mahalanobis distance",
                                thread_safe=True,
                                summary="image MT: fits in a second from good images; the whole surface's "
                                        "brightness, contrast and colour layout, aligned or not; a block map")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"blocks": 8, "side_px": 128, "window_px": 7, "ridge": 0.01, "holdout": 0.15}

    def __init__(self, grid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        if self.config["side_px"] < 4 * self.config["blocks"]:
            raise EngineError(f"mt: {self.config['blocks']} blocks need a side of at least "
                              f"{4 * self.config['blocks']} px, not {self.config['side_px']}")
        n = int(self.config["blocks"]) ** 2
        self.n_items = 4 * n + N_GLOBAL
        self.used: np.ndarray | None = None  # (n_items,) bool: the items that vary over the good images
        self.centre = self.scale = self.precision = None  # over the used items

    def _describe(self, crops: np.ndarray) -> np.ndarray:
        c = self.config
        return np.stack([describe(x, int(c["blocks"]), int(c["side_px"]), int(c["window_px"])) for x in crops])

    def _contributions(self, crops: np.ndarray) -> np.ndarray:
        """(N, n_items) each item's share of the distance (0 where unused); a row sums to the distance."""
        t = (self._describe(crops)[:, self.used] - self.centre) / self.scale
        share = t * (t @ self.precision) / t.shape[1]
        out = np.zeros((len(crops), self.n_items))
        out[:, self.used] = share
        return out

    def _output(self, share: np.ndarray) -> EngineOutput:
        n = int(self.config["blocks"])
        score = max(float(share.sum()), 1e-12)
        per_block = np.maximum(share[: 4 * n * n].reshape(4, n * n), 0.0).sum(axis=0).reshape(n, n)
        w, h = self.grid.size
        peak = float(per_block.max())
        if score <= 1.0 or peak <= 0:  # no farther than a typical good image, or nowhere in particular
            return output_from_pixel_map(np.full((h, w), score, np.float32), self.grid)
        # a block's value is the distance raised to its share relative to the largest: the block that carries
        # most of the distance gets nearly all of it (interpolated between block centres, the map's peak is
        # at least 0.94 of it in the exponent, for a block alone), one with half that share its square root
        m = cv2.resize((per_block / peak).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return output_from_pixel_map(np.exp(np.log(score) * m).astype(np.float32), self.grid)

    def _camera_step(self, crops: np.ndarray, described: np.ndarray) -> np.ndarray:
        """(n_items,) how far each item moves when the camera reads every pixel one grey level brighter or
        darker, whichever moves it more (so a white, saturated area moves as a black one does; the mean over a
        few good crops). `described`: the crops' descriptors, already computed."""
        return camera_step(self._describe, crops[:CAMERA_STEP_IMAGES], described[:CAMERA_STEP_IMAGES])

    def _fit_space(self, x: np.ndarray, step: np.ndarray | None = None) -> None:
        """The unit space of descriptors x (N, n_items). Each item's variance gets the square of its camera
        step added: an item that hardly varies among the good images (a black background's level) is not
        trusted to be steadier than one grey level, so a lamp a little dimmer is not a defect everywhere
        (without it every good bottle was NG with the lamp 2 grey levels darker; with it none: docs/photographs.md,
        "Lamp drift")."""
        spread = x.std(axis=0)
        used = spread > STILL * (1.0 + np.abs(x.mean(axis=0)))
        if not used.any():
            raise EngineError("mt: every good image is the same; there is no unit space to measure against")
        x = x[:, used]
        centre = x.mean(axis=0)
        cov = (x - centre).T @ (x - centre) / len(x)
        if step is not None:
            cov[np.diag_indices_from(cov)] += step[used] ** 2
        self.used, self.centre, self.scale = used, centre, np.sqrt(np.diag(cov))
        corr = cov / np.outer(self.scale, self.scale)
        values, vectors = np.linalg.eigh(corr)
        values = np.maximum(values, 0.0) + float(self.config["ridge"])
        self.precision = (vectors / values) @ vectors.T

    # -- Engine -----------------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        good_idx = data.indices(data.ok_class)
        if len(good_idx) < MIN_GOOD:
            raise EngineError(f"the mt engine needs at least {MIN_GOOD} '{data.ok_class}' images, got {len(good_idx)}")
        order = np.random.default_rng(seed).permutation(good_idx)
        n_hold = max(2, int(round(len(order) * float(self.config["holdout"]))))
        held, kept = order[:n_hold], order[n_hold:]
        if progress:
            progress("describing the good images", 0.2)
        described = self._describe(data.crops[kept])
        self._fit_space(described, self._camera_step(data.crops[kept], described))
        held_out = self._contributions(data.crops[held]).sum(axis=1)
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = self._contributions(data.crops[defect_idx]).sum(axis=1) if defect_idx.size else np.array([])
        thresholds, calibration = held_out_thresholds(held_out, defect_scores)
        if progress:
            progress("unit space ready", 1.0)
        return FitReport(thresholds, {
            "unit_space_images": int(len(kept)), "items": int(self.used.sum()), "held_out_good_images": int(len(held)),
            **calibration,
        })

    def infer(self, crop: np.ndarray) -> EngineOutput:
        return self.infer_batch(crop[None])[0]

    def infer_batch(self, crops: np.ndarray) -> list[EngineOutput]:
        if self.precision is None:
            raise EngineError("the mt engine has not been fitted")
        check_crops(crops, self.grid, "mt")
        return [self._output(s) for s in self._contributions(crops)]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.precision is None:
            raise EngineError("the mt engine has not been fitted")
        return {"used": self.used.astype(np.uint8), "centre": self.centre, "scale": self.scale,
                "precision": self.precision}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        used = np.asarray(arrays.get("used", np.zeros(0)))
        if used.shape != (self.n_items,) or not np.isin(used, (0, 1)).all() or not used.any():
            raise EngineError(f"mt: the item mask has shape {used.shape} or values other than 0 and 1; "
                              f"expected {self.n_items} flags")
        k = int(used.sum())
        centre, scale, precision = (np.asarray(arrays.get(key, np.zeros(0)), np.float64)
                                    for key in ("centre", "scale", "precision"))
        if centre.shape != (k,) or scale.shape != (k,) or precision.shape != (k, k):
            raise EngineError(f"mt: the unit space's arrays do not match its {k} items")
        if not (np.isfinite(centre).all() and np.isfinite(scale).all() and np.isfinite(precision).all()
                and (scale > 0).all()):
            raise EngineError("mt: the unit space's arrays are not finite, or a spread is not positive")
        self.used, self.centre, self.scale, self.precision = used.astype(bool), centre, scale, precision
