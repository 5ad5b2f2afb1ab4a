"""Teaching a product: the setup an engineer keeps (golden frame, inspection region, grid), proposed from
good images and placed through the labelled defects, and the registration it asks for.

The proposal itself (the lattice of the product's features) is in `station.core.lattice`; drawing the grid
for the engineer in `station.core.grid_overlay`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.grid_overlay import contact_sheet, draw_canonical_grid, draw_grid, grid_lines
from station.core.imageio import to_gray
from station.core.lattice import (MAX_PROPOSAL_IMAGES, Proposal, align_to, cell_for_region, cell_size, fit_lattice,
                                  propose)
from station.core.pattern import Roi, canonical_to_golden, low_res

if TYPE_CHECKING:
    from station.core.registration import Region

logger = logging.getLogger(__name__)

__all__ = ["Setup", "Proposal", "propose", "propose_setup", "place_by_defects", "fit_pattern_region",
           "write_preview", "cell_size", "cell_for_region", "fit_lattice", "align_to", "grid_lines", "draw_grid",
           "draw_canonical_grid", "contact_sheet", "SETUP_FILE", "GOLDEN_FILE", "PREVIEW_FILE"]


def defect_points(registrar, goods: list[np.ndarray], labelled: list[tuple[np.ndarray, tuple[int, int]]]
                  ) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Where the defects of each labelled cell differ most from the good parts, in the registered crop's px
    (margin included): one cell's difference maps averaged, so that light and pose, which differ from image
    to image, fade and the pin stays."""
    good_crops = []
    for img in goods:
        try:
            good_crops.append(registrar.warp_margin(img, registrar.register(img).matrix))
        except RegistrationError as exc:
            logger.info("good image left out of the grid fit: %s", exc)
    mean = np.mean(good_crops, axis=0)
    spread = np.mean([np.abs(c - mean) for c in good_crops], axis=0) + 0.02
    by_cell: dict[tuple[int, int], list[np.ndarray]] = {}
    for img, cell in labelled:
        try:
            crop = registrar.warp_margin(img, registrar.register(img).matrix)
        except RegistrationError as exc:
            logger.info("defect image left out of the grid fit: %s", exc)
            continue
        by_cell.setdefault(tuple(cell), []).append(np.abs(crop - mean) / spread)
    points, where = [], []
    for cell, maps in sorted(by_cell.items()):
        diff = cv2.GaussianBlur(np.mean(maps, axis=0), (0, 0), 2.0)
        _, peak, _, (x, y) = cv2.minMaxLoc(diff)
        r = max(3, registrar.grid.cell_px // 3)  # the centroid of the strongest blob, not its brightest pixel
        y0, y1, x0, x1 = max(0, y - r), y + r + 1, max(0, x - r), x + r + 1
        win = np.maximum(diff[y0:y1, x0:x1] - 0.5 * peak, 0)
        ys, xs = np.mgrid[y0:y0 + win.shape[0], x0:x0 + win.shape[1]]
        total = float(win.sum()) or 1.0
        points.append(np.array([float((xs * win).sum() / total), float((ys * win).sum() / total)]))
        where.append(cell)
    return points, where


def place_by_defects(setup: Setup, goods: list[np.ndarray],
                     labelled: list[tuple[np.ndarray, tuple[int, int]]]) -> Setup:
    """The setup's grid moved so that each labelled defect lies in the middle of its cell: registered with the
    proposed setup, the defects of each cell show where its pin is, and the grid is the lattice through them."""
    from station.core.registration import Registrar

    cols, rows = setup.grid.cols, setup.grid.rows
    labelled = [(img, cell) for img, cell in labelled if cell[0] < cols and cell[1] < rows]
    if len(labelled) < 12:
        return setup
    # measured over a region larger than the proposal's, so that pins it left out are still seen
    r = setup.roi
    wide = Setup(setup.golden, Roi(r.cx, r.cy, r.w * PLACEMENT_GROW, r.h * PLACEMENT_GROW, r.angle, r.shear),
                 setup.grid, setup.max_angle, setup.max_scale)
    registrar = Registrar(fit_pattern_region(goods[:MAX_PROPOSAL_IMAGES], wide), setup.grid)
    points, cells = defect_points(registrar, goods[:MAX_PROPOSAL_IMAGES], labelled)
    fitted = fit_lattice([p / PLACEMENT_GROW for p in points], cells)  # in cells of the proposal's size
    if fitted is None:
        return setup
    lattice, residual = fitted
    lattice = lattice * PLACEMENT_GROW
    c = setup.grid.cell_px
    if residual > 0.3 * c:
        notes = (*setup.notes, f"labelled defects did not line up on a grid (median miss {residual / c:.2f} cell)")
        return Setup(setup.golden, setup.roi, setup.grid, setup.max_angle, setup.max_scale, notes)
    to_golden = canonical_to_golden(wide.roi, setup.grid.size, registrar.region.margin)
    corners = np.array([[0, 0, 1], [cols, 0, 1], [cols, rows, 1], [0, rows, 1]], float) @ lattice.T
    roi = Roi.from_corners(corners @ to_golden[:, :2].T + to_golden[:, 2])
    notes = (*setup.notes, f"grid placed through the labelled defects of {len(points)} cells "
                           f"(median miss {residual / c:.2f} cell)")
    return Setup(setup.golden, roi, setup.grid, setup.max_angle, setup.max_scale, notes)


# -- the setup an engineer saves -----------------------------------------------------------------------

SETUP_FILE = "setup.json"
PLACEMENT_GROW = 1.4  # how much larger than the proposal the labelled defects are looked for
GOLDEN_FILE = "golden.png"
PREVIEW_FILE = "preview.png"
SETUP_SCHEMA = 1
MAX_SETUP_BYTES = 1024 * 1024
SETUP_FILES = frozenset({SETUP_FILE, GOLDEN_FILE, PREVIEW_FILE})  # what a saved setup is made of


@dataclass
class Setup:
    """A taught product: the golden frame, the inspection region in it, the grid, and how far a part may
    turn or change scale on the line."""

    golden: np.ndarray  # RGB uint8
    roi: Roi
    grid: CellGrid
    max_angle: float = 15.0
    max_scale: float = 0.1
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.max_angle <= 180:
            raise RegistrationError(f"max_angle {self.max_angle} must be 0..180 degrees")
        if not 0 <= self.max_scale <= 0.5:
            raise RegistrationError(f"max_scale {self.max_scale} must be 0..0.5")

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.golden.shape[1]), int(self.golden.shape[0])

    def to_dict(self) -> dict:
        return {"schema": SETUP_SCHEMA, "grid": self.grid.to_dict(), "roi": self.roi.to_list(),
                "frame_size": list(self.frame_size), "max_angle": self.max_angle, "max_scale": self.max_scale,
                "notes": list(self.notes)}

    def save(self, folder, previews: list[np.ndarray] | None = None) -> dict[str, str]:
        """Write setup.json, golden.png and (given good images) preview.png into `folder`."""
        import json
        from pathlib import Path

        from station.core.imageio import write_image

        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / GOLDEN_FILE, self.golden)
            tmp = folder / (SETUP_FILE + ".tmp")
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
            tmp.replace(folder / SETUP_FILE)
        except OSError as exc:
            raise RegistrationError(f"cannot save the setup to {folder}: {exc.strerror or exc}") from None
        out = {"setup": str(folder / SETUP_FILE), "golden": str(folder / GOLDEN_FILE)}
        if previews:
            write_preview(folder / PREVIEW_FILE, self, previews)
            out["preview"] = str(folder / PREVIEW_FILE)
        return out

    @classmethod
    def load(cls, folder) -> Setup:
        import json
        from pathlib import Path

        from station.core.imageio import read_image

        folder = Path(folder)
        if folder.is_file() and folder.name == SETUP_FILE:
            folder = folder.parent
        path = folder / SETUP_FILE
        if not path.is_file():
            raise RegistrationError(f"no taught setup at {folder} ({SETUP_FILE} is missing)")
        try:
            if path.stat().st_size > MAX_SETUP_BYTES:
                raise RegistrationError(f"setup {path} is too large to be a setup")
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistrationError(f"cannot read setup {path}: {exc}") from None
        try:
            if doc.get("schema") != SETUP_SCHEMA:
                raise RegistrationError(f"setup {path} has schema {doc.get('schema')!r}; this station reads "
                                        f"{SETUP_SCHEMA}")
            g = doc["grid"]
            grid = CellGrid(int(g["cols"]), int(g["rows"]), int(g["cell_px"]))
            if len(doc["roi"]) not in (5, 6):
                raise ValueError("roi must be [cx, cy, w, h, angle] or [cx, cy, w, h, angle, shear]")
            roi = Roi(*(float(v) for v in doc["roi"]))
            golden = read_image(folder / GOLDEN_FILE)
            setup = cls(golden, roi, grid, float(doc.get("max_angle", 15.0)), float(doc.get("max_scale", 0.1)),
                        tuple(str(n) for n in doc.get("notes", [])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistrationError(f"setup {path} is not valid: {exc}") from None
        if list(setup.frame_size) != list(doc.get("frame_size", setup.frame_size)):
            raise RegistrationError(f"setup {path}: {GOLDEN_FILE} is not the frame the region was taught on")
        return setup


def latest_setup(folder) -> Path | None:
    """The newest setup saved under `folder` (one sub-folder a setup, as the Teach dialog saves them)."""
    root = Path(folder)
    try:
        found = [p for p in root.iterdir() if (p / SETUP_FILE).is_file()] if root.is_dir() else []
    except OSError as exc:
        logger.warning("cannot list the setups in %s: %s", root, exc)
        return None
    return max(found, key=lambda p: (p / SETUP_FILE).stat().st_mtime, default=None)


def propose_setup(goods: list[np.ndarray], grid: tuple[int, int] | None = None, cell_px: int | None = None,
                  roi: Roi | None = None, max_angle: float = 15.0, max_scale: float = 0.1,
                  labelled: list[tuple[np.ndarray, tuple[int, int]]] | None = None) -> Setup:
    """A setup from good images (and defect images with their labelled cell): the proposal, with what the
    engineer gave (grid, cell size, region) kept."""
    proposal = propose(goods, grid, cell_px)
    notes = list(proposal.notes)
    cols, rows = grid if grid is not None else (proposal.cols, proposal.rows)
    region = proposal.roi
    size = proposal.cell_px
    if roi is not None:
        region = roi
        notes.append("region given by the engineer")
        if cell_px is None:
            size = cell_for_region(roi, cols, rows)
    setup = Setup(goods[proposal.golden_index], region, CellGrid(cols, rows, cell_px or size), max_angle, max_scale,
                  tuple(notes))
    if roi is None and labelled:
        setup = place_by_defects(setup, goods, labelled)
        if cell_px is None:  # the placed grid's own pitch sets the detail kept
            size = cell_for_region(setup.roi, cols, rows)
            setup = Setup(setup.golden, setup.roi, CellGrid(cols, rows, size), max_angle, max_scale, setup.notes)
    return setup


def write_preview(path, setup: Setup, images: list[np.ndarray], count: int = 8) -> None:
    """PNG of the grid over the golden image and over good images where registration put it."""
    from station.core.imageio import write_image
    from station.core.registration import Registrar

    tiles = [draw_grid(setup.golden, setup.roi, setup.grid.cols, setup.grid.rows, colour=(255, 200, 0))]
    try:
        region = fit_pattern_region(images[:max(count, 3)], setup)
        registrar = Registrar(region, setup.grid)
    except RegistrationError as exc:
        logger.warning("preview without registration: %s", exc)
        registrar = None
    for img in images[:count]:
        if registrar is None:
            tiles.append(draw_grid(img, setup.roi, setup.grid.cols, setup.grid.rows))
            continue
        try:
            reg = registrar.register(img)
        except RegistrationError as exc:
            logger.info("preview: %s", exc)
            tiles.append(draw_grid(img, setup.roi, setup.grid.cols, setup.grid.rows, colour=(255, 60, 60)))
            continue
        tiles.append(draw_canonical_grid(img, reg.matrix, setup.grid))
    write_image(path, contact_sheet(tiles, columns=3))


def fit_pattern_region(goods: list[np.ndarray], setup: Setup, refine: str = "ecc") -> Region:
    """The registration a setup asks for, learned from good images: the golden frame to search for, the
    template (mean registered good crop with a margin of context) and the correlation floor for 'no part'."""
    from station.core.registration import PatternSetup, Region, Registrar

    if not goods:
        raise RegistrationError("no good images to learn the part's pattern from")
    for img in goods:
        if (img.shape[1], img.shape[0]) != setup.frame_size:
            raise RegistrationError(f"a good image is {img.shape[1]}x{img.shape[0]} px, the golden frame "
                                    f"{setup.frame_size[0]}x{setup.frame_size[1]}: teach on images of one camera")
    gray = to_gray(setup.golden)
    small, _ = low_res(gray)
    margin = max(2, setup.grid.cell_px // 2)
    pattern = PatternSetup(setup.roi, setup.frame_size, margin, 0.0, setup.max_angle, setup.max_scale)
    region = Region("pattern", refine=refine, pattern=pattern, reference=small / 255.0)
    registrar = Registrar(region, setup.grid)
    region.template = registrar.warp_margin(setup.golden, canonical_to_golden(setup.roi, setup.grid.size))
    matches: list[float] = []
    for _ in range(2):  # the second pass registers against the mean of the first: a sharper template
        crops, matches = [], []
        for img in goods:
            try:
                reg = registrar.register(img)
            except RegistrationError as exc:
                logger.info("good image left out of the template: %s", exc)
                continue
            crops.append(registrar.warp_margin(img, reg.matrix))
            matches.append(reg.match if reg.match is not None else 1.0)
        if len(crops) < max(1, len(goods) // 2):
            raise RegistrationError("the taught pattern was not found in most good images; teach the region "
                                    "again on a typical good part")
        region.template = np.mean(crops, axis=0).astype(np.float32)
    m = np.array(matches)
    # 'no part' sits well below every good part: light, a few occluded cells or a busy background lower
    # the match of a real part, an empty or wrong scene lowers it far more
    pattern.min_match = float(max(0.2, min(0.6 * np.median(m), m.min() - 0.25)))
    return region
