"""From registered crops to the ViT's input tensor: RGB, optionally plus the SOART metric channels.

The SOART channels (DESIGN §2.2) are each cell's Y1, Y2, Y3 against the good standard vector,
z-scored by their spread over the good training crops and painted over the cell's pixels, plus the
per-pixel residual y - beta * x that the shear metric sums up: the deviation from the good part is
what makes a defect stand out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from station.core.errors import EngineError
from station.core.grid import CellGrid
from station.core.imageio import to_gray
from station.core.engines.rt import cell_vectors, rt_metrics, scale_pixels

INPUTS = {"rgb": 3, "rgb+soart": 7}
RGB_MEAN, RGB_STD = 0.45, 0.25


def in_channels(inputs: str) -> int:
    if inputs not in INPUTS:
        raise EngineError(f"unknown ViT inputs {inputs!r}; use one of {sorted(INPUTS)}")
    return INPUTS[inputs]


@dataclass
class SoartStandard:
    """The good standard vectors and the metric statistics the SOART channels are z-scored by."""

    standard: np.ndarray  # (n_cells, k)
    mean: np.ndarray  # (n_cells, 4): Y1, Y2, Y3 and the residual's mean
    std: np.ndarray  # (n_cells, 4): their spread over the good crops

    @classmethod
    def fit(cls, good_crops: np.ndarray, grid: CellGrid) -> SoartStandard:
        if len(good_crops) < 2:
            raise EngineError("the SOART channels need at least 2 good training images")
        vec = _vectors(good_crops, grid)
        standard = vec.mean(axis=0)
        y = rt_metrics(vec, standard, "soart")
        res = _residual(vec, y[..., 0], standard)
        y = np.concatenate([y, res.mean(-1, keepdims=True)], axis=-1)
        std = y.std(0) + 1e-3 * np.abs(y.mean(0)) + 1e-6
        std[:, 3] = res.std(axis=(0, 2)) + 1e-6  # the residual is scaled per pixel, not per cell mean
        return cls(standard.astype(np.float32), y.mean(0).astype(np.float32), std.astype(np.float32))

    def channels(self, crops: np.ndarray, grid: CellGrid) -> np.ndarray:
        """(N, 4, H, W): z-scored metrics painted over their cells and the scaled pixel residual,
        clipped so one wild cell cannot swamp the input."""
        vec = _vectors(crops, grid)
        y = rt_metrics(vec, self.standard, "soart")
        z = np.clip((y - self.mean[:, :3]) / self.std[:, :3], -20, 20)
        n, c, px = len(crops), grid.cell_px, grid.cell_px
        z = z.reshape(n, grid.rows, grid.cols, 3).transpose(0, 3, 1, 2)
        z = z.repeat(c, axis=2).repeat(px, axis=3)
        res = np.clip(_residual(vec, y[..., 0], self.standard) / self.std[None, :, 3:], -20, 20)
        res = res.reshape(n, grid.rows, grid.cols, c, px).transpose(0, 1, 3, 2, 4).reshape(n, 1, grid.rows * c, -1)
        return np.concatenate([z, res], axis=1).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"soart.standard": self.standard, "soart.mean": self.mean, "soart.std": self.std}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], grid: CellGrid) -> SoartStandard:
        try:
            s, m, d = arrays["soart.standard"], arrays["soart.mean"], arrays["soart.std"]
        except KeyError as exc:
            raise EngineError(f"ViT weights lack the SOART standard array {exc.args[0]!r}") from None
        n, k = grid.n_cells, grid.cell_px * grid.cell_px
        if s.shape != (n, k) or m.shape != (n, 4) or d.shape != (n, 4):
            raise EngineError(f"SOART standard arrays have shapes {s.shape}, {m.shape}, {d.shape}; the grid "
                              f"needs {(n, k)}, {(n, 4)}, {(n, 4)}")
        return cls(s.astype(np.float32), m.astype(np.float32), d.astype(np.float32))


def _residual(vec: np.ndarray, beta: np.ndarray, standard: np.ndarray) -> np.ndarray:
    """Per-pixel deviation from the standard scaled by the cell's sensitivity: y - beta * x, (..., n, k)."""
    return vec - beta[..., None] * standard


def _vectors(crops: np.ndarray, grid: CellGrid) -> np.ndarray:
    gray = np.stack([to_gray(c) for c in crops])
    return cell_vectors(scale_pixels(gray), grid.cols, grid.rows)


def to_input(crops: np.ndarray, grid: CellGrid, soart: SoartStandard | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops to a float tensor (N, C, H, W)."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    w, h = grid.size
    if crops.shape[1:] != (h, w, 3):
        raise EngineError(f"crops are {crops.shape[1:]}, the grid needs {(h, w, 3)}")
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    x = (x / 255.0 - RGB_MEAN) / RGB_STD
    if soart is not None:
        x = torch.cat([x, torch.from_numpy(soart.channels(crops, grid))], dim=1)
    return x.contiguous()
