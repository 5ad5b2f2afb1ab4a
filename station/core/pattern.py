"""Registration against a taught pattern: find the golden part's region in a frame, whatever the border,
light or background do, and warp it to the recipe's canonical crop.

Two steps. A coarse search matches the golden frame's region (rotated and scaled over the taught
range) against a small copy of the frame, padded so that a part running off the border is still
found. ECC then refines an affine warp of the canonical crop against the template (the mean of
the registered good parts, with a margin of context round the grid). ECC's correlation says how
well the pattern was found; below the taught floor the frame is "no part", with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from station.core.errors import RegistrationError

LOW_SIDE = 96  # the coarse search works on frames whose long side is about this many px
EARLY_ACCEPT = 0.85  # a pose that matches this well ends the coarse search: ECC takes it from there
MIN_TEMPLATE_PX = 8


@dataclass(frozen=True)
class Roi:
    """The inspection region in the golden frame: centre, size (px at the frame's resolution), the angle
    (degrees, counter-clockwise in the image as the frame is shown) of the region's x axis, and its shear:
    how far the y axis leans along the x axis per px down (a tilted camera shows a grid of pins as a
    parallelogram)."""

    cx: float
    cy: float
    w: float
    h: float
    angle: float = 0.0
    shear: float = 0.0

    def __post_init__(self) -> None:
        values = (self.cx, self.cy, self.w, self.h, self.angle, self.shear)
        if not all(math.isfinite(v) for v in values):
            raise RegistrationError(f"region {values} has a value that is not a number")
        if self.w < 4 or self.h < 4:
            raise RegistrationError(f"region {self.w:.0f} x {self.h:.0f} px is too small (4 px at least)")
        if abs(self.shear) > 1:
            raise RegistrationError(f"region shear {self.shear:.2f} is beyond 45 degrees")

    @classmethod
    def from_corners(cls, corners: np.ndarray) -> Roi:
        """The parallelogram closest to four corners (top-left, top-right, bottom-right, bottom-left)."""
        c = np.asarray(corners, dtype=np.float64).reshape(4, 2)
        top, right, bottom, left = c[1] - c[0], c[2] - c[1], c[2] - c[3], c[3] - c[0]
        x_axis = (top + bottom) / 2
        y_axis = (right + left) / 2
        angle = math.degrees(math.atan2(-x_axis[1], x_axis[0]))
        ux = x_axis / max(np.linalg.norm(x_axis), 1e-12)
        uy = np.array([-ux[1], ux[0]])  # x axis turned a quarter clockwise as shown: down the image
        h = float(y_axis @ uy)
        centre = c.mean(axis=0)
        return cls(float(centre[0]), float(centre[1]), float(np.linalg.norm(x_axis)), abs(h), float(angle),
                   float((y_axis @ ux) / h) if h else 0.0)

    def corners(self) -> np.ndarray:
        """(4, 2) corners: top-left, top-right, bottom-right, bottom-left."""
        ux, uy = self.axes()
        c = np.array([self.cx, self.cy])
        hw, hh = self.w / 2 * ux, self.h / 2 * (uy + self.shear * ux)
        return np.array([c - hw - hh, c + hw - hh, c + hw + hh, c - hw + hh])

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the region's x (right) and y (down) axes in image coordinates."""
        a = math.radians(self.angle)
        return np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])

    def to_list(self) -> list[float]:
        """[cx, cy, w, h, angle], and the shear when there is one."""
        values = (self.cx, self.cy, self.w, self.h, self.angle) + ((self.shear,) if self.shear else ())
        return [round(v, 3 if i < 5 else 5) for i, v in enumerate(values)]


def canonical_to_golden(roi: Roi, size: tuple[int, int], margin: int = 0) -> np.ndarray:
    """2x3 matrix from canonical crop px (with `margin` px of context on each side) to golden-frame px."""
    width, height = size
    ux, uy = roi.axes()
    ax, ay = ux * roi.w / width, (uy + roi.shear * ux) * roi.h / height
    origin = np.array([roi.cx, roi.cy]) - ax * (width / 2 + margin) - ay * (height / 2 + margin)
    return np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 of x -> outer(inner(x))."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def low_res(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame at the coarse search's size (float32), and its scale."""
    scale = min(1.0, LOW_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    return small.astype(np.float32), scale


def candidate_poses(max_angle: float, max_scale: float) -> list[tuple[float, float]]:
    """(angle deg, scale) pairs the coarse search tries, the nominal pose first."""
    step = 3.0 if max_angle <= 30 else 6.0
    n = int(math.floor(max_angle / step + 1e-9))
    angles = [0.0] + [s * k * step for k in range(1, n + 1) for s in (1, -1)]
    if 0 < max_angle - n * step:
        angles += [max_angle, -max_angle]
    if max_angle >= 180:
        angles = [a for a in angles if -180 < a <= 180]
    scales = [1.0]
    if max_scale > 0:
        s = min(max_scale, 0.06)
        k = 1
        while k * s <= max_scale + 1e-9:
            scales += [1 + k * s, 1 - k * s]
            k += 1
    return [(a, s) for s in scales for a in angles]


@dataclass
class _Candidate:
    template: np.ndarray
    to_template: np.ndarray  # 2x3: golden low-res px -> template px


class PatternSearch:
    """The coarse step: where the golden region lies in a frame, as a 2x3 golden -> frame similarity."""

    def __init__(self, golden_low: np.ndarray, golden_scale: float, roi: Roi, max_angle: float,
                 max_scale: float) -> None:
        self.golden_scale = golden_scale
        c = np.array([roi.cx, roi.cy]) * golden_scale
        # the region and a little context: a pattern matched on its outline alone would slide along a lattice
        corners = roi.corners() * golden_scale
        box = c + (corners - c) * 1.1 + np.sign(corners - c) * 2
        self.candidates: list[_Candidate] = []  # nominal pose first (candidate_poses)
        for angle, scale in candidate_poses(max_angle, max_scale):
            rot = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, scale)  # golden -> turned golden
            turned = box @ rot[:, :2].T + rot[:, 2]
            lo, hi = np.floor(turned.min(axis=0)), np.ceil(turned.max(axis=0))
            rot[:, 2] -= lo
            size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
            if min(size) < MIN_TEMPLATE_PX:
                continue
            template = cv2.warpAffine(golden_low, rot, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            self.candidates.append(_Candidate(template, rot))
        if not self.candidates:
            raise RegistrationError("the taught region is too small to be searched for")
        # the frame is padded by half the largest template, so a part running off the border is still found
        self.pad_y = max(c.template.shape[0] for c in self.candidates) // 2
        self.pad_x = max(c.template.shape[1] for c in self.candidates) // 2

    def locate(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """Golden full-res px -> frame full-res px (2x3), and the match's normalised correlation."""
        small, frame_scale = low_res(gray)
        pad_y, pad_x = self.pad_y, self.pad_x
        fill = float(np.median(small))
        padded = cv2.copyMakeBorder(small, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=fill)
        best = (-2.0, None, None)
        for cand in self.candidates:
            th, tw = cand.template.shape
            if th > padded.shape[0] or tw > padded.shape[1]:
                continue
            result = cv2.matchTemplate(padded, cand.template, cv2.TM_CCOEFF_NORMED)
            _, value, _, loc = cv2.minMaxLoc(result)
            if np.isfinite(value) and value > best[0]:
                best = (float(value), cand, loc)
                if value >= EARLY_ACCEPT:  # poses are tried nominal first: most parts on a line end here
                    break
        value, cand, loc = best
        if cand is None:
            raise RegistrationError("part not found: the frame is smaller than the taught pattern")
        # golden low -> template (cand.to_template), template -> padded frame (+loc), padded -> frame (-pad)
        shift = np.array([loc[0] - pad_x, loc[1] - pad_y], dtype=np.float64)
        golden_to_small = cand.to_template.copy()
        golden_to_small[:, 2] += shift
        full = np.diag([1 / frame_scale, 1 / frame_scale, 1.0])[:2]
        scale_in = np.diag([self.golden_scale, self.golden_scale, 1.0])
        return compose(full, compose(golden_to_small, scale_in[:2])), value


def refine_ecc(gray_crop: np.ndarray, template: np.ndarray, motion: int = cv2.MOTION_AFFINE,
               iterations: int = 40) -> tuple[np.ndarray, float]:
    """ECC warp (template px -> crop px, 2x3) and its correlation; identity and the plain correlation
    when ECC does not converge."""
    warp = np.eye(2, 3, dtype=np.float32)
    crop = gray_crop.astype(np.float32)
    try:
        rho, warp = cv2.findTransformECC(template, crop, warp, motion,
                                         (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4), None, 5)
        return warp.astype(np.float64), float(rho)
    except cv2.error:
        return np.eye(2, 3), correlation(crop, template)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised correlation of two same-sized images (ECC's measure), 0 for flat images."""
    value = cv2.matchTemplate(a.astype(np.float32), b.astype(np.float32), cv2.TM_CCOEFF_NORMED)[0, 0]
    return float(value) if np.isfinite(value) else 0.0
