"""`station train`: read a dataset, learn the part's region, register every image, fit an engine,
and save the recipe with its provenance."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.core.dataset import Dataset, Sample
from station.core.engines import TrainingSet, engine_class
from station.core.engines.base import Progress
from station.core.errors import DatasetError, ImageError, RegistrationError
from station.core.grid import CellGrid
from station.core.imageio import image_size, read_image
from station.core.masks import read_mask
from station.core.recipe import BUNDLE_FILES, Recipe
from station.core.pose import PoseFit
from station.core.registration import (FREE_FORM_REGIONS, Region, Registrar, bounded_whole_frame, fit_pose_region,
                                       WHOLE_LONG_PX, WHOLE_SHORT_PX, fit_region)
from station.core.teach import Setup, cell_size, fit_pattern_region, propose_setup
from station.core.tone import steady_tone

logger = logging.getLogger(__name__)
GOOD_NG_WARN = 0.05  # held-out good images at or above NG from which training warns: one good part in 20

FULL_FRAME_GRID = (8, 8)  # cells over frames that cannot be registered (tiles of varying size)
RECIPE_FILES = BUNDLE_FILES  # what `station train --out` may replace
ONE_CAMERA_SHARE = 0.75  # good images of one size at least this share: one camera, the others are odd ones out
TRAIN_FRAME_BYTES = 4 * 1024 ** 3  # decoded training frames held at once, at most: room for the engines beside them
# on a plain PC of 16 GB (every real set here takes under 1 GB: the screws' 320 frames the most, 0.94 GB)


def mask_cell(registrar: Registrar, registered, mask_path: Path,
              shape: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The grid cell most covered by a ground-truth mask (frame coordinates: the frame's `shape` where given),
    after registration."""
    try:
        mask = read_mask(mask_path, shape).astype(np.uint8) * 255
    except ImageError as exc:  # a broken mask loses one image's cell label, not the run
        logger.warning("mask left out: %s", exc)
        return None
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
            cell = mask_cell(registrar, reg, sample.mask, image.shape[:2])
        cells.append(cell)
    return TrainingSet(np.stack(crops), labels, cells, registrar.grid)


def labelled_grid(data: Dataset, min_labels: int = 20) -> tuple[int, int] | None:
    """(cols, rows) spanned by the labelled defective cells, when enough are labelled to have seen them all."""
    cells = [s.cell for s in data.samples if s.cell is not None]
    if len(cells) < min_labels:
        return None
    return max(c for c, _ in cells) + 1, max(r for _, r in cells) + 1


def one_camera(images: list[np.ndarray]) -> bool:
    """Whether the images share one frame size (one camera, one golden frame to register against)."""
    return len({im.shape[:2] for im in images}) <= 1


def full_frame_grid(goods: list[np.ndarray], grid: CellGrid | tuple[int, int] | None,
                    cell_px: int | None) -> CellGrid:
    """The grid over whole frames (each resized to the crop): the one given, else 8 x 8 square-ish cells
    whose size follows the frames' median size."""
    if isinstance(grid, CellGrid):
        return grid
    cols, rows = grid if grid is not None else FULL_FRAME_GRID
    side = float(np.median([np.sqrt(im.shape[0] * im.shape[1]) for im in goods]))
    return CellGrid(cols, rows, cell_px or cell_size(side / max(cols, rows), cols * rows))


def needs_cells(data: Dataset, cells_given: bool) -> bool:
    """Whether `station train` keeps the cell grid: one was given (grid, setup, blob region), or the data
    has defect classes or labelled cells to learn from (the pin products)."""
    return cells_given or any(s.label != "good" or s.cell is not None for s in data.samples)


def teach_for(data: Dataset, goods: list[np.ndarray], grid: CellGrid | tuple[int, int] | None,
              cell_px: int | None = None, labelled: list[tuple[np.ndarray, tuple[int, int]]] | None = None) -> Setup:
    """The setup `station train` assumes when none was taught: the proposal from the good images (and the
    labelled defects), with the grid given, else the one the labelled cells span, else the one the features'
    rhythm shows."""
    if isinstance(grid, CellGrid):
        cols_rows, cell_px = (grid.cols, grid.rows), cell_px or grid.cell_px
    else:
        cols_rows = grid if grid is not None else labelled_grid(data)
    return propose_setup(goods, cols_rows, cell_px, labelled=labelled)


def labelled_images(data: Dataset, limit: int = 160, images: list[np.ndarray] | None = None,
                    seed: int = 0) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Up to `limit` defect images with their labelled cell (read from disk unless `images` has them; a file that
    cannot be read is left out)."""
    index = [i for i, s in enumerate(data.samples) if s.label != "good" and s.cell is not None]
    if len(index) > limit:
        index = sorted(np.random.default_rng(seed).choice(index, limit, replace=False).tolist())
    if images is not None:
        return [(images[i], data.samples[i].cell) for i in index]
    read, kept, skipped = read_readable([data.samples[i].path for i in index])
    for line in skipped:
        logger.info("labelled image left out: %s", line)
    return [(im, data.samples[index[k]].cell) for im, k in zip(read, kept)]


def read_images(data: Dataset) -> list[np.ndarray]:
    """Every image of a dataset, in its samples' order; the first unreadable one raises ImageError."""
    return [read_image(s.path) for s in data.samples]


def read_readable(paths: list[Path], max_side: int | None = None,
                  whole_frames: bool = False) -> tuple[list[np.ndarray], list[int], list[str]]:
    """The images of `paths` that can be read, their indexes, and a line for each one that cannot; with
    `max_side`, each is shrunk as it is read to at most that many px on its longer side (many photographs of a
    50 MP camera would not fit in memory at full size); with `whole_frames`, each is shrunk as a whole frame is
    on its way to a free-form crop (`bounded_whole_frame`), which gives the crop the same pixels."""
    images, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except ImageError as exc:
            skipped.append(str(exc))
            continue
        scale = max_side / max(image.shape[:2]) if max_side else 1.0
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(bounded_whole_frame(image) if whole_frames else image)
        kept.append(i)
    return images, kept, skipped


def odd_sizes(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int] | None, list[int]]:
    """The camera's frame size and the indexes of the frames of another size, when one size holds most
    frames (ONE_CAMERA_SHARE); (None, []) when all agree or when no size dominates (tiles of a texture)."""
    counts = Counter(sizes)
    if len(counts) <= 1:
        return None, []
    size, n = counts.most_common(1)[0]
    if n < ONE_CAMERA_SHARE * len(sizes):
        return None, []
    return size, [i for i, s in enumerate(sizes) if s != size]


def frame_bytes(path: Path, whole_frames: bool) -> int:
    """The bytes an image's frame takes once read (RGB, 8 bits), from its header alone: as large as it is, or
    as a whole frame is kept (`bounded_whole_frame`); 0 where the header cannot be read (it is left out later)."""
    try:
        w, h = image_size(path)
    except ImageError:
        return 0
    if whole_frames:
        scale = min(1.0, WHOLE_SHORT_PX / min(w, h), WHOLE_LONG_PX / max(w, h))
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    return w * h * 3


def _bytes(n: int) -> str:
    return f"{n / 1024 ** 3:.1f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MB"


def within_memory(data: Dataset, whole_frames: bool, seed: int = 0) -> tuple[Dataset, str | None]:
    """The dataset, or where its frames would take more than TRAIN_FRAME_BYTES once read, a seeded sample of
    its images that fits (each class in about its share), with the line that says so: thousands of a large
    camera's frames must not run a plain PC out of memory halfway through training."""
    sizes = [frame_bytes(s.path, whole_frames) for s in data.samples]
    total = sum(sizes)
    if total <= TRAIN_FRAME_BYTES:
        return data, None
    keep, held = [], 0
    for i in np.random.default_rng(seed).permutation(len(sizes)):
        if held + sizes[i] > TRAIN_FRAME_BYTES:
            continue
        keep.append(int(i))
        held += sizes[i]
    keep.sort()
    line = (f"{len(keep)} of {len(sizes)} images used, a seeded sample: read, they would take {_bytes(total)}, "
            f"more than the {_bytes(TRAIN_FRAME_BYTES)} a training run holds (--max-per-class samples fewer)")
    logger.warning("training: %s", line)
    return Dataset(data.root, data.layout, [data.samples[i] for i in keep]), line


def read_training_images(data: Dataset, whole_frames: bool = False) -> tuple[Dataset, list[np.ndarray], list[str]]:
    """The dataset's readable images, with a line for each image left out: files that cannot be read, and good
    images whose size differs from the camera's (one odd image must not switch the whole recipe to full-frame
    registration). DatasetError when no good image remains. `whole_frames` (a free-form product: each frame
    resized to the crop) keeps each frame only as large as its way to the crop needs (`read_readable`). Sample
    a dataset too large to hold first (`within_memory`)."""
    images, kept, skipped = read_readable([s.path for s in data.samples], whole_frames=whole_frames)
    samples = [data.samples[i] for i in kept]
    goods = [i for i, s in enumerate(samples) if s.label == "good"]
    size, odd = odd_sizes([images[i].shape[:2] for i in goods])
    if odd:
        drop = {goods[i] for i in odd}
        h, w = size
        skipped += [f"{samples[i].path}: {images[i].shape[1]} x {images[i].shape[0]} px, the other good images "
                    f"{w} x {h} px" for i in sorted(drop)]
        samples = [s for i, s in enumerate(samples) if i not in drop]
        images = [im for i, im in enumerate(images) if i not in drop]
    if not any(s.label == "good" for s in samples):
        first = f" ({skipped[0]})" if skipped else ""
        raise DatasetError(f"{data.root} has no readable 'good' images{first}")
    for line in skipped:
        logger.info("image left out of training: %s", line)
    return Dataset(data.root, data.layout, samples), images, skipped


def threshold_warnings(info: dict[str, Any]) -> list[str]:
    """What the engineer must read before using a recipe: held-out good parts at or above the NG threshold, a
    share of GOOD_NG_WARN (one in 20) or more. The calibration weighs an escape 5 times a false reject, as rates,
    so where a labelled defect class looks like the good parts, stopping good parts can cost it least."""
    rate = info.get("held_out_good_ng_rate")
    if not isinstance(rate, (int, float)) or not rate >= GOOD_NG_WARN:
        return []
    return [f"{rate:.0%} of the held-out good images score at or above the NG threshold: the labelled defects "
            "overlap the good parts, so good parts will be judged NG; look at `station eval` (false_reject_rate) "
            "or the threshold tuner before using this recipe"]


def train_recipe(data: Dataset, engine_name: str, grid: CellGrid | tuple[int, int] | None, name: str, seed: int = 0,
                 engine_config: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                 progress: Progress | None = None, refine: str = "ecc", setup: Setup | None = None,
                 region_mode: str = "pattern", cell_px: int | None = None,
                 images: list[np.ndarray] | None = None, pose: PoseFit | None = None) -> tuple[Recipe, dict[str, Any]]:
    """Fit an engine on a dataset. Registration follows the taught `setup`; without one, the setup is proposed
    from the good images (the recipe's provenance holds it) or, with `region_mode="blob"`, the part is the largest
    dark or bright blob (recipes of earlier versions). Good images of different sizes (tiles of a texture)
    cannot be registered to one golden frame: each frame is then resized to the crop ("full"). `images`, when
    the caller has read them already (`read_training_images`, with the dataset it returns), saves reading them
    again; else unreadable and odd images are left out and listed in the stats' `skipped_images`. A part that
    lies at any angle (`region_mode="pose"`) is turned back to the `pose` found in the good images
    (station.core.pose), on the grid given."""
    if not any(s.label == "good" for s in data.samples):
        raise DatasetError(f"{data.root} has no 'good' images; every engine needs the OK class")
    t0 = time.perf_counter()
    skipped: list[str] = []
    sampled = None
    if images is None:
        data, sampled = within_memory(data, whole_frames=False, seed=seed)
        data, images, skipped = read_training_images(data)
    t_read = time.perf_counter()
    goods = [im for im, s in zip(images, data.samples) if s.label == "good"]
    if region_mode == "pattern" and setup is None and not one_camera(goods):
        region_mode = "full"  # tiles of different sizes: no golden frame to register against
    if region_mode == "blob":
        if not isinstance(grid, CellGrid):
            raise DatasetError("blob registration needs the grid (COLSxROWS)")
        region = fit_region(goods, grid, refine, names=[str(s.path) for s in data.samples if s.label == "good"])
    elif region_mode == "full":
        grid = full_frame_grid(goods, grid, cell_px)
        region = Region("full", refine="none")
    elif region_mode == "pose":
        if pose is None or not isinstance(grid, CellGrid):
            raise DatasetError("a pose region needs the part's pose from the good images and the grid")
        region = fit_pose_region(goods, grid, pose, refine)
    elif region_mode == "pattern":
        if setup is None:
            setup = teach_for(data, goods, grid, cell_px, labelled_images(data, images=images, seed=seed))
        grid = setup.grid
        region = fit_pattern_region(goods, setup, refine)
    else:
        raise DatasetError(f"unknown region mode {region_mode!r}; use 'pattern', 'blob' or 'full'")
    engine = engine_class(engine_name)(grid, engine_config)
    registrar = Registrar(region, grid)
    training = register_samples(registrar, data.samples, images)
    if region_mode in FREE_FORM_REGIONS:
        # where the good parts were shot in one light, a free-form crop shot in other light is judged in their
        # tones: the registrar brings it back from now on
        region.tone = steady_tone(training.crops[training.indices(training.ok_class)])
        if region.tone is not None:
            training.crops = np.stack([region.tone.judged(c)[0] for c in training.crops])
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
        **({"skipped_images": skipped} if skipped else {}),
        **({"sampled": sampled} if sampled else {}),
        **report.info,
    }
    warnings = ([sampled] if sampled else []) + threshold_warnings(report.info)
    for line in warnings:
        logger.warning("training %s: %s", name, line)
    if warnings:
        stats["warnings"] = warnings
    if setup is not None:
        stats["setup"] = setup.to_dict()
    recipe = Recipe.create(name, region, engine, report.thresholds, data.classes,
                           provenance={**(provenance or {}), "seed": seed, "data": str(data.root), **stats})
    return recipe, stats
