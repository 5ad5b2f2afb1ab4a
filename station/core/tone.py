"""A free-form crop shot in other light is brought to the good crops' tones before it is judged: a lamp that
dims or brightens, a camera's exposure or gain that changes, is not a defect.

The good crops' grey-level quantiles (their median at each of QUANTILES levels) are the reference. Where the
good parts were shot in one light (`steady_tone`), a crop whose tones are further from the reference than the
good crops' ever were has its own quantiles mapped onto the reference's by one monotone curve, applied alike to
its three channels: a grey level keeps its order, a colour its hue, and a defect, which moves a few per cent of
the crop's pixels, hardly moves the quantiles that the curve follows. A crop in the good parts' light is judged
as it is (docs/photographs.md, "The light of the day"), and so is one whose tones moved in a few places only: a
lamp lights the whole part, so its change shows in most of the crop's blocks, where a large bright stain moves
the quantiles as much but only its own blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from station.core.errors import EngineError

QUANTILES = np.linspace(0.02, 0.98, 25)  # the levels the curve follows: the extremes are left to the ends
MAX_STRETCH = 4.0  # a curve steeper than this (a nearly blank crop's tones spread over the reference) is capped
STEADY_CHANGE = 3.0  # grey levels: good crops that matching moves by no more than this were shot in one light
STEADY_CROPS = 200  # good crops the steadiness is measured on (at most)
MIN_LIMIT = 2.0  # grey levels: a crop's tones within this of the good crops' are judged as they are,
MIN_LIMIT_SHARE = 0.05  # and within this share of the good crops' median grey level (a lamp's gain is a share)
LIMIT_SPREADS = 6.0  # and within this many of the good crops' own robust spreads of tone shift
BLOCKS = 4  # the crop's blocks a side whose mean levels tell a change of light (everywhere) from a defect's (here)
BLOCKS_MOVED = 0.25  # a change of light moves three blocks in four at least (the quantile read of their moves)


def tone_quantiles(crop: np.ndarray) -> np.ndarray:
    """(len(QUANTILES),) the crop's grey-level quantiles (the mean of its channels), 0..255, interpolated
    linearly between ranks as `np.quantile` does. A uint8 crop's means are sums of its channels over their number,
    so they are counted once (a histogram) rather than sorted: 512 x 512 px in a millisecond or two, on every
    frame of a recipe that matches tones."""
    channels = 1 if crop.ndim == 2 else crop.shape[2]
    if crop.dtype != np.uint8:
        grey = crop if crop.ndim == 2 else crop.astype(np.float32).mean(axis=2)
        return np.quantile(grey, QUANTILES).astype(np.float32)
    sums = crop if crop.ndim == 2 else crop.sum(axis=2, dtype=np.uint16)
    counts = np.cumsum(np.bincount(sums.ravel(), minlength=255 * channels + 1))
    rank = QUANTILES * (counts[-1] - 1)
    low = np.floor(rank)
    at = np.searchsorted(counts, low, side="right")  # the sum at each rank, in sorted order
    after = np.searchsorted(counts, np.minimum(low + 1, counts[-1] - 1), side="right")
    return ((at + (rank - low) * (after - at)) / channels).astype(np.float32)


def reference_tone(crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """The good crops' tone: at each level, the median of their quantiles (one odd crop does not move it)."""
    return np.median(np.stack([tone_quantiles(c) for c in crops]), axis=0).astype(np.float32)


@dataclass(frozen=True)
class Tone:
    """A free-form recipe's light: the good crops' reference tone, and how far a crop's tones may be from it
    (grey levels, `tone_shift`) before it is brought back to it."""

    reference: np.ndarray
    limit: float
    blocks: np.ndarray | None = None  # (BLOCKS * BLOCKS,) the good crops' median level per block; None in
    block_limit: float = 0.0  # recipes saved before it, which judge by the quantiles alone

    def judged(self, crop: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(the crop to judge, its tone shift where it was brought back to the reference, else None)."""
        q = tone_quantiles(crop)
        shift = _shift(q, self.reference)
        if abs(shift) <= self.limit:
            return crop, None
        if self.blocks is not None and block_shift(crop, self.blocks, shift) <= self.block_limit:
            return crop, None  # much of the crop is in the taught light: what moved is in a few places
        return _applied(crop, _curve(q, self.reference)), shift


def steady_tone(crops: np.ndarray | list[np.ndarray]) -> Tone | None:
    """The good crops' light where they were photographed in one light: matched to their reference tone, a
    typical good crop (the median) moves by at most STEADY_CHANGE grey levels on average. A crop then counts as
    shot in other light once its tone shift is beyond what the good crops show (LIMIT_SPREADS robust spreads
    of theirs from their median; at least MIN_LIMIT grey levels and MIN_LIMIT_SHARE of their median level).
    Else None: where the good parts' own tones vary (tiles of different shades, cells of different efficiency)
    or their histogram is not one a curve can follow (a black-and-white board), the engines learn the tones as
    they are."""
    crops = list(crops)[:STEADY_CROPS]
    quantiles = [tone_quantiles(c) for c in crops]
    reference = np.median(np.stack(quantiles), axis=0).astype(np.float32)  # reference_tone, its quantiles once
    change = [float(np.abs(_applied(c, _curve(q, reference)).astype(np.int16) - c).mean())
              for c, q in zip(crops, quantiles)]
    if float(np.median(change)) > STEADY_CHANGE:
        return None
    floor = max(MIN_LIMIT, MIN_LIMIT_SHARE * float(np.median(reference)))
    levels = np.stack([block_levels(c) for c in crops])
    blocks = np.median(levels, axis=0).astype(np.float32)
    return Tone(reference, _limit([_shift(q, reference) for q in quantiles], floor), blocks,
                _limit([max(_block_shift(b, blocks, 1.0), _block_shift(b, blocks, -1.0)) for b in levels], floor))


def _limit(shifts: list[float], floor: float) -> float:
    """How far a crop's shift may be before it counts as other light: beyond what the good crops' own shifts
    reach (their median plus LIMIT_SPREADS robust spreads), and at least `floor`."""
    centre = float(np.median(shifts))
    spread = 1.4826 * float(np.median(np.abs(np.asarray(shifts) - centre)))
    return max(floor, abs(centre) + LIMIT_SPREADS * spread)


def block_levels(crop: np.ndarray) -> np.ndarray:
    """(BLOCKS * BLOCKS,) float32: the crop's mean grey level in each of its blocks."""
    grey = crop.astype(np.float32) if crop.ndim == 2 else crop.astype(np.float32).mean(axis=2)
    return cv2.resize(grey, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA).ravel()


def block_shift(crop: np.ndarray, blocks: np.ndarray, towards: float) -> float:
    """How far the crop's blocks moved from the good crops' block levels in the direction of `towards` (the sign
    of its tone shift): the move that three blocks in four exceed (grey levels; 0 or below where a quarter of
    them did not move that way). A change of light moves nearly every block; a defect, however large its blocks'
    move, leaves most of them where they were."""
    return _block_shift(block_levels(crop), blocks, towards)


def _block_shift(levels: np.ndarray, blocks: np.ndarray, towards: float) -> float:
    way = 1.0 if towards > 0 else -1.0
    return float(np.quantile(way * (levels - blocks), BLOCKS_MOVED))


def check_tone(reference: np.ndarray, limit: np.ndarray | None, blocks: np.ndarray | None = None,
               block_limit: np.ndarray | None = None) -> Tone:
    """A recipe's saved light, or EngineError in one line: QUANTILES grey levels in 0..255, not decreasing, and a
    limit of 0..255 grey levels; where saved (recipes since the blocks), BLOCKS * BLOCKS block levels in 0..255
    and their limit alike."""
    reference = np.asarray(reference, dtype=np.float32)
    if reference.shape != QUANTILES.shape or not np.isfinite(reference).all() or reference.min() < 0 \
            or reference.max() > 255 or np.any(np.diff(reference) < 0):
        raise EngineError(f"the region's reference tone must be {QUANTILES.size} grey levels in 0..255, not "
                          f"decreasing; got shape {reference.shape}")
    value = _grey_limit(limit, "tone limit")
    if blocks is None and block_limit is None:
        return Tone(reference, value)
    blocks = np.asarray(blocks if blocks is not None else [], dtype=np.float32).ravel()
    if blocks.shape != (BLOCKS * BLOCKS,) or not np.isfinite(blocks).all() or blocks.min() < 0 or blocks.max() > 255:
        raise EngineError(f"the region's tone blocks must be {BLOCKS * BLOCKS} grey levels in 0..255; "
                          f"got shape {blocks.shape}")
    return Tone(reference, value, blocks, _grey_limit(block_limit, "tone block limit"))


def _grey_limit(limit: np.ndarray | None, what: str) -> float:
    value = np.asarray(limit if limit is not None else [], dtype=np.float32).ravel()
    if value.shape != (1,) or not np.isfinite(value[0]) or not 0 <= value[0] <= 255:
        raise EngineError(f"the region's {what} must be one number of grey levels in 0..255")
    return float(value[0])


def tone_curve(crop: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(256,) float32: each grey level of `crop` to the reference's tone. Between the matched quantiles the
    curve is linear; beyond them it goes on with the slope from the first matched quantile to the last (the
    gain of a lamp or an exposure; the slope of the few pixels in a tail's last stretch is noise). No stretch is
    steeper than MAX_STRETCH or flatter than its inverse."""
    return _curve(tone_quantiles(crop), reference)


def _curve(quantiles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """tone_curve of a crop whose quantiles are `quantiles`."""
    q = quantiles.astype(np.float64)
    r = reference.astype(np.float64)
    dq = np.maximum(np.diff(q), 1e-3)
    slope = np.clip(np.diff(r) / dq, 1.0 / MAX_STRETCH, MAX_STRETCH)
    knots = np.concatenate([[0.0], np.cumsum(dq)]) + q[0]  # strictly increasing, the crop's levels
    values = np.concatenate([[0.0], np.cumsum(slope * dq)])
    values += float(np.median(r - values))  # the stretches keep their slopes; the curve sits on the reference
    levels = np.arange(256, dtype=np.float64)
    curve = np.interp(levels, knots, values)
    below, above = levels < knots[0], levels > knots[-1]
    overall = float(np.clip((values[-1] - values[0]) / (knots[-1] - knots[0]), 1.0 / MAX_STRETCH, MAX_STRETCH))
    curve[below] = values[0] - (knots[0] - levels[below]) * overall
    curve[above] = values[-1] + (levels[above] - knots[-1]) * overall
    return np.clip(curve, 0, 255).astype(np.float32)


def _applied(crop: np.ndarray, curve: np.ndarray) -> np.ndarray:
    return np.rint(curve).astype(np.uint8)[crop]


def match_tone(crop: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`crop` (uint8, grey or RGB) with its tones brought to `reference`'s."""
    return _applied(crop, tone_curve(crop, reference))


def _shift(quantiles: np.ndarray, reference: np.ndarray) -> float:
    return float(np.median(quantiles - reference))


def tone_shift(crop: np.ndarray, reference: np.ndarray) -> float:
    """How far the crop's tones are from the reference's: the median gap of their quantiles, grey levels (signed:
    negative where the crop is darker)."""
    return _shift(tone_quantiles(crop), reference)
