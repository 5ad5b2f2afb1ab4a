"""`station train`: read a dataset, learn the part's region, register every image, fit an engine,
and save the recipe with its provenance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from station.core.dataset import Dataset, Sample
from station.core.engines import TrainingSet, engine_class
from station.core.engines.base import Progress
from station.core.errors import DatasetError, RegistrationError
from station.core.grid import CellGrid
from station.core.imageio import read_image
from station.core.recipe import Recipe
from station.core.registration import Registrar, fit_region


def mask_cell(registrar: Registrar, registered, mask_path: Path) -> tuple[int, int] | None:
    """The grid cell most covered by a ground-truth mask (frame coordinates), after registration."""
    mask = read_image(mask_path)[:, :, 0]
    warped = registrar.warp(np.dstack([mask] * 3), registered.matrix)[:, :, 0]
    g = registrar.grid
    h, w = warped.shape
    cover = warped[: g.rows * (h // g.rows), : g.cols * (w // g.cols)].reshape(
        g.rows, h // g.rows, g.cols, w // g.cols).mean(axis=(1, 3))
    if cover.max() <= 0:
        return None
    row, col = np.unravel_index(int(np.argmax(cover)), cover.shape)
    return int(col), int(row)


def register_samples(registrar: Registrar, samples: list[Sample], images: list[np.ndarray]) -> TrainingSet:
    crops, labels, cells = [], [], []
    for sample, image in zip(samples, images):
        try:
            reg = registrar.register(image)
        except RegistrationError as exc:
            raise DatasetError(f"{sample.path}: {exc}") from None
        crops.append(reg.crop)
        labels.append(sample.label)
        cell = sample.cell
        if cell is None and sample.mask is not None:
            cell = mask_cell(registrar, reg, sample.mask)
        cells.append(cell)
    return TrainingSet(np.stack(crops), labels, cells, registrar.grid)


def train_recipe(data: Dataset, engine_name: str, grid: CellGrid, name: str, seed: int = 0,
                 engine_config: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                 progress: Progress | None = None, refine: str = "ecc") -> tuple[Recipe, dict[str, Any]]:
    if not any(s.label == "good" for s in data.samples):
        raise DatasetError(f"{data.root} has no 'good' images; every engine needs the OK class")
    engine = engine_class(engine_name)(grid, engine_config)
    t0 = time.perf_counter()
    images = [read_image(s.path) for s in data.samples]
    t_read = time.perf_counter()
    region = fit_region([im for im, s in zip(images, data.samples) if s.label == "good"], grid, refine)
    registrar = Registrar(region, grid)
    training = register_samples(registrar, data.samples, images)
    t_reg = time.perf_counter()
    report = engine.fit(training, seed=seed, progress=progress)
    t_fit = time.perf_counter()
    stats = {
        "fit_seconds": round(t_fit - t_read, 3),  # registration learning + engine fit, not file reading
        "read_seconds": round(t_read - t0, 3),
        "register_seconds": round(t_reg - t_read, 3),
        "engine_seconds": round(t_fit - t_reg, 3),
        "n_train": data.counts(),
        "cell_labels": sum(c is not None for c in training.cells),
        **report.info,
    }
    recipe = Recipe.create(name, region, engine, report.thresholds, data.classes,
                           provenance={**(provenance or {}), "seed": seed, "data": str(data.root), **stats})
    return recipe, stats
