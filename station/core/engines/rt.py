"""Taguchi's RT method and its SOART variant, per cell, vectorised over cells (DESIGN §2.2).

A cell vector y (the cell's pixels, flattened, scaled so the object is non-zero) is compared with
the standard vector x (the mean of that cell over a unit space). The metrics of all cells form
the cell tokens; their spread over the unit space gives each cell's RT distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.core.errors import EngineError

METRIC_SETS = {"rt": ("Y1", "Y2"), "soart": ("Y1", "Y2", "Y3")}
PIXEL_OFFSET = 0.1  # black pixels map to 0.1, so a dark object is never a zero vector
MIN_UNIT_SPACE = 3


def scale_pixels(gray: np.ndarray) -> np.ndarray:
    """uint8 grey levels to floats in [0.1, 1.0]; NaN or infinite input is refused."""
    values = np.asarray(gray, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise EngineError("image contains NaN or infinite values")
    return PIXEL_OFFSET + (1.0 - PIXEL_OFFSET) * np.clip(values, 0, 255) / 255.0


def cell_vectors(scaled: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """(..., H, W) scaled image(s) to (..., n_cells, k) cell vectors, cells in row-major order."""
    *lead, h, w = scaled.shape
    ch, cw = h // rows, w // cols
    if ch * cw < 2:
        raise EngineError(f"cells of {cw}x{ch} px have k < 2 pixels; the RT error variance is undefined")
    v = scaled[..., : ch * rows, : cw * cols].reshape(*lead, rows, ch, cols, cw)
    v = np.moveaxis(v, -3, -2)  # (..., rows, cols, ch, cw)
    return v.reshape(*lead, rows * cols, ch * cw)


def rt_metrics(y: np.ndarray, x: np.ndarray, metrics: str = "soart") -> np.ndarray:
    """Metrics of cell vectors y (..., n, k) against standard vectors x (n, k): (..., n, m).

    rt:    Y1 = beta = x.y / x.x (sensitivity),  Y2 = sqrt(Se / (k - 1)) with Se clamped at 0.
    soart: Y1 = beta,  Y2 = as rt,  Y3 = shear = mean|y - beta * vol * x|,
           vol = sqrt(mean(y^2) / mean((beta x)^2)).
    """
    if metrics not in METRIC_SETS:
        raise EngineError(f"unknown metric set {metrics!r}; use one of {sorted(METRIC_SETS)}")
    y = np.asarray(y, dtype=np.float64)  # Se is a difference of near-equal sums: float32 would round it away
    x = np.asarray(x, dtype=np.float64)
    k = y.shape[-1]
    if k < 2:
        raise EngineError("cell vectors need k >= 2 pixels")
    xx = np.einsum("nk,nk->n", x, x)
    if np.any(xx <= 0):
        raise EngineError("a standard vector is zero; scale the pixels so the object is non-zero")
    xy = np.einsum("...nk,nk->...n", y, x)
    yy = np.einsum("...nk,...nk->...n", y, y)
    beta = xy / xx
    se = np.maximum(yy - xy * xy / xx, 0.0)
    y2 = np.sqrt(se / (k - 1))
    if metrics == "rt":
        return np.stack([beta, y2], axis=-1)
    # beta * vol = sign(beta) * sqrt(y.y / x.x); written so beta == 0 needs no division by it
    scale = np.sign(beta) * np.sqrt(yy / xx)
    shear = np.mean(np.abs(y - scale[..., None] * x), axis=-1)
    return np.stack([beta, y2, shear], axis=-1)


@dataclass
class UnitSpace:
    """Standard vectors and the metric statistics of one homogeneous group of images."""

    standard: np.ndarray  # (n_cells, k)
    mean: np.ndarray  # (n_cells, m)
    cov_inv: np.ndarray  # (n_cells, m, m)
    metrics: str = "soart"

    @classmethod
    def fit(cls, vectors: np.ndarray, metrics: str = "soart", ridge: float = 1e-3,
            standard: np.ndarray | None = None, shrink: float = 0.0) -> UnitSpace:
        """Fit from cell vectors (N, n_cells, k) of N unit-space images.

        `shrink` draws each cell's covariance that share of the way toward the mean covariance of all cells, so
        no cell is trusted to be steadier than a share of a typical one: a uniform background hardly varies
        among good images, and without it a lamp 3 % dimmer (its saturated corners coming down from 255) made
        every good bottle NG (docs/photographs.md, "Lamp drift").
        A covariance that is singular (a cell that never varies, or fewer images than metrics)
        gets a ridge relative to its own scale, plus an absolute floor so it is always invertible.
        """
        if not 0.0 <= shrink <= 1.0:
            raise EngineError(f"shrink must be from 0 to 1, not {shrink!r}")
        n = vectors.shape[0]
        if n < MIN_UNIT_SPACE:
            raise EngineError(f"a unit space needs at least {MIN_UNIT_SPACE} images, got {n}")
        if standard is None:
            standard = vectors.mean(axis=0)
        standard = np.asarray(standard, dtype=np.float32)  # as stored, so fit and inference agree exactly
        y = rt_metrics(vectors, standard, metrics)  # (N, n_cells, m)
        mean = y.mean(axis=0)
        centred = y - mean
        cov = np.einsum("inj,inl->njl", centred, centred) / max(n - 1, 1)
        if shrink:
            cov = (1.0 - shrink) * cov + shrink * cov.mean(axis=0)[None]
        m = cov.shape[-1]
        scale = np.trace(cov, axis1=1, axis2=2) / m
        floor = 1e-8 + 1e-6 * np.abs(mean).mean(axis=1) ** 2
        eye = np.eye(m)[None]
        cov = cov + (ridge * scale + floor)[:, None, None] * eye
        return cls(standard.astype(np.float32), mean.astype(np.float32),
                   np.linalg.inv(cov).astype(np.float32), metrics)

    def metrics_of(self, vectors: np.ndarray) -> np.ndarray:
        return rt_metrics(vectors, self.standard, self.metrics)

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """RT distance D^2 per cell, (..., n_cells): y'^T V^-1 y' / m, with y' = Y - mean(Y)."""
        return self.distance_of_metrics(self.metrics_of(vectors))

    def distance_of_metrics(self, y: np.ndarray) -> np.ndarray:
        d = y - self.mean
        m = d.shape[-1]
        return np.einsum("...nj,njl,...nl->...n", d, self.cov_inv, d) / m

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}standard": self.standard, f"{prefix}mean": self.mean, f"{prefix}cov_inv": self.cov_inv}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, metrics: str) -> UnitSpace:
        try:
            standard, mean, cov_inv = (arrays[f"{prefix}{k}"] for k in ("standard", "mean", "cov_inv"))
        except KeyError as exc:
            raise EngineError(f"unit space array {exc.args[0]} is missing") from None
        m = len(METRIC_SETS.get(metrics, ()))
        n = standard.shape[0] if standard.ndim == 2 else -1
        if m == 0 or mean.shape != (n, m) or cov_inv.shape != (n, m, m):
            raise EngineError(f"unit space arrays {prefix}* have inconsistent shapes")
        return cls(standard, mean, cov_inv, metrics)
