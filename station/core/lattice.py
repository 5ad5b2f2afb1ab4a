"""Proposing a product's inspection region and grid from good images: the lattice of its repeating features.

The good images are aligned to a golden one. Where the part has features (how far the mean departs from
its neighbourhood) forms an activity map. Its projections on the region's two axes repeat at the
product's pitch; a comb of `cols` cells laid on that profile, peaks in the cells' middles and valleys on
the borders between them, gives pitch and origin in each axis, so each pin sits in the middle of its
cell. A product without a rhythm gets its active area in square cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.imageio import to_gray
from station.core.pattern import Roi

WORK_SIDE = 320  # the proposal looks at frames of about this long side
MAX_CELL_PX = 48  # canonical cells are at most this size: speed of the engines (docs/teach.md)
MIN_CELL_PX = 12
MAX_CROP_PX = 512 * 512  # the registered crop's area at most (unless the cells would fall below MIN_CELL_PX)
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


def cell_size(pitch_px: float, n_cells: int = 1) -> int:
    """Canonical cell size for a pitch at the frame's resolution: the camera's detail kept, capped for speed
    (at most MAX_CELL_PX a cell, and MAX_CROP_PX for the whole crop of `n_cells` cells)."""
    size = int(round(pitch_px / CELL_STEP)) * CELL_STEP
    crop_cap = int(math.sqrt(MAX_CROP_PX / max(1, n_cells)) // CELL_STEP) * CELL_STEP
    return int(max(MIN_CELL_PX, min(MAX_CELL_PX, crop_cap, size)))


def cell_for_region(roi: Roi, cols: int, rows: int) -> int:
    """The cell size `cell_size` gives a region of `cols` x `rows` cells at the frame's resolution."""
    return cell_size(math.sqrt(roi.w * roi.h / (cols * rows)), cols * rows)


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
    return best if scores.max() > 1.03 * sharpness(0.0) else 0.0


def _span(profile: np.ndarray, frac: float = 0.2) -> tuple[int, int]:
    p = cv2.GaussianBlur(profile.reshape(1, -1).astype(np.float32), (0, 0), 2).ravel()
    base = np.percentile(p, 10)
    above = np.nonzero(p - base > frac * (p.max() - base))[0]
    if above.size == 0:
        return 0, len(p)
    return int(above[0]), int(above[-1]) + 1


def fit_comb(profile: np.ndarray, count: int, span: tuple[int, int], lag: float | None = None,
             near: float | None = None) -> tuple[float, float, float]:
    """(pitch, origin, quality) of `count` cells over `profile` (px): feature peaks in the cells' middles,
    valleys on the borders between them, the whole comb over the active span. `lag` is the profile's own
    period when it has one; else `near`, the other axis's pitch, bounds the pitch (a product's pitches
    differ by less than a factor of two), so that two columns are not read as a shadow and an edge."""
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
        lo_p, hi_p = length / (count + 0.5), length / max(count - 1.2, 0.5)
        if near:
            lo_p, hi_p = max(lo_p, 0.6 * near), min(hi_p, 1.7 * near)
            if lo_p >= hi_p:
                lo_p, hi_p = 0.6 * near, 1.7 * near
        pitches = np.arange(lo_p, hi_p, 0.25)
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
        lag_x, lag_y = _lag_for(prof_x, span_x, cols), _lag_for(prof_y, span_y, rows)
        pitch_x, ox, qx = fit_comb(prof_x, cols, span_x, lag_x, near=lag_y)
        pitch_y, oy, qy = fit_comb(prof_y, rows, span_y, lag_y, near=lag_x or pitch_x)
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
    size = cell_px if cell_px else cell_size(math.sqrt(pitch[0] * pitch[1]), cols * rows)
    CellGrid(cols, rows, size)  # range check
    return Proposal(roi, int(cols), int(rows), int(size), int(golden_index), pitch, lattice, notes)


