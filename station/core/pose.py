"""A part turned back to one pose: for a product that lies or falls at any angle on a plain background.

A screw on a table, a bracket on a belt: the camera sees the part turned and shifted from frame to frame, and
an engine with one statistic per position (RT, the image MT) then compares the thread of one screw with the
background of another. Where the part stands apart from the background and has a long axis, each frame is
turned and shifted so that the part's centre sits at the crop's centre and its long axis along the crop's x
axis, the heavier end first; the crop spans the part and a margin round it, at the camera's own scale (never
stretched to fit: a shorter part stays shorter). A part that is symmetric end to end is put the right way
round by its likeness to the good parts' mean crop (the template).

A part without a long axis (a cap, a bottle's mouth seen from above, a washer) is centred instead on the largest
circle inside it and turned by its pattern: the circular correlation of its rings with the good parts' mean crop
(`pattern_turn`). Its crop is a square about the centre, and what lies outside the circle it sweeps is set to
the background's level (`swept_circle`): a neighbouring part in the corner is not part of it.

`fit_pose` (`fit_round`) decides from good frames whether the product is such a part (`PoseFit`),
`pose_matrix` places the crop in one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from station.core.errors import RegistrationError
from station.core.imageio import to_gray

WORK_SIDE = 256  # the part is found on a copy of the frame this many px on its longer side
MIN_CONTRAST = 12  # grey levels between the part and the background, at least (Otsu's cut on the difference)
MAX_EDGE_SHARE = 0.05  # of the frame's edge the part may touch (a screw's tip may; a surface runs along it)
MIN_ELONGATION = 1.6  # the part's long axis this many times its short one (as variances' square roots), at least
MARGIN = 0.12  # of the part's length, round it on every side: a defect that sticks out stays in the crop
MAX_ASPECT = 3.0  # the crop's longer side at most this many times its shorter one (the free-form crops' rule)
VARIANCE_GAIN = 0.5  # turned back, the frames' position variance share must fall to this share of it, at most
WEAK_GAIN = 0.8  # falling only to this share: steadier, not clearly; the free-form choice measures the engines on
# both the turned-back and the whole frames and keeps the better (station.core.freeform_plan): a cast impeller lit
# from one side, its shading turning with it, fell to 0.51 and was found far better turned back
ROUND_MARGIN = 0.05  # of a round part's diameter, round it on every side: its crop is a square about its centre
TURN_STEPS = 360  # angles a round part's turn is measured at (its pattern's correlation, then interpolated)
MOVING_SHARE = 0.15  # and the whole frames' must be this much at least: a part the fixture holds in one pose
# (the upright bottle: 0.005) keeps the whole frame; the screw: 0.68, a part turned within 20 degrees: about 0.3
ROUND_MOVING_SHARE = 0.05  # the same for a part without a long axis: its outline stays where it is as it turns, so
# only its inner pattern moves (an oval nut turning in place: 0.08; the upright bottle still 0.006)


@dataclass(frozen=True)
class PartPose:
    centre: tuple[float, float]  # frame px
    angle: float  # degrees: the part's long axis, from its heavier end, against the frame's x axis
    elongation: float  # long over short axis
    length: float  # frame px along the long axis (the part's extent, 1st to 99th percentile)
    width: float  # frame px across it
    area_frac: float  # the part's share of the frame


def _standing_apart(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(mask of what differs from the border's grey level by Otsu's cut, on a copy of the frame WORK_SIDE px on its
    longer side; that copy's scale). RegistrationError (one line) where nothing stands apart."""
    gray = to_gray(frame)
    h, w = gray.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = gray if scale >= 1 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                               interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (5, 5), 0).astype(np.int16)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    diff = np.abs(small - int(np.median(border))).astype(np.uint8)
    cut, mask = cv2.threshold(diff, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if cut < MIN_CONTRAST:
        raise RegistrationError("part not found: nothing in the frame stands apart from the background")
    return mask, scale


def part_pose(frame: np.ndarray) -> PartPose:
    """Where the part lies in `frame`: the largest region that differs from the border's grey level by Otsu's
    cut, touching at most MAX_EDGE_SHARE of the frame's edge. RegistrationError (one line) when there is none."""
    mask, scale = _standing_apart(frame)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise RegistrationError("part not found: nothing in the frame stands apart from the background")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    part = labels == best
    sh, sw = mask.shape
    edge = np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]])
    if edge.mean() > MAX_EDGE_SHARE:  # a surface that fills the frame, not a part lying on a background
        raise RegistrationError("part not found: what stands apart from the background runs along the frame's edge")
    ys, xs = np.nonzero(part)
    if xs.size < 8:
        raise RegistrationError("part not found: the region that stands apart is a speck")
    cx, cy = float(xs.mean()), float(ys.mean())
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs - cx, ys - cy])))
    major = vectors[:, 1]
    along = (xs - cx) * major[0] + (ys - cy) * major[1]
    if np.mean(along ** 3) < 0:  # the heavier end first
        major, along = -major, -along
    across = (xs - cx) * -major[1] + (ys - cy) * major[0]
    lo, hi = np.percentile(along, [1, 99])
    return PartPose(centre=(cx / scale, cy / scale), angle=float(np.degrees(np.arctan2(major[1], major[0]))),
                    elongation=float(np.sqrt(values[1] / max(values[0], 1e-9))),
                    length=float(hi - lo + 1) / scale, width=float(np.ptp(across) + 1) / scale,
                    area_frac=float(xs.size) / float(sh * sw))


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    """`mask` (0/1) with every background region that does not reach the frame's edge filled: a washer's hole, a
    cap's dark print."""
    n, labels = cv2.connectedComponents((1 - mask).astype(np.uint8), connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.where(np.isin(labels, outside), mask, 1).astype(np.uint8)


def round_part_pose(frame: np.ndarray) -> PartPose:
    """Where a part without a long axis lies in `frame`: the largest circle inside what stands apart from the
    background (holes filled), how far the part reaches from that circle's centre (on nine rays in ten), and the
    centre of what stands apart within that reach; its turn (`angle`) is left at 0 for its pattern to set
    (`pattern_turn`). Whatever else stands apart further out (a neighbouring part at the frame's edge) is not
    counted. RegistrationError (one line) when there is none."""
    mask, scale = _standing_apart(frame)
    mask = _holes_filled(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)))
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    if dist[y, x] < 4:
        raise RegistrationError("part not found: the region that stands apart is a speck")
    sh, sw = mask.shape
    reach = float(np.hypot(sh, sw))
    rays = cv2.warpPolar(mask * 255, (int(reach), TURN_STEPS), (float(x), float(y)), reach,
                         cv2.WARP_POLAR_LINEAR | cv2.INTER_NEAREST) < 128
    exits = np.where(rays.any(axis=1), rays.argmax(axis=1), rays.shape[1]) * reach / rays.shape[1]
    radius = float(np.percentile(exits, 90))
    if min(x, y, sw - 1 - x, sh - 1 - y) < 0.9 * radius:
        raise RegistrationError("part not found: the round part runs off the frame")
    yy, xx = np.nonzero(mask)
    inside = np.hypot(xx - x, yy - y) <= radius
    cx, cy = float(xx[inside].mean()), float(yy[inside].mean())  # between pixels, and steady on an oval part
    xs, ys = xx[inside] - cx, yy[inside] - cy
    values = np.linalg.eigvalsh(np.cov(np.stack([xs, ys])))
    return PartPose(centre=(cx / scale, cy / scale), angle=0.0,
                    elongation=float(np.sqrt(values[1] / max(values[0], 1e-9))),
                    length=2 * radius / scale, width=2 * radius / scale, area_frac=float(xs.size) / float(sh * sw))


def swept_circle(crop: np.ndarray, matrix: np.ndarray | None = None,
                 frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """A round part's crop with what lies outside the circle the part sweeps as it turns (the crop's inscribed
    circle), and where `matrix` (crop -> frame) and `frame_size` (w, h) are given, what lies outside the frame,
    set to the median colour on that circle's rim: a neighbouring part or a fixture's corner belongs to no part
    and moves from frame to frame, and what the camera did not see is not inspected (the warp smears the
    frame's edge into it)."""
    h, w = crop.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    r = np.hypot((xx + 0.5 - w / 2) / (w / 2), (yy + 0.5 - h / 2) / (h / 2))
    out = r >= 1.0
    if matrix is not None and frame_size is not None:
        fx = matrix[0, 0] * xx + matrix[0, 1] * yy + matrix[0, 2]
        fy = matrix[1, 0] * xx + matrix[1, 1] * yy + matrix[1, 2]
        out = out | (fx < 0) | (fy < 0) | (fx > frame_size[0] - 1) | (fy > frame_size[1] - 1)
    rim = (r >= 0.94) & ~out
    if not rim.any():
        rim = ~out
    crop = crop.copy()
    if rim.any() and out.any():
        crop[out] = np.median(crop[rim], axis=0).astype(crop.dtype)
    return crop


def _turn_signature(grey: np.ndarray) -> np.ndarray:
    """A crop's grey levels on rings about its centre, one row per angle (TURN_STEPS), each ring less its mean:
    a turn of the part is a shift of the rows."""
    h, w = grey.shape
    r = min(h, w) / 2
    rings = cv2.warpPolar(grey.astype(np.float32), (max(8, int(r)), TURN_STEPS), (w / 2, h / 2), r,
                          cv2.WARP_POLAR_LINEAR | cv2.INTER_LINEAR)
    return rings - rings.mean(axis=0, keepdims=True)


def pattern_turn(crop: np.ndarray, template: np.ndarray) -> float:
    """Degrees by which the part in `crop` (centred) is turned against `template` (grey 0..1, the crop's size):
    the peak of the circular correlation of their rings, between the two nearest angles."""
    a = _turn_signature(to_gray(crop).astype(np.float32) / 255.0)
    b = _turn_signature(template)
    corr = np.real(np.fft.ifft((np.fft.fft(a, axis=0) * np.conj(np.fft.fft(b, axis=0))).sum(axis=1)))
    k = int(np.argmax(corr))
    left, mid, right = corr[k - 1], corr[k], corr[(k + 1) % TURN_STEPS]
    bend = left - 2 * mid + right
    step = 0.5 * (left - right) / bend if bend < 0 else 0.0
    return float((k + step) * 360.0 / TURN_STEPS)


def pose_matrix(pose: PartPose, span: tuple[float, float], size: tuple[int, int], flip: bool = False) -> np.ndarray:
    """2x3 matrix from canonical crop coordinates (`size` = w, h px) to frame coordinates: the crop spans
    `span` frame px (along, across the part's axis), centred on the part; `flip` turns it by half a turn."""
    w, h = size
    theta = np.radians(pose.angle + (180.0 if flip else 0.0))
    a = np.array([np.cos(theta), np.sin(theta)]) * span[0] / w  # canonical x: along the part
    b = np.array([-np.sin(theta), np.cos(theta)]) * span[1] / h  # canonical y: across it
    c = np.array(pose.centre) - a * w / 2 - b * h / 2
    return np.array([[a[0], b[0], c[0]], [a[1], b[1], c[1]]])


def warp_area(rgb: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The crop of `size` given by `matrix` (canonical -> frame), the frame first shrunk by area where the crop
    is much coarser than it, so that fine grain averages rather than aliases."""
    step = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # frame px per crop px
    if step > 1.5:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        matrix = np.array([[sx, 0, 0], [0, sy, 0]]) @ np.vstack([matrix, [0, 0, 1]])
        rgb = small
    # each crop pixel's place in the frame, computed here: OpenCV's warpAffine rounds its fixed-point coordinates
    # per block of rows, and the blocks follow its threads, so a turned crop differed in a few grey levels from run
    # to run, and with it the free-form choice (docs/photographs.md); remap reads these places pixel by pixel
    w, h = size
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    map_x = (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]).astype(np.float32)
    map_y = (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]).astype(np.float32)
    return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class PoseFit:
    # what the crop covers along and across the part, in shares of the frame's shorter side: a camera giving the
    # same view at a higher resolution (or training's frames shrunk, `bounded_whole_frame`) gets the same crop
    span: tuple[float, float]
    area: tuple[float, float]  # the part's share of the frame, lowest and highest a frame may show
    elongation: float  # the good parts' median
    found: int  # good frames where the part was found
    turn: str = "axis"  # "axis": by the part's long axis; "pattern": a round part, turned by its pattern (the template)


def fit_pose(goods: list[np.ndarray]) -> PoseFit | None:
    """Whether good frames show a part on a plain background with a long axis (None where not): found in
    every frame (a good frame where it is not would stop training), off the border, and long; the crop then
    spans the longest part seen and a margin."""
    found = _found_in_every_frame(goods, part_pose)
    if found is None:
        return None
    poses, sides = found
    elongation = np.array([p.elongation for p in poses])
    if np.percentile(elongation, 5) < MIN_ELONGATION:  # a round part has no axis to turn it back by
        return None
    length = float(np.percentile([p.length / side for p, side in zip(poses, sides)], 99))
    width = float(np.percentile([p.width / side for p, side in zip(poses, sides)], 99))
    along = length * (1 + 2 * MARGIN)
    across = max(width + 2 * MARGIN * length, along / MAX_ASPECT)
    return PoseFit(span=(along, across), area=_area_bounds(poses), elongation=float(np.median(elongation)),
                   found=len(poses))


def _found_in_every_frame(goods: list[np.ndarray], find) -> tuple[list[PartPose], list[float]] | None:
    """(the part's pose in each good frame by `find`, each frame's shorter side); None where the frames are fewer
    than 4 or the part is missing from any (a good frame where it is not would stop training)."""
    poses, sides = [], []
    for frame in goods:
        try:
            poses.append(find(frame))
        except RegistrationError:
            return None
        sides.append(float(min(frame.shape[:2])))
    return (poses, sides) if len(goods) >= 4 else None


def _area_bounds(poses: list[PartPose]) -> tuple[float, float]:
    """The part's share of the frame, lowest and highest: a frame showing far less or more of a part than the good
    ones is no part of this product; every good one is."""
    area = np.array([p.area_frac for p in poses])
    low, high = min(0.6 * np.median(area), 0.9 * area.min()), min(1.0, max(1.5 * np.median(area), 1.1 * area.max()))
    return float(low), float(high)


def fit_round(goods: list[np.ndarray]) -> PoseFit | None:
    """Whether good frames show a part without a long axis on a plain background (None where not): found in every
    frame (`round_part_pose`); the crop is a square about its centre spanning the largest part seen and a margin,
    and the part is turned by its pattern against the good parts' (`pattern_turn`)."""
    found = _found_in_every_frame(goods, round_part_pose)
    if found is None:
        return None
    poses, sides = found
    side = float(np.percentile([p.length / s for p, s in zip(poses, sides)], 99)) * (1 + 2 * ROUND_MARGIN)
    return PoseFit(span=(side, side), area=_area_bounds(poses),
                   elongation=float(np.median([p.elongation for p in poses])), found=len(poses), turn="pattern")


def canonical_size(fit: PoseFit, side: float) -> tuple[int, int]:
    """The crop at the camera's own scale (one crop px per frame px) for frames `side` px on their shorter side:
    what the free-form grids are sized from."""
    return max(16, round(fit.span[0] * side)), max(16, round(fit.span[1] * side))


def span_px(fit_span: tuple[float, float], frame: np.ndarray) -> tuple[float, float]:
    """The crop's span in `frame`'s px."""
    side = float(min(frame.shape[:2]))
    return fit_span[0] * side, fit_span[1] * side


def turned_back(frame: np.ndarray, fit: PoseFit, size: tuple[int, int] | None = None,
                template: np.ndarray | None = None) -> np.ndarray:
    """`frame` with its part turned back to the canonical pose, as a crop of `size` (default: the camera's scale);
    the half turn (a round part: the turn) that matches `template` (grey 0..1 at `size`) best, where given."""
    size = size or canonical_size(fit, min(frame.shape[:2]))
    span = span_px(fit.span, frame)
    if fit.turn == "pattern":
        pose = round_part_pose(frame)
        matrix = pose_matrix(pose, span, size)
        crop = warp_area(frame, matrix, size)
        if template is not None:
            matrix = pose_matrix(replace(pose, angle=pattern_turn(crop, template)), span, size)
            crop = warp_area(frame, matrix, size)
        return swept_circle(crop, matrix, (frame.shape[1], frame.shape[0]))
    pose = part_pose(frame)
    crop = warp_area(frame, pose_matrix(pose, span, size), size)
    if template is None:
        return crop
    turned = warp_area(frame, pose_matrix(pose, span, size, flip=True), size)
    return turned if likeness(turned, template) > likeness(crop, template) else crop


def position_variance_share(images: list[np.ndarray], side: int = 32) -> float:
    """How much of the good frames' grey-level variance remains at a fixed position (each frame resized to
    `side` px): near 0 when every frame shows the same thing at the same place, near 1 for textures."""
    grey = np.stack([cv2.resize(to_gray(im) if im.ndim == 3 else im, (side, side), interpolation=cv2.INTER_AREA)
                     for im in images]).astype(np.float64)
    total = grey.var()
    return float(grey.var(axis=0).mean() / total) if total > 0 else 0.0


def turned_back_goods(goods: list[np.ndarray]) -> tuple[PoseFit | None, list[np.ndarray], dict]:
    """(the pose, the good frames turned back at the camera's scale, what was measured) where the product is a
    part that lies at any angle (the whole frames' position variance share MOVING_SHARE or more) and turning it
    back steadies its frames (their share falls to VARIANCE_GAIN of the whole frames' or below; ROUND_MOVING_SHARE
    for a part without a long axis). Where it falls only to WEAK_GAIN, the pose and the turned frames come back with
    `used` False and `steadier` "somewhat", for the caller to measure both ways. Else (None,
    `goods` as they are, what was measured). A part with a long axis is turned by it; one without (round) is
    centred and turned by its pattern, against the first good frame's and then twice against their mean."""
    before = position_variance_share(goods)
    fit = fit_pose(goods) if before >= MOVING_SHARE else None
    if fit is None and before >= ROUND_MOVING_SHARE:
        fit = fit_round(goods)
    if fit is None:
        return None, goods, {}
    size = canonical_size(fit, float(np.median([min(g.shape[:2]) for g in goods])))
    if fit.turn == "pattern":
        template = to_gray(turned_back(goods[0], fit, size)).astype(np.float32) / 255.0
        for _ in range(2):
            turned = [turned_back(g, fit, size, template) for g in goods]
            template = (np.mean([to_gray(t) for t in turned], axis=0) / 255.0).astype(np.float32)
    else:
        total = np.zeros((size[1], size[0]), np.float64)  # summed as it goes: the first turns are not kept
        for g in goods:
            total += to_gray(turned_back(g, fit, size))
        template = (total / (255.0 * len(goods))).astype(np.float32)
        turned = [turned_back(g, fit, size, template) for g in goods]
    after = position_variance_share(turned)
    info = {"position_variance_share": [round(before, 4), round(after, 4)], "elongation": round(fit.elongation, 2),
            "span_of_shorter_side": [round(v, 4) for v in fit.span], "turned_by": fit.turn}
    if after > WEAK_GAIN * before:
        return None, goods, {**info, "used": False}
    if after > VARIANCE_GAIN * before:  # steadier, not clearly: the caller measures both ways
        return fit, turned, {**info, "used": False, "steadier": "somewhat"}
    return fit, turned, {**info, "used": True}


def likeness(crop: np.ndarray, template: np.ndarray) -> float:
    """Normalised correlation of a crop's grey levels with the template's (grey 0..1, the crop's size)."""
    g = to_gray(crop).astype(np.float32) / 255.0
    a, b = g - g.mean(), template - template.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-9))
