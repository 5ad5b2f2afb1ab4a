"""Teaching a product: propose the inspection region and its grid from good images, let the engineer correct
them, and keep the result as a setup that training and registration follow.

The proposal works on the good images aligned to a golden one. Where the part has features, their
gradient (and, when defect images are given, where those differ from the good mean: defects occur
only where the product is inspected) forms an activity map. Its projections on the region's two
axes repeat at the product's pitch; a comb of `cols` cells laid on that profile, peaks in the cells
and valleys on the cell borders, gives pitch and origin in each axis, so each pin sits in the middle
of its cell. A product without a rhythm gets its active area in square cells.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.imageio import to_gray
from station.core.pattern import Roi, canonical_to_golden, compose, low_res

logger = logging.getLogger(__name__)

WORK_SIDE = 320  # the proposal looks at frames of about this long side
MAX_CELL_PX = 48  # canonical cells are at most this size: speed of the engines (docs/teach.md)
MIN_CELL_PX = 12
CELL_STEP = 6  # cell sizes are multiples of 6 so that the engines can split a cell in 2 or 3 parts
MAX_PROPOSAL_IMAGES = 40
FEATURE_SIGMA = 6.0  # work px: features up to about this radius stand out of their neighbourhood


@dataclass
class Proposal:
    """What the station proposes for a product: region, grid, and how it found them."""

    roi: Roi
    cols: int
    rows: int
    cell_px: int
    golden_index: int  # which of the good images is the golden one
    pitch_px: tuple[float, float]  # (x, y) pitch in golden-frame px
    lattice: bool  # a repeating feature was found (else square cells over the active area)
    notes: list[str]


def cell_size(pitch_px: float) -> int:
    """Canonical cell size for a pitch at the frame's resolution: the camera's detail kept, capped for speed."""
    size = int(round(pitch_px / CELL_STEP)) * CELL_STEP
    return int(min(MAX_CELL_PX, max(MIN_CELL_PX, size)))


def _work(images: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    h, w = images[0].shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    out = []
    for img in images:
        gray = to_gray(img)
        if gray.shape != (h, w):
            raise RegistrationError(f"good images differ in size ({gray.shape[1]}x{gray.shape[0]} and {w}x{h}); "
                                    "teach on images of one camera")
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        out.append(small.astype(np.float32) / 255.0)
    return out, scale


def _golden(grays: list[np.ndarray]) -> int:
    """The good image closest to the pixelwise median: a typical part in a typical place."""
    median = np.median(np.stack(grays), axis=0)
    return int(np.argmin([float(np.mean((g - median) ** 2)) for g in grays]))


def align_to(golden: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """`gray` warped onto `golden` (translation by phase correlation, then a Euclidean ECC)."""
    window = cv2.createHanningWindow(golden.shape[::-1], cv2.CV_32F)
    # OpenCV 5.0's phaseCorrelate applies the window to its inputs in place: hand it copies
    (dx, dy), _ = cv2.phaseCorrelate(golden.copy(), gray.copy(), window)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    try:
        _, warp = cv2.findTransformECC(golden, gray, warp, cv2.MOTION_EUCLIDEAN,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-4), None, 5)
    except cv2.error:
        pass  # the phase correlation's translation stands: a fair start, and ECC is only a refinement
    return cv2.warpAffine(gray, warp, golden.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def activity_map(golden: np.ndarray, goods: list[np.ndarray]) -> np.ndarray:
    """Where the product has features: how far the good images' mean (aligned to the golden one) departs
    from its own neighbourhood, so that a pin, bright or dark, is one blob at its middle rather than two
    edges. A feature that moves from part to part (a loose cable, a shadow) blurs away in the mean."""
    mean = np.mean([align_to(golden, g) for g in goods], axis=0)
    local = cv2.GaussianBlur(mean, (0, 0), FEATURE_SIGMA)
    act = cv2.GaussianBlur(np.abs(mean - local), (0, 0), 1.5)
    edge = int(2 * FEATURE_SIGMA)  # alignment and blurring leave seams along the frame's border
    act[:edge], act[-edge:], act[:, :edge], act[:, -edge:] = 0, 0, 0, 0
    return act


def _rotate(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _orientation(act: np.ndarray, max_angle: float = 20.0) -> float:
    """Angle (deg) that makes the activity's projections sharpest: a lattice's rows and columns line up."""
    def sharpness(a: float) -> float:
        r = _rotate(act, a)
        px, py = r.sum(axis=0), r.sum(axis=1)
        return float(px.var() / max(px.mean() ** 2, 1e-12) + py.var() / max(py.mean() ** 2, 1e-12))
    angles = np.arange(-max_angle, max_angle + 0.5, 1.0)
    scores = np.array([sharpness(a) for a in angles])
    best = float(angles[int(np.argmax(scores))])
    return best if scores.max() > 1.1 * sharpness(0.0) else 0.0


def _span(profile: np.ndarray, frac: float = 0.2) -> tuple[int, int]:
    p = cv2.GaussianBlur(profile.reshape(1, -1).astype(np.float32), (0, 0), 2).ravel()
    base = np.percentile(p, 10)
    above = np.nonzero(p - base > frac * (p.max() - base))[0]
    if above.size == 0:
        return 0, len(p)
    return int(above[0]), int(above[-1]) + 1


def fit_comb(profile: np.ndarray, count: int, span: tuple[int, int],
             lag: float | None = None) -> tuple[float, float, float]:
    """(pitch, origin, quality) of `count` cells over `profile` (px): feature peaks in the cells' middles,
    valleys on the borders between them, the whole comb over the active span."""
    lo, hi = span
    length = max(hi - lo, 2)
    p = profile.astype(np.float64)
    n = len(p)
    xs = np.arange(n)
    if count == 1:
        pad = 0.1 * length
        return length + 2 * pad, lo - pad, 1.0
    best = (-np.inf, length / count, float(lo))
    if lag:  # the rhythm's own period; features beside the part (shadows, edges) widen the span, not it
        pitches = np.arange(0.9 * lag, 1.1 * lag, 0.25)
    else:
        pitches = np.arange(length / (count + 0.5), length / max(count - 1.2, 0.5), 0.25)
    for pitch in pitches:
        smooth = np.interp
        sigma = max(pitch / 10, 0.8)
        kernel = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
        ps = np.convolve(p, kernel / kernel.sum(), mode="same")
        width = count * pitch
        reach = pitch / 2 + max(0.0, (length - width) / 2)
        centre_lo, centre_hi = (lo + hi) / 2 - reach, (lo + hi) / 2 + reach
        for origin in np.arange(centre_lo - width / 2, centre_hi - width / 2, 0.5):
            centres = origin + (np.arange(count) + 0.5) * pitch
            borders = origin + np.arange(1, count) * pitch
            peaks = smooth(centres, xs, ps)
            valleys = smooth(borders, xs, ps)
            score = peaks.mean() - valleys.mean()
            if score > best[0]:
                best = (score, float(pitch), float(origin))
    quality = best[0] / max(float(np.ptp(p)), 1e-9)
    return best[1], best[2], float(quality)


def estimate_count(profile: np.ndarray, span: tuple[int, int], min_pitch: float = 6.0,
                   min_strength: float = 0.4) -> tuple[int, float]:
    """Number of repeats over the active span from the profile's autocorrelation, and the peak's strength;
    (1, 0) without a rhythm. Two repeats are no rhythm: an outline's two edges look just like them."""
    lag, strength = estimate_pitch(profile, span, min_pitch)
    if lag is None or strength < min_strength or (span[1] - span[0]) / lag < 2.5:
        return 1, 0.0
    return max(1, int(round((span[1] - span[0]) / lag))), strength


def estimate_pitch(profile: np.ndarray, span: tuple[int, int], min_pitch: float = 6.0) -> tuple[float | None, float]:
    """The profile's period over the active span (px) from its autocorrelation, and the peak's strength."""
    lo, hi = span
    seg = profile[lo:hi].astype(np.float64)
    seg = seg - seg.mean()
    if seg.size < 3 * min_pitch or not np.any(seg):
        return None, 0.0
    ac = np.correlate(seg, seg, mode="full")[seg.size - 1:]
    ac = ac / ac[0]
    ac = ac / (1 - np.arange(seg.size) / seg.size + 1e-9)  # unbiased: long lags have fewer terms
    lags = np.arange(int(min_pitch), int(seg.size * 0.6))
    if lags.size == 0:
        return None, 0.0
    # the strongest local maximum: a pin seen as top and side has a weaker peak at half its pitch; of
    # peaks about as strong (a pitch and its multiples), the shortest
    peaks = [lag for lag in lags[1:-1] if ac[lag] > ac[lag - 1] and ac[lag] >= ac[lag + 1] and ac[lag] > 0.2]
    if not peaks:
        return None, 0.0
    top = max(ac[lag] for lag in peaks)
    lag = min(lag for lag in peaks if ac[lag] >= 0.85 * top)
    return float(lag), float(ac[lag])


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
    registrar = Registrar(fit_pattern_region(goods[:MAX_PROPOSAL_IMAGES], setup), setup.grid)
    points, cells = defect_points(registrar, goods[:MAX_PROPOSAL_IMAGES], labelled)
    fitted = fit_lattice(points, cells)
    if fitted is None:
        return setup
    lattice, residual = fitted
    c = setup.grid.cell_px
    if residual > 0.3 * c:
        notes = (*setup.notes, f"labelled defects did not line up on a grid (median miss {residual / c:.2f} cell)")
        return Setup(setup.golden, setup.roi, setup.grid, setup.max_angle, setup.max_scale, notes)
    to_golden = canonical_to_golden(setup.roi, setup.grid.size, registrar.region.margin)
    corners = np.array([[0, 0, 1], [cols, 0, 1], [cols, rows, 1], [0, rows, 1]], float) @ lattice.T
    roi = Roi.from_corners(corners @ to_golden[:, :2].T + to_golden[:, 2])
    notes = (*setup.notes, f"grid placed through the labelled defects of {len(points)} cells "
                           f"(median miss {residual / c:.2f} cell)")
    return Setup(setup.golden, roi, setup.grid, setup.max_angle, setup.max_scale, notes)


def fit_lattice(points: list[np.ndarray], cells: list[tuple[int, int]]) -> tuple[np.ndarray, float] | None:
    """Affine map (2x3) from cell coordinates (col + 0.5, row + 0.5 at a cell's middle) to image px, fitted to
    where labelled defects were seen, dropping the points that disagree; and the residual (px, median)."""
    src = np.array([[c + 0.5, r + 0.5, 1.0] for c, r in cells])
    dst = np.array(points)
    keep = np.ones(len(src), bool)
    for _ in range(4):
        if keep.sum() < 6 or np.linalg.matrix_rank(src[keep]) < 3:
            return None
        sol, *_ = np.linalg.lstsq(src[keep], dst[keep], rcond=None)
        err = np.linalg.norm(src @ sol - dst, axis=1)
        med = float(np.median(err[keep]))
        keep = err <= max(3 * med, 1.0)
    return sol.T, float(np.median(err[keep]))


def _lag_for(profile: np.ndarray, span: tuple[int, int], count: int) -> float | None:
    """The rhythm's period if it fits `count` cells over the span (a pin's top and side may repeat at half the
    pitch: then its multiple), else None."""
    if count < 2:
        return None
    lag, _ = estimate_pitch(profile, span)
    if lag is None:
        return None
    want = (span[1] - span[0]) / count
    best = min((lag * k for k in (0.5, 1, 2, 3)), key=lambda v: abs(math.log(v / want)))
    return best if 0.6 < best / want < 1.5 else None


def propose(goods: list[np.ndarray], grid: tuple[int, int] | None = None, cell_px: int | None = None) -> Proposal:
    """Propose region and grid from good images: `grid` (cols, rows) when the engineer gives it, else counted
    from the features' rhythm; `cell_px` sets the canonical cell size (else it follows the pitch)."""
    if len(goods) < 1:
        raise RegistrationError("teaching needs at least one good image")
    rng = np.random.default_rng(0)
    index = list(range(len(goods)))
    if len(goods) > MAX_PROPOSAL_IMAGES:
        index = sorted(rng.choice(len(goods), MAX_PROPOSAL_IMAGES, replace=False).tolist())
        goods = [goods[i] for i in index]
    grays, scale = _work(goods)
    gi = _golden(grays)
    golden_index = index[gi]  # in the caller's list, not the sample's
    notes: list[str] = []
    act = activity_map(grays[gi], grays)
    angle = _orientation(act)
    rot = _rotate(act, angle)
    span_x, span_y = _span(rot.sum(axis=0)), _span(rot.sum(axis=1))
    # each axis's profile only over the other axis's active band, so clutter beside the part counts less
    prof_x = rot[span_y[0]:span_y[1]].sum(axis=0)
    prof_y = rot[:, span_x[0]:span_x[1]].sum(axis=1)
    span_x, span_y = _span(prof_x), _span(prof_y)
    lattice = True
    if grid is not None:
        cols, rows = grid
    else:
        (cols, sx), (rows, sy) = estimate_count(prof_x, span_x), estimate_count(prof_y, span_y)
        lattice = sx > 0 or sy > 0
        notes.append(f"grid {cols}x{rows} counted from the features' rhythm" if lattice else
                     "no repeating feature found: square cells over the part")
    h, w = rot.shape
    if lattice:
        pitch_x, ox, qx = fit_comb(prof_x, cols, span_x, _lag_for(prof_x, span_x, cols))
        pitch_y, oy, qy = fit_comb(prof_y, rows, span_y, _lag_for(prof_y, span_y, rows))
        width, height = cols * pitch_x, rows * pitch_y
        centre_rot = np.array([ox + width / 2, oy + height / 2])
        if min(qx, qy) < 0.05 and grid is not None:
            notes.append("the features barely repeat at this grid: check the proposal")
    else:
        # the activity spreads about FEATURE_SIGMA beyond the part's outline
        x0, x1 = span_x[0] + FEATURE_SIGMA, max(span_x[0] + FEATURE_SIGMA + 4, span_x[1] - FEATURE_SIGMA)
        y0, y1 = span_y[0] + FEATURE_SIGMA, max(span_y[0] + FEATURE_SIGMA + 4, span_y[1] - FEATURE_SIGMA)
        pad_x, pad_y = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
        width, height = min(w, x1 - x0 + 2 * pad_x), min(h, y1 - y0 + 2 * pad_y)
        centre_rot = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = (cell_px / (1 / scale)) if cell_px else max(width, height) / 8
        cols, rows = max(1, int(round(width / side))), max(1, int(round(height / side)))
        pitch_x, pitch_y = width / cols, height / rows
    # back from the rotated work image to golden-frame px
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    inv = cv2.invertAffineTransform(m)
    centre = inv[:, :2] @ centre_rot + inv[:, 2]
    # the activity was turned by +angle (counter-clockwise) to line up, so the part stands at -angle
    roi = Roi(float(centre[0] / scale), float(centre[1] / scale), float(width / scale), float(height / scale),
              float(-angle))
    pitch = (pitch_x / scale, pitch_y / scale)
    size = cell_px if cell_px else cell_size(math.sqrt(pitch[0] * pitch[1]))
    CellGrid(cols, rows, size)  # range check
    return Proposal(roi, int(cols), int(rows), int(size), int(golden_index), pitch, lattice, notes)


def grid_lines(roi: Roi, cols: int, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The grid's lines as (start, end) points in golden-frame px: every column and row border."""
    ux, uy = roi.axes()
    down = uy + roi.shear * ux
    tl = roi.corners()[0]
    lines = []
    for i in range(cols + 1):
        a = tl + ux * roi.w * i / cols
        lines.append((a, a + down * roi.h))
    for j in range(rows + 1):
        a = tl + down * roi.h * j / rows
        lines.append((a, a + ux * roi.w))
    return lines


def draw_grid(image: np.ndarray, roi: Roi, cols: int, rows: int, matrix: np.ndarray | None = None,
              colour: tuple[int, int, int] = (0, 220, 255)) -> np.ndarray:
    """An RGB copy of `image` with the grid drawn on it; `matrix` (2x3, golden -> this frame) moves the grid
    to where registration found the part."""
    from station.core.imageio import to_rgb

    out = to_rgb(image).copy()
    scale = max(1, int(round(max(out.shape[:2]) / 400)))
    for a, b in grid_lines(roi, cols, rows):
        if matrix is not None:
            a, b = matrix[:, :2] @ a + matrix[:, 2], matrix[:, :2] @ b + matrix[:, 2]
        cv2.line(out, tuple(int(round(v * 16)) for v in a), tuple(int(round(v * 16)) for v in b), colour, scale,
                 cv2.LINE_AA, shift=4)
    return out


def contact_sheet(images: list[np.ndarray], columns: int = 4, tile: int = 256) -> np.ndarray:
    """Images side by side (RGB), each scaled to `tile` px on its long side."""
    tiles = []
    for img in images:
        s = tile / max(img.shape[:2])
        t = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
        canvas = np.full((tile, tile, 3), 40, np.uint8)
        canvas[:t.shape[0], :t.shape[1]] = t
        tiles.append(canvas)
    while len(tiles) % columns:
        tiles.append(np.full((tile, tile, 3), 40, np.uint8))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


# -- the setup an engineer saves -----------------------------------------------------------------------

SETUP_FILE = "setup.json"
GOLDEN_FILE = "golden.png"
PREVIEW_FILE = "preview.png"
SETUP_SCHEMA = 1
MAX_SETUP_BYTES = 1024 * 1024


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
            size = cell_size(math.sqrt(roi.w * roi.h / (cols * rows)))
    setup = Setup(goods[proposal.golden_index], region, CellGrid(cols, rows, cell_px or size), max_angle, max_scale,
                  tuple(notes))
    if roi is None and labelled:
        setup = place_by_defects(setup, goods, labelled)
        if cell_px is None:  # the placed grid's own pitch sets the detail kept
            size = cell_size(math.sqrt(setup.roi.w * setup.roi.h / (cols * rows)))
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


def draw_canonical_grid(image: np.ndarray, matrix: np.ndarray, grid: CellGrid,
                        colour: tuple[int, int, int] = (0, 220, 255)) -> np.ndarray:
    """The grid drawn where a registration matrix (canonical -> frame) puts it."""
    w, h = grid.size
    roi = Roi(w / 2, h / 2, w, h, 0.0)
    return draw_grid(image, roi, grid.cols, grid.rows, matrix=matrix, colour=colour)


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
    golden_crop = registrar.warp_margin(setup.golden, compose(
        canonical_to_golden(setup.roi, setup.grid.size), np.eye(2, 3)))
    region.template = golden_crop
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
