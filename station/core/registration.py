"""Registration: find the part in the frame and warp it to the recipe's canonical crop, so every
pin lands in its own cell of the grid.

The part is the largest blob of the part's polarity (darker or brighter than the background) that
does not touch the frame border; its minimum-area rectangle gives a first similarity warp, which
ECC then refines against the template (the mean registered good part). Products that fill the
frame ("full" mode) are simply resized. A part that lies at any angle on a plain background ("pose" mode,
station.core.pose) is turned back to one pose. `Region` is learned from good images by `fit_region`
(`fit_pose_region` for a pose).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.imageio import MAX_PIXELS, MAX_SIDE, to_gray, to_rgb
from station.core.pose import (PartPose, PoseFit, likeness, part_pose, pattern_turn, pose_matrix, round_part_pose,
                               span_px, swept_circle, warp_area)
from station.core.tone import Tone
from station.core.pattern import PatternSearch, Roi, canonical_to_golden, compose, correlation, refine_ecc

log = logging.getLogger(__name__)

WORK_WIDTH = 320  # frames are located at about this width; the crop is taken from the full frame
MIN_FRAME_SIDE = 16  # as station.core.imageio.MIN_SIDE: no part fits in less
PART_SEEN_SHARE = 0.9  # a part stands apart in at least this share of good images: blob registration
# a whole frame ("full" mode) is first brought within these sides, twice the largest free-form crop (512 px on
# its shorter side): training keeps its frames at this size, not a 20 MP camera's, and a live frame goes the
# same way to the crop, so both see the same pixels
WHOLE_SHORT_PX = 1024
WHOLE_LONG_PX = 4096
MAX_SPAN = 16.0  # a pose crop spans at most this many times the frame's shorter side


FREE_FORM_REGIONS = ("full", "pose")  # the region modes of a free-form product (no cells taught)


@dataclass
class Region:
    mode: Literal["blob", "full", "pattern", "pose"]
    polarity: Literal["dark", "bright"] = "dark"
    min_area_frac: float = 0.0
    max_area_frac: float = 1.0
    refine: Literal["ecc", "none"] = "ecc"
    # where the grid sits on the blob, in canonical px: the product's features (pins seen from a
    # tilted camera) need not be centred on the housing's outline
    shift_x: float = 0.0
    shift_y: float = 0.0
    template: np.ndarray | None = None  # (H, W) float32 mean registered good crop, grey 0..1 (+ margin: pattern)
    pattern: PatternSetup | None = None  # "pattern" mode: what was taught
    reference: np.ndarray | None = None  # "pattern" mode: the golden frame, grey 0..1, coarse size
    span_x: float = 0.0  # "pose" mode: what the crop spans along the part's axis, in shares of the frame's shorter side
    span_y: float = 0.0  # and across it
    turn: Literal["axis", "pattern"] = "axis"  # "pose" mode: by the part's long axis, or (round) by its pattern
    tone: Tone | None = None  # free-form regions shot in one light: the good crops' tones (station.core.tone)

    def to_dict(self) -> dict:
        out = {"mode": self.mode, "polarity": self.polarity, "min_area_frac": self.min_area_frac,
               "max_area_frac": self.max_area_frac, "refine": self.refine,
               "shift_x": self.shift_x, "shift_y": self.shift_y}
        if self.mode == "pose":
            out.update(span_x=self.span_x, span_y=self.span_y)
            if self.turn != "axis":  # a key added later: the axis pose's recipes are written as before
                out["turn"] = self.turn
        if self.pattern is not None:
            out["pattern"] = self.pattern.to_dict()
        return out

    @property
    def crop_template(self) -> np.ndarray | None:
        """The template over the crop alone (without the margin of context)."""
        m = self.margin
        if self.template is None or m == 0:
            return self.template
        return self.template[m:-m, m:-m]

    @property
    def margin(self) -> int:
        """Context round the grid in the template (canonical px)."""
        return self.pattern.margin if self.pattern is not None else 0


@dataclass
class PatternSetup:
    """A taught region: where the inspected area lies in the golden frame, how far a part may turn or
    change scale, and the correlation below which a frame holds no part."""

    roi: Roi
    frame_size: tuple[int, int]  # golden frame (width, height)
    margin: int = 0
    min_match: float = 0.0
    max_angle: float = 15.0
    max_scale: float = 0.1

    def to_dict(self) -> dict:
        return {"roi": self.roi.to_list(), "frame_size": list(self.frame_size), "margin": self.margin,
                "min_match": round(self.min_match, 4), "max_angle": self.max_angle, "max_scale": self.max_scale}

    @classmethod
    def from_dict(cls, d: dict) -> PatternSetup:
        return cls(Roi(*d["roi"]), tuple(d["frame_size"]), int(d["margin"]), float(d["min_match"]),
                   float(d["max_angle"]), float(d["max_scale"]))


@dataclass
class Registered:
    crop: np.ndarray  # (H, W, 3) uint8 RGB, canonical
    matrix: np.ndarray  # 2x3, canonical crop coordinates -> frame coordinates
    refined: bool
    match: float | None = None  # pattern mode: correlation of the crop with the template
    tone_shift: float | None = None  # free-form: the crop's tone shift (grey levels) where it was shot in other
    # light and brought back to the good crops' tones

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Canonical (x, y) points (N, 2) to frame coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def outline(self, grid: CellGrid) -> np.ndarray:
        w, h = grid.size
        return self.to_frame(np.array([[0, 0], [w, 0], [w, h], [0, h]]))


def _blob(gray: np.ndarray, polarity: str) -> tuple[np.ndarray | None, float]:
    """Largest contour of the given polarity not touching the border, and its area fraction."""
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    flag = cv2.THRESH_BINARY_INV if polarity == "dark" else cv2.THRESH_BINARY
    _, mask = cv2.threshold(blurred, 0, 255, flag | cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    h, w = gray.shape
    best, best_area = None, 0.0
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        if x <= 0 or y <= 0 or x + bw >= w or y + bh >= h:
            continue
        area = cv2.contourArea(c)
        if area > best_area:
            best, best_area = c, area
    return best, best_area / float(h * w)


def _rect_to_matrix(rect, grid: CellGrid, scale: float) -> np.ndarray:
    """2x3 matrix mapping canonical crop coordinates to frame coordinates for a minAreaRect."""
    box = cv2.boxPoints(rect).astype(np.float64) / scale
    centre = box.mean(axis=0)
    e1, e2 = box[1] - box[0], box[2] - box[1]
    long_, short = (e1, e2) if np.linalg.norm(e1) >= np.linalg.norm(e2) else (e2, e1)
    portrait = grid.rows >= grid.cols
    down, right = (long_, short) if portrait else (short, long_)
    if down[1] < 0:
        down = -down
    if right[0] < 0:
        right = -right
    w, h = grid.size
    # canonical x axis along `right`, y axis along `down`, origin at the top-left corner
    ax, ay = right / w, down / h
    origin = centre - right / 2 - down / 2
    return np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])


def bounded_whole_frame(image: np.ndarray) -> np.ndarray:
    """`image` shrunk (area averaging) to at most WHOLE_SHORT_PX on its shorter side and WHOLE_LONG_PX on its
    longer one; as it is when it is within them, so a frame shrunk once is not shrunk again."""
    h, w = image.shape[:2]
    scale = min(WHOLE_SHORT_PX / min(h, w), WHOLE_LONG_PX / max(h, w))
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class Registrar:
    def __init__(self, region: Region, grid: CellGrid) -> None:
        self.region, self.grid = region, grid
        self._search: PatternSearch | None = None
        if region.mode == "pattern":
            if region.pattern is None or region.reference is None:
                raise RegistrationError("a pattern region needs its taught setup and golden frame")
            p = region.pattern
            golden_scale = region.reference.shape[1] / p.frame_size[0]
            self._search = PatternSearch(region.reference, golden_scale, p.roi, p.max_angle, p.max_scale)
        if region.mode == "pose" and not all(np.isfinite(v) and 0.01 <= v <= MAX_SPAN
                                             for v in (region.span_x, region.span_y)):
            raise RegistrationError("a pose region needs the span of its crop (0.01 to "
                                    f"{MAX_SPAN} times the frame's shorter side, along and across the part)")

    def initial(self, rgb: np.ndarray) -> np.ndarray:
        """First canonical->frame matrix, from the blob (or the whole frame)."""
        h, w = rgb.shape[:2]
        if self.region.mode == "full":
            return self.initial_full(w, h)
        if self.region.mode == "pose":
            return self._initial_pose(rgb)
        gray = to_gray(rgb)
        small, scale = _work_size(gray)
        contour, frac = _blob(small, self.region.polarity)
        if contour is None:
            raise RegistrationError("part not found in the frame")
        if not self.region.min_area_frac <= frac <= self.region.max_area_frac:
            raise RegistrationError(f"part not found: the largest blob covers {frac:.0%} of the frame, "
                                    f"expected {self.region.min_area_frac:.0%}..{self.region.max_area_frac:.0%}")
        matrix = _rect_to_matrix(cv2.minAreaRect(contour), self.grid, scale)
        matrix[:, 2] += matrix[:, :2] @ np.array([self.region.shift_x, self.region.shift_y])
        return matrix

    def _initial_pose(self, rgb: np.ndarray, pose: PartPose | None = None) -> np.ndarray:
        """The part turned back to its pose; of the two half turns, the one more like the template. `rgb` may be
        the frame shrunk (`_register_pose`): the matrix is in its coordinates, and `pose`, where given, too."""
        if pose is None:
            pose = round_part_pose(rgb) if self.region.turn == "pattern" else part_pose(rgb)
        if not self.region.min_area_frac <= pose.area_frac <= self.region.max_area_frac:
            raise RegistrationError(f"part not found: the part covers {pose.area_frac:.1%} of the frame, expected "
                                    f"{self.region.min_area_frac:.1%}..{self.region.max_area_frac:.1%}")
        span = span_px((self.region.span_x, self.region.span_y), rgb)
        matrix = pose_matrix(pose, span, self.grid.size)
        template = self.region.crop_template
        if template is None:
            return matrix
        if self.region.turn == "pattern":  # a round part: turned as its pattern is against the good parts'
            turn = pattern_turn(warp_area(rgb, matrix, self.grid.size), template)
            return pose_matrix(replace(pose, angle=turn), span, self.grid.size)
        flipped = pose_matrix(pose, span, self.grid.size, flip=True)
        if likeness(warp_area(rgb, flipped, self.grid.size), template) > \
                likeness(warp_area(rgb, matrix, self.grid.size), template):
            return flipped
        return matrix

    def _pose_crop(self, rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """A pose region's crop; a round part's without what lies outside the circle it sweeps or the frame
        (`swept_circle`)."""
        crop = warp_area(rgb, matrix, self.grid.size)
        if self.region.turn != "pattern":
            return crop
        return swept_circle(crop, matrix, (rgb.shape[1], rgb.shape[0]))

    def _register_pose(self, rgb: np.ndarray) -> Registered:
        """A pose region's registration on the frame shrunk once, by area, to about the crop's scale (each warp
        of a camera's full frame would shrink it again), then ECC against the template as for a blob."""
        h, w = rgb.shape[:2]
        step = span_px((self.region.span_x, self.region.span_y), rgb)[0] / self.grid.size[0]  # frame px per crop px
        small = rgb
        if step > 1.5:
            small = cv2.resize(rgb, (max(1, round(w / step)), max(1, round(h / step))), interpolation=cv2.INTER_AREA)
        pose = None
        if self.region.turn == "pattern" and small is not rgb:
            # a round part is found on the frame itself, as in the good frames: on the shrunk copy its reach grows
            # by a pixel or two of blur, and a part that nearly fills the frame would seem to run off it
            found = round_part_pose(rgb)
            pose = replace(found, centre=(found.centre[0] * small.shape[1] / w, found.centre[1] * small.shape[0] / h))
        matrix = self._initial_pose(small, pose)
        crop = self._pose_crop(small, matrix)
        refined = False
        template = self.region.template
        warp = _ecc_refinement(template, crop) if self.region.refine == "ecc" and template is not None else None
        if warp is not None:
            matrix = compose(matrix, warp)
            crop, refined = self._pose_crop(small, matrix), True
        sx, sy = w / small.shape[1], h / small.shape[0]
        return Registered(crop, np.array([[sx, 0, 0], [0, sy, 0]]) @ np.vstack([matrix, [0, 0, 1]]), refined)

    def warp(self, rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if self.region.mode == "pose":  # a camera's frame to a small crop: averaged, not point samples
            return self._pose_crop(rgb, matrix)
        if self.region.mode == "full" and np.allclose(matrix, self.initial_full(w, h)):
            # the whole frame shrunk to the crop: area averaging, not point samples that alias fine texture
            return cv2.resize(bounded_whole_frame(rgb), self.grid.size, interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(rgb, matrix, self.grid.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def initial_full(self, w: int, h: int) -> np.ndarray:
        """The canonical->frame matrix of a whole frame of w x h px resized to the crop."""
        cw, ch = self.grid.size
        return np.array([[w / cw, 0, 0], [0, h / ch, 0]], dtype=np.float64)

    def register(self, frame: np.ndarray) -> Registered:
        """The part found in `frame` and warped to the canonical crop; RegistrationError (one line) if it cannot
        be, whatever OpenCV makes of an odd frame."""
        h, w = np.shape(frame)[:2] if np.ndim(frame) >= 2 else (0, 0)
        if min(h, w) < MIN_FRAME_SIDE:
            raise RegistrationError(f"frame of {w} x {h} px is too small to hold a part")
        if h * w > MAX_PIXELS or max(h, w) > MAX_SIDE:  # a camera or video, not a file: OpenCV's warps crash
            raise RegistrationError(f"frame of {w} x {h} px is over the limit of {MAX_PIXELS // 1_000_000} "
                                    f"megapixels and {MAX_SIDE} px a side")
        rgb = to_rgb(frame)
        try:
            found = self._register(rgb)
        except cv2.error as exc:
            message = " ".join(str(exc).split())[-160:]
            raise RegistrationError(f"the part could not be located in this {w} x {h} px frame (OpenCV: "
                                    f"{message})") from None
        if self.region.tone is None:
            return found
        crop, shift = self.region.tone.judged(found.crop)
        return Registered(crop, found.matrix, found.refined, found.match, shift)

    def _register(self, rgb: np.ndarray) -> Registered:
        if self._search is not None:
            return self._register_pattern(rgb)
        if self.region.mode == "pose":
            return self._register_pose(rgb)
        matrix = self.initial(rgb)
        crop = self.warp(rgb, matrix)
        template = self.region.template
        if self.region.refine != "ecc" or template is None:
            return Registered(crop, matrix, False)
        warp = _ecc_refinement(template, crop)
        if warp is None:
            return Registered(crop, matrix, False)
        matrix = compose(matrix, warp)  # template coords -> crop coords (warp), then crop -> frame (matrix)
        return Registered(self.warp(rgb, matrix), matrix, True)

    def _register_pattern(self, rgb: np.ndarray) -> Registered:
        """Coarse search for the golden region, then ECC of the crop with its margin against the template."""
        p = self.region.pattern
        gray = to_gray(rgb)
        golden_to_frame, _ = self._search.locate(gray)
        m = p.margin
        w, h = self.grid.size
        outer = compose(golden_to_frame, canonical_to_golden(p.roi, self.grid.size, m))  # crop+margin -> frame
        template = self.region.template
        big = cv2.warpAffine(gray, outer, (w + 2 * m, h + 2 * m), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
        refined = False
        if template is not None and self.region.refine == "ecc":
            warp, rho = refine_ecc(big, template)
            refined = not np.array_equal(warp, np.eye(2, 3))
            outer = compose(outer, warp)
        else:
            rho = correlation(big, template) if template is not None else 1.0
        if rho < p.min_match:
            raise RegistrationError(f"part not found: the taught pattern matches this frame at {rho:.2f} "
                                    f"(good parts {p.min_match:.2f} or more)")
        matrix = compose(outer, np.array([[1.0, 0, m], [0, 1.0, m]]))  # crop -> crop+margin -> frame
        return Registered(self.warp(rgb, matrix), matrix, refined, match=rho)

    def warp_margin(self, rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The crop with the template's margin of context round it (grey 0..1), for fitting the template."""
        m = self.region.margin
        w, h = self.grid.size
        outer = compose(matrix, np.array([[1.0, 0, -m], [0, 1.0, -m]]))
        return cv2.warpAffine(to_gray(rgb), outer, (w + 2 * m, h + 2 * m),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0


def _ecc_refinement(template: np.ndarray, crop: np.ndarray) -> np.ndarray | None:
    """The 2x3 Euclidean warp (template coordinates -> crop coordinates) that ECC finds between the template and
    a registered crop; None where it does not converge (the first registration is then kept)."""
    try:
        _, warp = cv2.findTransformECC(template, to_gray(crop).astype(np.float32) / 255.0,
                                       np.eye(2, 3, dtype=np.float32), cv2.MOTION_EUCLIDEAN,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4), None, 3)
    except cv2.error:
        log.debug("registration: ECC did not converge; the first registration is kept")
        return None
    return warp.astype(np.float64)


def _work_size(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame at about WORK_WIDTH px (never below 1 px a side) and the scale it was taken at."""
    h, w = gray.shape[:2]
    scale = min(1.0, WORK_WIDTH / max(w, h))
    if scale >= 1:
        return gray, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


def fit_region(images: list[np.ndarray], grid: CellGrid, refine: str = "ecc",
               names: list[str] | None = None) -> Region:
    """Learn where the part is from good images: polarity, expected size, and the template.

    A part that stands apart in most good images but not in a few is not a product that fills the frame: those
    few are odd images (a black frame, another product), named in a RegistrationError rather than used to switch
    the whole recipe to full-frame registration."""
    if not images:
        raise RegistrationError("no good images to learn the part's region from")
    best: tuple[str, list[float]] | None = None
    odd: list[int] = []
    for polarity in ("dark", "bright"):
        fracs = [_blob(_work_size(to_gray(img))[0], polarity)[1] for img in images]
        found = np.array(fracs)
        seen = found > 0.02
        # a real part: found in (nearly) every image, with a stable size, and not a speck
        stable = bool(seen.any()) and found[seen].std() / max(found[seen].mean(), 1e-9) < 0.25
        ok = np.mean(seen) >= PART_SEEN_SHARE and found[found > 0].std() / max(found[found > 0].mean(), 1e-9) < 0.25
        if ok and (best is None or np.median(found) > np.median(best[1])):
            best = (polarity, fracs)
        elif stable and 0.5 <= np.mean(seen) < PART_SEEN_SHARE and len(images) >= 4:
            odd = [i for i in range(len(images)) if not seen[i]]
    if best is None and odd:
        listed = [names[i] if names else f"number {i + 1}" for i in odd]
        shown = ", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")
        raise RegistrationError(f"the part stands apart from the background in {len(images) - len(odd)} of "
                                f"{len(images)} good images but not in {shown}: remove or replace those (odd) "
                                "images; they would switch registration to the full frame")
    if best is None:
        region = Region("full", refine=refine)
    else:
        med = float(np.median(best[1]))
        region = Region("blob", best[0], min_area_frac=med * 0.6, max_area_frac=min(1.0, med * 1.5), refine=refine)
    registrar = Registrar(region, grid)
    if region.mode == "blob":
        region.shift_x, region.shift_y = _grid_shift(registrar, images)
    _fit_template(registrar, images, 2 if refine == "ecc" else 1)  # a second pass on refined crops: sharper
    return region


def _fit_template(registrar: Registrar, images: list[np.ndarray], passes: int) -> None:
    """The region's template: the mean registered good crop, taken `passes` times (each on the crops the last
    template registered)."""
    for _ in range(passes):
        crops = _grey_crops(registrar, images)
        if len(crops) < max(1, len(images) // 2):
            raise RegistrationError("the part could not be located in most good images; use images where the "
                                    "part stands clearly apart from the background")
        registrar.region.template = np.mean(crops, axis=0).astype(np.float32)


def fit_pose_region(images: list[np.ndarray], grid: CellGrid, fit: PoseFit, refine: str = "ecc") -> Region:
    """The pose region for `grid` from good frames and what `station.core.pose.fit_pose` found in them: the
    template is the mean turned-back good crop, taken twice (the second time each frame the half turn more like
    the first mean; a round part: turned against the first good part's crop, then against the first mean)."""
    region = Region("pose", min_area_frac=fit.area[0], max_area_frac=fit.area[1], refine=refine,
                    span_x=fit.span[0], span_y=fit.span[1], turn=fit.turn)
    if fit.turn == "pattern":  # a round part's turn is measured against a pattern: the first good part's, to start
        registrar = Registrar(region, grid)
        first = registrar.warp(images[0], registrar.initial(images[0]))
        region.template = to_gray(first).astype(np.float32) / 255.0
    _fit_template(Registrar(region, grid), images, 2)  # the second pass settles each frame's half turn
    return region


def _grid_shift(registrar: Registrar, images: list[np.ndarray]) -> tuple[float, float]:
    """Where to put the grid on the blob so that each cell holds one of the product's features.

    Seen from a tilted camera, pins stand up out of the housing and their images sit up to half a
    pitch away from the housing's outline. Rows through pins vary strongly across x; the table
    and the bare housing do not. The cell-frequency phase of that variation gives the shift
    modulo one cell; of the shifts it allows, the one whose window holds the most of it wins.
    """
    grid = registrar.grid
    c = grid.cell_px
    w, h = grid.size
    crops = []
    for img in images:
        try:
            m = registrar.initial(to_rgb(img))
        except RegistrationError:
            continue
        m[:, 2] -= m[:, :2] @ np.array([c, c], dtype=np.float64)  # one cell of margin all round
        crop = cv2.warpAffine(to_gray(img), m, (w + 2 * c, h + 2 * c),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        crops.append(crop.astype(np.float32) / 255.0)
    if not crops:
        return 0.0, 0.0
    mean = np.mean(crops, axis=0)
    across_x = mean[:, c:w + c].std(axis=1)  # per row of the extended crop
    across_y = mean[c:h + c, :].std(axis=0)  # per column
    return _feature_shift(across_y, c, w), _feature_shift(across_x, c, h)


def _feature_shift(profile: np.ndarray, period: int, span: int, min_contrast: float = 0.02,
                   min_repeat: float = 0.3) -> float:
    """Shift (px) of a window of `span` px inside `profile` (which has `period` px of margin on
    both sides) that centres the profile's per-cell peaks in the cells; 0 without such a rhythm."""
    p = np.asarray(profile, dtype=np.float64)
    inside = p[period:period + span] - p[period:period + span].mean()
    # a rhythm: real contrast, repeating at the cell pitch (an outline's two edges are not one)
    if inside.size <= period or inside.std() < min_contrast:
        return 0.0
    if np.sum(inside[:-period] * inside[period:]) < min_repeat * np.sum(inside * inside) * (1 - period / inside.size):
        return 0.0
    centred = p - p.mean()
    component = np.sum(centred * np.exp(-2j * np.pi * (np.arange(p.size) + 0.5) / period))
    peak = (-np.angle(component) / (2 * np.pi) * period) % period  # peak position within a cell
    base = peak - period / 2
    candidates = [base + k * period for k in (-1, 0, 1) if abs(base + k * period) <= period]
    held = [p[int(round(period + s)): int(round(period + s)) + span].sum() for s in candidates]
    return float(candidates[int(np.argmax(held))])


def _grey_crops(registrar: Registrar, images: list[np.ndarray]) -> list[np.ndarray]:
    crops = []
    for img in images:
        try:
            crops.append(to_gray(registrar.register(img).crop).astype(np.float32) / 255.0)
        except RegistrationError:
            continue
    return crops


def cell_offsets(crop: np.ndarray, template: np.ndarray, grid: CellGrid) -> np.ndarray:
    """Residual misalignment after registration: per cell, the (dx, dy) shift in px between the
    registered crop and the template, by phase correlation over a window of twice the cell size.

    This is a measurement for `station eval`, not part of the per-frame path.
    """
    gray = to_gray(crop).astype(np.float32) / 255.0
    c = grid.cell_px
    pad = c // 2
    g = np.pad(gray, pad, mode="edge")
    t = np.pad(np.asarray(template, np.float32), pad, mode="edge")
    window = cv2.createHanningWindow((2 * c, 2 * c), cv2.CV_32F)
    out = np.zeros((grid.n_cells, 2))
    for i in range(grid.n_cells):
        col, row = grid.cell(i)
        ys, xs = slice(row * c, row * c + 2 * c), slice(col * c, col * c + 2 * c)
        # copies: OpenCV 5.0's phaseCorrelate windows its inputs in place, and the cells' windows overlap
        (dx, dy), _ = cv2.phaseCorrelate(t[ys, xs].copy(), g[ys, xs].copy(), window)
        out[i] = dx, dy
    return out
