"""The RT engine: one unit space of good parts, RT/SOART metrics per cell, RT distance per cell and image.

With `staggered` (and `pixel_map`), a second unit space is fitted on the cells of the crop shifted by half a
cell, and the pixel map is the mean of the two grids' maps: the map has a value every half cell, so a defect's
outline follows it more closely (dev bottle: PRO 0.836 -> 0.850, the tyre's RT map 0.422 -> 0.490;
docs/photographs.md). The image score, the cells and the thresholds stay the first grid's.

With `colour`, a colour crop's cell vector holds the cell's pixels in three channels, its grey level and its two
opponent colours (CIELAB a*, b*), so a stain of another hue at the same grey level moves the cell's metrics as a
change of brightness would; read in grey, RT scored such stains at chance (docs/photographs.md)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from station.core.engines.base import Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet
from station.core.engines.calibration import good_ng_rate, without_outliers
from station.core.engines.settings import RTSettings
from station.core.errors import EngineError
from station.core.grid import CellGrid
from station.core.imageio import to_gray
from station.core.engines.rt import METRIC_SETS, UnitSpace, cell_vectors, scale_pixels
from station.core.verdict import calibrate_thresholds


def channel_cell_vectors(scaled: np.ndarray, grid: CellGrid, channels: int) -> np.ndarray:
    """(..., H, W) grey or (..., C, H, W) scaled crop(s) to (..., n_cells, C * k) cell vectors: a cell's pixels,
    channel after channel."""
    if channels == 1:
        return cell_vectors(scaled, grid.cols, grid.rows)
    per_channel = cell_vectors(scaled, grid.cols, grid.rows)  # (..., C, n_cells, k)
    moved = np.moveaxis(per_channel, -3, -2)  # (..., n_cells, C, k)
    return moved.reshape(*moved.shape[:-2], -1)


def searched_cell_vectors(scaled: np.ndarray, grid: CellGrid, standard: np.ndarray, radius: int) -> np.ndarray:
    """Cell vectors (n_cells, C * k) of one scaled crop, (H, W) or (C, H, W), each cell shifted by up to `radius`
    px to best match its standard vector (highest cosine): the local refinement of DESIGN §2 that absorbs
    what registration leaves of misalignment. Every channel of a cell moves together."""
    channels = 1 if scaled.ndim == 2 else scaled.shape[0]
    if radius <= 0:
        return channel_cell_vectors(scaled, grid, channels)
    planes = scaled.reshape(channels, *scaled.shape[-2:])
    ch, cw = planes.shape[1] // grid.rows, planes.shape[2] // grid.cols
    padded = np.pad(planes, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, (ch, cw), axis=(1, 2))  # (C, H', W', ch, cw)
    shifts = np.arange(2 * radius + 1)
    ys = (np.arange(grid.rows) * ch)[:, None] + shifts[None, :]  # (rows, S)
    xs = (np.arange(grid.cols) * cw)[:, None] + shifts[None, :]  # (cols, S)
    cand = view[:, ys[:, None, :, None], xs[None, :, None, :]]  # (C, rows, cols, S, S, ch, cw)
    s = len(shifts)
    cand = np.moveaxis(cand, 0, 4).reshape(grid.n_cells, s * s, channels * ch * cw)
    dots = np.einsum("nsk,nk->ns", cand, standard)
    norms = np.sqrt(np.einsum("nsk,nsk->ns", cand, cand)) + 1e-12
    best = np.argmax(dots / norms, axis=1)
    return cand[np.arange(grid.n_cells), best]


class RTEngine(Engine):
    name = "rt"
    kind = "anomaly"
    settings_model = RTSettings
    capabilities = Capabilities(map_name="RT distance per cell", summary="RT: fits in seconds from good images alone; good / not good")

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"metrics": "soart", "search_px": "auto", "ridge": 1e-3, "folds": 5, "pixel_map": False,
                "calibration": "max", "shrink": 0.0, "staggered": False, "colour": False}

    #: recipes saved before the pixel map drew their cells only and calibrated on every held-out good score
    saved_before = {"pixel_map": False, "calibration": "max", "staggered": False, "colour": False}

    scaled_px = {"search_px": 1}  # the local search, measured at 24 px cells; other cells scale it

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        sp = self.config["search_px"]
        if not (isinstance(sp, int) and not isinstance(sp, bool) and 0 <= sp <= 32):
            raise EngineError(f"search_px must be 'auto' or a whole number of px from 0 to 32, not {sp!r}")
        if self.config["calibration"] not in ("max", "robust"):
            raise EngineError(f"calibration must be 'max' or 'robust', not {self.config['calibration']!r}")
        for key in ("pixel_map", "staggered", "colour"):
            if not isinstance(self.config[key], bool):
                raise EngineError(f"{key} must be true or false, not {self.config[key]!r}")
        if self.config["metrics"] not in METRIC_SETS:
            raise EngineError(f"unknown RT metric set {self.config['metrics']!r}; use one of {sorted(METRIC_SETS)}")
        self.unit_space: UnitSpace | None = None
        self.offset_space: UnitSpace | None = None  # the half-cell-shifted grid's, where staggered
        if self.config["pixel_map"]:  # the legend names what a free-form part's map shows
            self.capabilities = replace(RTEngine.capabilities,
                                        map_name=f"RT distance per {grid.cell_px} px patch, drawn per pixel")

    @property
    def offset_grid(self) -> CellGrid | None:
        """The grid of the cells shifted by half a cell (one fewer each way), where the map is staggered."""
        g = self.grid
        if not (self.config["pixel_map"] and self.config["staggered"]) or g.cols < 2 or g.rows < 2 or g.cell_px % 2:
            return None
        return CellGrid(g.cols - 1, g.rows - 1, g.cell_px)

    def _offset(self, scaled: np.ndarray) -> np.ndarray:
        """The scaled crop(s) (..., H, W) with half a cell cut from each side: the offset grid's crop."""
        h = self.grid.cell_px // 2
        return np.ascontiguousarray(scaled[..., h:-h, h:-h])

    # -- vectors -------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 3 if self.config["colour"] else 1

    def _scaled(self, crop: np.ndarray) -> np.ndarray:
        """The crop's pixels scaled for RT: (H, W) grey, or (3, H, W) grey, a* and b* where the engine reads colour
        (a grey crop then has neutral opponent channels)."""
        gray = crop if crop.ndim == 2 else to_gray(crop)
        if not self.config["colour"]:
            return scale_pixels(gray)
        if crop.ndim == 3:
            lab = cv2.cvtColor(np.ascontiguousarray(crop[..., :3]), cv2.COLOR_RGB2LAB)
            a, b = lab[..., 1], lab[..., 2]
        else:
            a = b = np.full(gray.shape, 128, np.uint8)
        return scale_pixels(np.stack([gray, a, b]))

    def _vectors(self, scaled: np.ndarray, standard: np.ndarray, grid: CellGrid | None = None) -> np.ndarray:
        return searched_cell_vectors(scaled, grid or self.grid, standard, int(self.config["search_px"]))

    def _fit_space(self, scaled: np.ndarray, grid: CellGrid | None = None) -> UnitSpace:
        """Unit space from scaled good crops (N, H, W): standard, then vectors searched against it."""
        if len(scaled) == 0:
            raise EngineError("no good images to build the unit space from")
        grid = grid or self.grid
        first = channel_cell_vectors(scaled, grid, self.channels).mean(axis=0)
        vectors = np.stack([self._vectors(s, first, grid) for s in scaled])
        return UnitSpace.fit(vectors, self.config["metrics"], float(self.config["ridge"]),
                             shrink=float(self.config["shrink"]))

    def _score(self, space: UnitSpace, scaled: np.ndarray, grid: CellGrid | None = None) -> np.ndarray:
        return space.distance(self._vectors(scaled, space.standard, grid))

    # -- Engine ----------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        good_idx = data.indices(data.ok_class)
        if len(good_idx) < 3:
            raise EngineError(f"the RT engine needs at least 3 '{data.ok_class}' images, got {len(good_idx)}")
        scaled = np.stack([self._scaled(c) for c in data.crops])
        good = scaled[good_idx]
        # held-out good scores: each good image scored by a unit space that never saw it
        folds = min(int(self.config["folds"]), len(good_idx))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(good_idx))
        held_out = np.empty(len(good_idx))
        can_cross_validate = len(good_idx) - int(np.ceil(len(good_idx) / folds)) >= 3
        for f in range(folds if can_cross_validate else 0):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            space = self._fit_space(good[train])
            held_out[test] = [self._score(space, s).max() for s in good[test]]
            if progress:
                progress("cross-validating the unit space", (f + 1) / (folds + 1))
        self.unit_space = self._fit_space(good)
        offset = self.offset_grid
        self.offset_space = None if offset is None else self._fit_space(self._offset(good), offset)
        if not can_cross_validate:  # too few images to hold any out: in-sample scores, said in info
            held_out = np.array([self._score(self.unit_space, s).max() for s in good])
        defect_idx = np.array([i for i, lab in enumerate(data.labels) if lab != data.ok_class], dtype=int)
        defect_scores = np.array([self._score(self.unit_space, scaled[i]).max() for i in defect_idx])
        set_aside = 0
        if self.config["calibration"] == "robust":
            held_out, set_aside = without_outliers(held_out)
        thresholds = calibrate_thresholds(held_out, defect_scores)
        if progress:
            progress("unit space fitted", 1.0)
        return FitReport(thresholds, {
            "unit_space_images": int(len(good_idx)),
            "held_out_good_scores": "cross-validated" if can_cross_validate else "in-sample",
            "held_out_good_max": float(held_out.max()),
            "held_out_good_set_aside": set_aside,
            "held_out_good_ng_rate": good_ng_rate(held_out, thresholds[1]),
            "defect_min": float(defect_scores.min()) if defect_scores.size else None,
        })

    def infer(self, crop: np.ndarray) -> EngineOutput:
        if self.unit_space is None:
            raise EngineError("the RT engine has not been fitted")
        scaled = self._scaled(crop)
        d2 = np.nan_to_num(self._score(self.unit_space, scaled), nan=np.inf)
        cells = d2.reshape(self.grid.rows, self.grid.cols)
        if not self.config["pixel_map"]:
            return EngineOutput(float(d2.max()), cells)
        pixel_map = self._pixel_map(cells, self.grid)
        offset = self.offset_grid
        if self.offset_space is not None and offset is not None:
            shifted = self._score(self.offset_space, self._offset(scaled), offset)
            shifted = np.nan_to_num(shifted, nan=np.inf).reshape(offset.rows, offset.cols)
            h = self.grid.cell_px // 2
            other = pixel_map.copy()
            other[h:-h, h:-h] = self._pixel_map(shifted, offset)
            pixel_map = np.minimum(0.5 * (pixel_map + other), np.float32(min(d2.max(), np.finfo(np.float32).max)))
        return EngineOutput(float(d2.max()), cells, pixel_map=pixel_map)

    @staticmethod
    def _pixel_map(cells: np.ndarray, grid: CellGrid) -> np.ndarray:
        """The cells' RT distances at the crop's resolution (each cell's value at its centre, linear between
        centres, so its maximum is at most the image score): free-form parts get a map, not a grid of blocks."""
        finite = np.nan_to_num(cells, posinf=np.finfo(np.float32).max / 4).astype(np.float32)
        return cv2.resize(finite, grid.size, interpolation=cv2.INTER_LINEAR)

    def arrays(self) -> dict[str, np.ndarray]:
        if self.unit_space is None:
            raise EngineError("the RT engine has not been fitted")
        arrays = self.unit_space.arrays("good.")
        if self.offset_space is not None:
            arrays.update(self.offset_space.arrays("offset."))
        return arrays

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.unit_space = self._loaded(arrays, "good.", self.grid)
        offset = self.offset_grid
        self.offset_space = None if offset is None else self._loaded(arrays, "offset.", offset)

    def _loaded(self, arrays: dict[str, np.ndarray], prefix: str, grid: CellGrid) -> UnitSpace:
        space = UnitSpace.from_arrays(arrays, prefix, self.config["metrics"])
        needed = (grid.n_cells, self.channels * grid.cell_px * grid.cell_px)
        if space.standard.shape != needed:
            raise EngineError(f"unit space is for another grid or channels: standard vectors {space.standard.shape}, "
                              f"the recipe needs {needed}")
        return space
