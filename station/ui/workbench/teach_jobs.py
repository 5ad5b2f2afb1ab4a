"""The Teach dialog's work without widgets: reading the good images, the proposal, the check on good images
and the save, each run as a `jobs.Job` in a worker thread, and the setup a save replaces (for the audit)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from station.core.dataset import OK_CLASS, load_dataset
from station.core.errors import RegistrationError, StationError
from station.core.imageio import is_image_file, read_image, to_rgb
from station.core.pattern import Roi
from station.core.registration import Registrar
from station.core.teach import SETUP_FILE, Setup, draw_canonical_grid, draw_grid, fit_pattern_region, propose_setup
from station.core.training import labelled_grid, labelled_images

MAX_GOODS = 40  # good images read for the proposal and the check (the proposal looks at 40 at most)
CHECK_FIT = 16  # good images the check learns the pattern from
MAX_LABELLED = 80  # defect images with a labelled cell read to place the grid
STRIP_COUNT = 6
THUMB_PX = 176
PREVIEW_COUNT = 8  # good images in the saved setup's preview.png
CHECK_FAIL_RGB = (255, 60, 60)


@dataclass
class Taught:
    """What the proposal job hands to the dialog."""

    goods: list[np.ndarray]
    setup: Setup
    golden_note: str
    source: str
    labelled: list[tuple[np.ndarray, tuple[int, int]]]  # defect images with their labelled cell


@dataclass
class CheckTile:
    """One good image of the check, scaled down, with the grid where registration put it."""

    image: np.ndarray  # RGB thumbnail
    match: float | None  # the pattern's correlation; None when the part was not found
    reason: str = ""


def load_goods(source, limit: int = MAX_GOODS):
    """Good images from a list of arrays, a folder of image files or a dataset folder (its `good` class);
    with the grid its labelled defect cells span and those defect images (as `station teach` takes them),
    and a description: (goods, grid or None, description, labelled)."""
    hint, labelled = None, []
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise StationError(f"no folder of good images at {folder}")
        files = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not files:
            data = load_dataset(folder, "train")
            files = [s.path for s in data.samples if s.label == OK_CLASS]
            if not files:
                raise StationError(f"{folder} has no '{OK_CLASS}' images to teach the part from")
            hint = labelled_grid(data)
            labelled = labelled_images(data, limit=MAX_LABELLED)
        step = max(1, len(files) // limit)
        picked = files[::step][:limit]
        goods = [read_image(p) for p in picked]
        described = f"{len(goods)} of {len(files)} good images in {folder}"
    else:
        goods = [to_rgb(np.asarray(g)) for g in list(source or [])[:limit]]
        described = f"{len(goods)} good images"
    if not goods:
        raise StationError("no good images to teach from: capture some good parts first")
    h, w = goods[0].shape[:2]
    for img in goods[1:]:
        if img.shape[:2] != (h, w):
            raise StationError(f"the good images differ in size ({img.shape[1]}x{img.shape[0]} and {w}x{h} px): "
                               "teach on images of one camera")
    return goods, hint, described, labelled


def _golden_index(goods: list[np.ndarray], golden: np.ndarray) -> int:
    return next((i for i, g in enumerate(goods) if g is golden), -1)


def onto_golden(goods: list[np.ndarray], setup: Setup, golden: np.ndarray, name: str) -> tuple[Setup, str]:
    """The setup moved onto another golden frame (a live frame, a file): the proposal's pattern is found in it
    and the region follows. When it cannot be, the proposal's golden stays, and the note says why."""
    index = _golden_index(goods, setup.golden) + 1
    kept = f"the golden is good image {index} of {len(goods)}"
    if golden.shape[:2] != goods[0].shape[:2]:
        return setup, (f"the {name} is {golden.shape[1]}x{golden.shape[0]} px, the good images "
                       f"{goods[0].shape[1]}x{goods[0].shape[0]} px: {kept}")
    try:
        region = fit_pattern_region(goods[:CHECK_FIT], setup)
        found = Registrar(region, setup.grid).register(golden)
        roi = Roi.from_corners(found.outline(setup.grid))
    except RegistrationError as exc:
        return setup, f"the part was not found in the {name} ({exc}): {kept}"
    return Setup(golden, roi, setup.grid, setup.max_angle, setup.max_scale, setup.notes), f"the golden is the {name}"


def propose_job(source, labelled, golden: np.ndarray | None, golden_name: str, grid: tuple[int, int] | None,
                cell_px: int | None, max_angle: float, max_scale: float, *, progress, should_stop,
                emit) -> Taught | None:
    """The proposal (worker thread): read the good images (and labelled defects), propose region and grid,
    move them onto the golden. `labelled` is used when `source` is the images themselves."""
    progress("reading the good images\u2026", 0.05)
    goods, hint, described, read = load_goods(source)
    labelled = read or list(labelled or [])
    if should_stop():
        return None
    progress(f"proposing the region and grid from {len(goods)} good images\u2026", 0.3)
    grid = grid if grid is not None else (None if cell_px else hint)
    # labelled defects place the grid (each in the middle of its cell) when they fit in it
    fitting = [(img, cell) for img, cell in labelled if grid is not None and cell[0] < grid[0] and cell[1] < grid[1]]
    setup = propose_setup(goods, grid, cell_px, None, max_angle, max_scale, labelled=fitting)
    note = f"the golden is good image {_golden_index(goods, setup.golden) + 1} of {len(goods)}"
    if golden is not None and not should_stop():
        progress(f"finding the part in the {golden_name}\u2026", 0.7)
        setup, note = onto_golden(goods, setup, to_rgb(golden), golden_name)
    return Taught(goods, setup, note, described, labelled)


def strip_picks(goods: list[np.ndarray], golden: np.ndarray, count: int = STRIP_COUNT) -> list[np.ndarray]:
    """Good images for the check strip, spread over the set, the golden left out."""
    others = [g for g in goods if g is not golden] or goods
    idx = np.unique(np.linspace(0, len(others) - 1, min(count, len(others))).round().astype(int))
    return [others[i] for i in idx]


def check_job(goods: list[np.ndarray], setup: Setup, *, progress, should_stop, emit) -> list[CheckTile] | None:
    """The check (worker thread): learn the taught pattern from the good images, register some of them and
    draw the grid where registration puts it (red, at the taught place, where the part was not found)."""
    progress("learning the pattern from the good images\u2026", 0.1)
    registrar = Registrar(fit_pattern_region(goods[:CHECK_FIT], setup), setup.grid)
    tiles = []
    picks = strip_picks(goods, setup.golden)
    for i, img in enumerate(picks):
        if should_stop():
            return None
        progress(f"registering good image {i + 1} of {len(picks)}\u2026", 0.3 + 0.7 * i / len(picks))
        s = THUMB_PX / max(img.shape[:2])
        small = cv2.resize(to_rgb(img), (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        try:
            found = registrar.register(img)
        except RegistrationError as exc:
            scale = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
            tiles.append(CheckTile(draw_grid(small, setup.roi, setup.grid.cols, setup.grid.rows, scale,
                                             colour=CHECK_FAIL_RGB), None, str(exc)))
            continue
        # the grid drawn at the thumbnail's own resolution stays sharp
        tiles.append(CheckTile(draw_canonical_grid(small, s * found.matrix, setup.grid), found.match))
    return tiles


def save_job(setup: Setup, folder: Path, previews: list[np.ndarray], *, progress, should_stop, emit) -> dict:
    progress("writing the setup\u2026", 0.2)
    return setup.save(folder, previews)


def previous_setup(folder: Path) -> dict | None:
    """The setup a save replaces (for the audit entry), or None."""
    if not (folder / SETUP_FILE).is_file():
        return None
    try:
        doc = Setup.load(folder).to_dict()
    except StationError as exc:
        return {"unreadable": str(exc)}
    doc.pop("notes", None)
    return doc
