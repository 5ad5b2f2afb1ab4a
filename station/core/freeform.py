"""Which engine fits a free-form product given by good images only, measured rather than guessed.

Five candidates, each on the frames given (whole frames, or a part turned back to one pose where
station.core.pose finds one) resized to its crop, which keeps the frame's shape (a long part is
not squeezed into a square; for a square frame:) the RT method per 8 x 8 patch of a 128 px crop
(one unit space per position: aligned parts); the same RT fused with the texture model (what the surface's
own pattern does not predict) and the image MT (the whole surface's layout of brightness, contrast and
colour) on that crop, their evidence added up against good parts (textures and surfaces); and the patch
memory (position-free: views that are not aligned) on a 256 px crop, again on a crop half as large (each
descriptor then sees twice as much of the part: an object turned or shifted from frame to frame), and on a crop at
the frame's own detail, up to 512 px, where the frames have it (defects a few pixels wide; docs/photographs.md).
Each is fitted on most of the good
images and asked to tell the rest from copies of them with synthetic defects (dark or bright spots,
scratches, a patch cut from another good image and pasted elsewhere as in CutPaste, smudges that wipe out
the grain, and on a product in colour stains of another hue at the same grey level), every held-out image getting
each kind once. The product's defects are not known, so each engine
counts as good as the kind of defect it finds worst (its lowest AUROC over the kinds); the best of those is
chosen. A kind that no candidate tells from good parts better than chance would (its best AUROC within
1.645 standard errors of 0.5) says nothing about which is better and is left out of that minimum. Where every
candidate is blind to some kind (each worst kind at chance, if for different kinds), the minima are all noise,
and the candidates are ranked instead by how far above chance they are over the kinds, on average (0 for a kind
at chance). A candidate later in the list must beat the one chosen so far by more than CHOICE_MARGIN (the
simpler one keeps a tie).
Synthetic defects guess at the product's; where the engineer gives photographs
of real defective parts, they are one more kind (held-out good images against them), so an engine blind to the
product's own defects is not chosen however well it finds the synthetic ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from station.core.engines import TrainingSet, engine_class
from station.core.engines.fused_engine import MIN_SPREAD
from station.core.errors import EngineError
from station.core.evaluate import auroc
from station.core.grid import CellGrid
from station.core.pose import position_variance_share

log = logging.getLogger(__name__)

PATCH_SIDE = 256  # the crop side of the patch engine: detail for small defects at a CPU's pace
RT_CELLS = 16  # RT per 8 x 8 patch: 16 along the shorter side, a 128 px crop for a square frame
MAX_ELONGATION = 3  # a crop's longer side has at most this many times the cells of its shorter side
CHOICE_TRAIN = 160  # good images the candidates are fitted on while choosing (at most)
CHOICE_HELD = 30  # good images held out, each also given every kind of synthetic defect (at most)
MT_BLOCKS = 8  # the image MT's blocks: 16 px on the 128 px crop, two RT patches a side
RT_SHRINK = 0.2  # each RT cell's covariance a fifth of the way to the mean cell's: lamp drift (docs/photographs.md)
TEXTURE_LEVELS = [1, 2]  # the texture model on the 128 px crop halved and quartered (docs/photographs.md)
PATCH_TRIAL = {"memory": 2048, "candidates": 12000}  # a lighter memory while choosing, on the 256 px crop
FINE_SIDE = 512  # the fine patch crop's shorter side, at most: the camera's detail for defects a few px wide
FINE_AREA = 512 * 512  # and its area, at most: per frame it costs 3 to 4 times the 256 px crop
VISIBLE_LEVELS = 8  # a synthetic defect changes the pixels it touches by this many grey levels on average, at least
DRAWS = 8  # tries to place one that does
DEFECT_KINDS = ("spot", "scratch", "pasted", "smudge")  # the synthetic defects, by their `kind` number
KINDS = len(DEFECT_KINDS)
COLOUR = "colour"  # one more kind on a product in colour: a stain of another hue at the same grey level
COLOUR_CHROMA = 2.0  # a product is in colour where its good frames' mean chroma (CIELAB a*, b*) is this, at least:
# grey frames 0; smoothed, the tyre 2.5, the bottle 3.5, the transistor 13.9, the metal plates 19.6, wood 27.6
COLOUR_SMOOTH_PX = 2.0  # the chroma is read on the 128 px copy smoothed by this sigma: areas of colour, not noise
COLOUR_SHIFT = (30.0, 60.0)  # the stain's move across the grey axis, in RGB levels, its direction drawn at random
TAUGHT = "taught"  # the key of the engineer's own defect photographs beside the synthetic kinds
MAX_TAUGHT = 200  # defect photographs read for the choice (at most): a few tell the engines apart
TAUGHT_SIDE = 1024  # px on a defect photograph's longer side, at most: larger than any candidate's crop
CHOICE_MARGIN = 0.01  # a later candidate must find its worst kind better than this to displace an earlier one
CHANCE_Z = 1.645  # a kind is informative where some candidate's AUROC is this many null standard errors above 0.5
JOINED = "joined"  # the label of the chosen candidate joined with the next best


@dataclass
class Trial:
    """A candidate measured: its AUROC per kind of defect (a synthetic kind's number, or TAUGHT), and the image
    scores they were read from (`held`: the held-out good images; `faulty`: per kind), by which candidates are
    joined. A trial that kept no scores is not joined."""

    auroc: dict[int | str, float]
    held: np.ndarray | None = None
    faulty: dict[int | str, np.ndarray] = field(default_factory=dict)


def aspect(goods: list[np.ndarray]) -> float:
    """The good frames' median height over width."""
    return float(np.median([im.shape[0] / im.shape[1] for im in goods]))


def _cells_along(short: int, ratio: float) -> tuple[int, int]:
    """(cols, rows): `short` cells along the frames' shorter side and as many along the longer side as keep
    their shape (at most MAX_ELONGATION times as many), so a long part is not squeezed into a square."""
    long = int(np.clip(round(short * max(ratio, 1 / ratio)), short, MAX_ELONGATION * short))
    return (short, long) if ratio >= 1 else (long, short)


def rt_grid(goods: list[np.ndarray], cell_px: int | None = None) -> CellGrid:
    """RT_CELLS cells of 8 px along the frames' shorter side (a 128 px crop for a square frame), the other
    side in proportion."""
    cols, rows = _cells_along(RT_CELLS, aspect(goods))
    return CellGrid(cols, rows, cell_px or 8)


def patch_grid(goods: list[np.ndarray], cell_px: int | None = None) -> CellGrid:
    """8 cells along the shorter side of a crop PATCH_SIDE px on that side (smaller frames: their median side,
    in steps of 64 px, at least 64), the other side in proportion."""
    side = float(np.median([np.sqrt(im.shape[0] * im.shape[1]) for im in goods]))
    crop = PATCH_SIDE if side >= PATCH_SIDE else max(64, int(side // 64) * 64)
    cols, rows = _cells_along(8, aspect(goods))
    return CellGrid(cols, rows, cell_px or crop // 8)


def fine_patch_grid(goods: list[np.ndarray]) -> CellGrid | None:
    """patch_grid's cells on a crop at the frames' own detail: up to FINE_SIDE px on their shorter side (never
    more than they have, in steps of 64 px) and FINE_AREA px in all; None where that is not finer."""
    base = patch_grid(goods)
    short = float(np.median([min(im.shape[:2]) for im in goods]))
    cell = min(int(min(FINE_SIDE, short) // 64) * 8, int(np.sqrt(FINE_AREA / base.n_cells) // 8) * 8)
    return CellGrid(base.cols, base.rows, cell) if cell > base.cell_px else None


def coarse_patch_grid(goods: list[np.ndarray]) -> CellGrid | None:
    """patch_grid's cells on a crop half as large (cells a multiple of 8 px, at least 8): each descriptor sees
    twice as much of the part; None where the patch crop is too small to halve."""
    base = patch_grid(goods)
    cell = (base.cell_px // 2) // 8 * 8
    return CellGrid(base.cols, base.rows, cell) if cell >= 8 else None


def chance_auroc(n_good: int, n_faulty: int) -> float:
    """The AUROC that a scorer blind to the defects exceeds only once in 20 (one-sided), for `n_good` good and
    `n_faulty` faulty images: 0.5 plus CHANCE_Z standard errors of the AUROC under no difference (Mann-Whitney)."""
    return 0.5 + CHANCE_Z * float(np.sqrt((n_good + n_faulty + 1) / (12.0 * n_good * n_faulty)))


def informative_kinds(per_kind: dict[str, dict[int | str, float]], sizes: dict[int | str, int],
                      n_good: int) -> list[int | str]:
    """The synthetic kinds of defect some candidate tells from `n_good` held-out good images better than chance
    would (`sizes`: faulty images per kind), all of them where none is (nothing then tells the candidates apart
    better), and the engineer's own photographs, which always count."""
    synthetic = [k for k in sizes if k != TAUGHT]
    keep = [k for k in synthetic if max(v[k] for v in per_kind.values()) > chance_auroc(n_good, sizes[k])]
    return (keep or synthetic) + [k for k in sizes if k == TAUGHT]


def choice_ranking(per_kind: dict[str, dict[int | str, float]], kinds: list[int | str],
                   chance: dict[int | str, float], worst: dict[str, float]) -> tuple[str, dict[str, float]]:
    """(what ranks the candidates, each one's figure): its worst kind's AUROC (`worst`); but where every
    candidate is blind to some kind (its worst at or below what chance reaches, `chance` per kind), those minima
    are all noise, and the mean over the kinds of how far each is above chance (0 where it is not) ranks them instead:
    the candidate that sees most of the rest (docs/photographs.md, "When every candidate is blind to a kind")."""
    if any(min(found[k] - chance[k] for k in kinds) > 0 for found in per_kind.values()):
        return "worst kind", worst
    return "mean above chance, every candidate blind to a kind", {
        label: float(np.mean([max(found[k] - chance[k], 0.0) for k in kinds])) for label, found in per_kind.items()}


def _trial_config(name: str, config: dict[str, Any], grid: CellGrid, base: CellGrid) -> dict[str, Any]:
    """The settings a candidate is measured with: the patch memory lighter, in proportion to its crop's area
    over the 256 px crop's (a memory too small for a larger crop's descriptors loses to a smaller crop for that
    alone, docs/photographs.md), never more than the engine's own, and searched exactly: the trial measures
    what each crop sees; the probed search is the chosen engine's, checked when it is fitted (a trial's light
    memory probed put KolektorSDD's fine crop below the margin, docs/photographs.md)."""
    if name != "patch":
        return config
    full = {**engine_class("patch").default_config(), **config}
    scale = grid.n_cells * grid.cell_px ** 2 / (base.n_cells * base.cell_px ** 2)
    return {**config, "memory": min(full["memory"], round(PATCH_TRIAL["memory"] * scale)),
            "candidates": round(PATCH_TRIAL["candidates"] * scale), "probe": 0}


def synthetic_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                     kind: int | None = None) -> np.ndarray:
    """A copy of a good RGB frame with one synthetic defect of a few per cent of its side (`kind`: 0 a spot,
    1 a scratch, 2 a rectangle of `donor` pasted elsewhere, 3 a smudge; drawn at random when not given).

    The defect is one a camera can see: where it changed the pixels by less than VISIBLE_LEVELS grey levels on
    average (a dark spot or a smudge on a black background, background pasted on background), it is drawn
    again elsewhere, up to DRAWS times. An invisible one measured how an engine reads a drift of a level or
    two in the background, which is a lamp's drift, not a defect (docs/photographs.md)."""
    kind = int(rng.integers(KINDS)) if kind is None else kind
    out = image
    for _ in range(DRAWS):
        out, core = _drawn_defect(image, donor, rng, kind)
        change = np.abs(out.astype(np.int16) - image.astype(np.int16))
        change = change.max(axis=-1) if change.ndim == 3 else change
        if core.any() and change[core].mean() >= VISIBLE_LEVELS:
            break
    return out


def in_colour(goods: list[np.ndarray]) -> bool:
    """Whether good RGB frames show a product in colour: their median mean chroma, on copies 128 px a side
    smoothed over a few pixels, is COLOUR_CHROMA or more (a grey camera's frames, stored as RGB, have none). A
    product's colour lies in areas; a colour camera's noise on a grey part differs channel by channel from pixel to
    pixel, and unsmoothed it read as chroma 2.8 (sigma 4 levels a channel) where the smoothed copy reads 0.8."""
    chroma = []
    for im in goods[:16]:
        if im.ndim != 3:
            return False
        small = cv2.resize(im, (128, 128), interpolation=cv2.INTER_AREA)
        lab = cv2.cvtColor(cv2.GaussianBlur(small, (0, 0), COLOUR_SMOOTH_PX), cv2.COLOR_RGB2LAB)
        ab = lab[..., 1:].astype(np.float32) - 128.0
        chroma.append(float(np.hypot(ab[..., 0], ab[..., 1]).mean()))
    return bool(chroma) and float(np.median(chroma)) >= COLOUR_CHROMA


def colour_defect(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a good RGB frame with a soft stain of another hue at the same grey level (each pixel moved across
    the grey axis: 0.299 R + 0.587 G + 0.114 B kept): a wrong colour, a discoloured area, a wire of another colour.
    An engine that reads grey levels only does not see it. Drawn again where it changed the pixels by less than
    VISIBLE_LEVELS (where the colours clip), as the other kinds are."""
    h, w = image.shape[:2]
    side = min(h, w)
    luma = np.array([0.299, 0.587, 0.114])
    across = np.linalg.svd(luma[None, :])[2][1:]  # two orthonormal directions that keep the grey level
    out = image
    for _ in range(DRAWS):
        mask = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(w // 8, w - w // 8)), int(rng.integers(h // 8, h - h // 8)))
        axes = (max(2, int(side * rng.uniform(0.03, 0.08))), max(2, int(side * rng.uniform(0.03, 0.08))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.7, side / 400))
        angle, shift = rng.uniform(0, 2 * np.pi), rng.uniform(*COLOUR_SHIFT)
        move = (np.cos(angle) * across[0] + np.sin(angle) * across[1]) * shift
        out = (image.astype(np.float32) + mask[..., None] * move.astype(np.float32)).clip(0, 255).astype(np.uint8)
        core = mask >= 0.5 * mask.max()
        change = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=-1)
        if core.any() and change[core].mean() >= VISIBLE_LEVELS:
            break
    return out


def kind_name(kind: int | str) -> str:
    """A kind of defect's name in the recipe's provenance."""
    return DEFECT_KINDS[kind] if isinstance(kind, int) else kind


def _drawn_defect(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                  kind: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame with the defect, and where the defect is at half its strength or more."""
    out = image.astype(np.float32)
    h, w = out.shape[:2]
    side = min(h, w)
    mask = np.zeros((h, w), np.float32)
    if kind == 0:  # a spot
        centre = (int(rng.integers(w // 8, w - w // 8)), int(rng.integers(h // 8, h - h // 8)))
        axes = (max(2, int(side * rng.uniform(0.02, 0.06))), max(2, int(side * rng.uniform(0.02, 0.06))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    elif kind == 1:  # a scratch
        pts = np.cumsum(rng.normal(0, side * 0.06, (5, 2)), axis=0) + [rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h]
        cv2.polylines(mask, [pts.astype(np.int32)], False, 1.0, max(1, side // 120))
    if kind < 2:
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.7, side / 400))[..., None]
        shift = float(rng.choice([-1, 1]) * rng.uniform(50, 100))
        out = out + mask * shift
    elif kind == 3:  # a smudge: a soft region whose grain is wiped out and whose level drifts (a stain, a dead area)
        centre = (int(rng.integers(w // 6, w - w // 6)), int(rng.integers(h // 6, h - h // 6)))
        axes = (max(3, int(side * rng.uniform(0.05, 0.12))), max(3, int(side * rng.uniform(0.05, 0.12))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, side / 100))[..., None]
        wiped = cv2.GaussianBlur(out, (0, 0), max(1.5, side / 60)) * float(rng.uniform(0.6, 0.85))
        out = out * (1 - mask) + wiped * mask
    else:  # CutPaste: a rectangle of another good frame, somewhere else
        donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        pw, ph = max(2, int(w * rng.uniform(0.05, 0.15))), max(2, int(h * rng.uniform(0.05, 0.15)))
        sx, sy = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        dx, dy = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        out[dy:dy + ph, dx:dx + pw] = np.rot90(donor[sy:sy + ph, sx:sx + pw], 2)
        mask[dy:dy + ph, dx:dx + pw] = 1.0
    return out.clip(0, 255).astype(np.uint8), mask.reshape(h, w) >= 0.5 * mask.max()


def _trial(name: str, config: dict[str, Any], grid: CellGrid, train: list[np.ndarray], held: list[np.ndarray],
           faulty: dict[int | str, list[np.ndarray]], seed: int) -> Trial:
    """The engine fitted on `train` and telling the held-out good images from faulty ones: per kind of defect (a
    synthetic kind's number, or TAUGHT) its AUROC, and the scores."""
    size = grid.size
    crops = lambda ims: np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in ims])  # noqa: E731
    engine = engine_class(name)(grid, config)
    engine.fit(TrainingSet(crops(train), ["good"] * len(train), [None] * len(train), grid), seed=seed)
    score = lambda ims: np.array([o.score for o in engine.infer_batch(crops(ims))], float)  # noqa: E731
    good = score(held)
    scores = {kind: score(ims) for kind, ims in faulty.items()}
    return Trial({kind: float(auroc(good, s)) for kind, s in scores.items()}, good, scores)


def good_z(held: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores as robust z of their logarithm against a candidate's held-out good scores (median, and spread
    from the median absolute deviation, at least the fused engine's MIN_SPREAD, as the joined engine reads its
    parts): candidates' scales differ."""
    logged = np.log(np.maximum(np.asarray(held, float), 1e-12))
    centre = float(np.median(logged))
    spread = max(float(np.median(np.abs(logged - centre))) * 1.4826, MIN_SPREAD)
    return (np.log(np.maximum(np.asarray(scores, float), 1e-12)) - centre) / spread


def joined_auroc(trials: list[Trial], kinds: list[int | str]) -> dict[int | str, float]:
    """Per kind: the AUROC of candidates joined, each image's z against each one's good images added."""
    held = np.sum([good_z(t.held, t.held) for t in trials], axis=0)
    return {k: float(auroc(held, np.sum([good_z(t.held, t.faulty[k]) for t in trials], axis=0))) for k in kinds}


def joined_candidate(first: tuple, second: tuple) -> tuple[str, str, dict[str, Any], CellGrid]:
    """The joined engine's candidate: both parts with their settings and crops, the recipe's crop the larger."""
    parts = [{"engine": name, "config": dict(config),
              "grid": {"cols": g.cols, "rows": g.rows, "cell_px": g.cell_px}}
             for _, name, config, g in (first, second)]
    grid = max((first[3], second[3]), key=lambda g: g.size[0] * g.size[1])
    return JOINED, JOINED, {"parts": parts, "holdout": 0.2, "rule": "sum"}, grid


def trial_sets(goods: list[np.ndarray], order: np.ndarray, n_held: int, rng: np.random.Generator,
               colour: bool | None = None
               ) -> tuple[list[np.ndarray], list[np.ndarray], dict[int | str, list[np.ndarray]]]:
    """(held-out good frames, frames to fit on, synthetic defects by kind) for the choice: the first `n_held`
    of `order` held out, at most CHOICE_TRAIN of the rest fitted on, and every held-out frame given each kind
    of defect once, so each kind is measured on as many images. `colour`: whether the product is in colour,
    where the caller has already measured it (`in_colour`)."""
    held = [goods[i] for i in order[:n_held]]
    train = [goods[i] for i in order[n_held:][:CHOICE_TRAIN]]
    faulty: dict[int | str, list[np.ndarray]] = {
        kind: [synthetic_defect(im, goods[order[(k + 1) % len(order)]], rng, kind=kind) for k, im in enumerate(held)]
        for kind in range(KINDS)}
    if colour is None:
        colour = in_colour(goods)
    if colour:  # drawn after the others, which are then the same as on a grey product's frames
        faulty[COLOUR] = [colour_defect(im, rng) for im in held]
    return held, train, faulty


def candidate_configs(colour: bool = False) -> dict[str, dict[str, Any]]:
    """The settings of each engine the free-form choice measures, by engine name; on a product in colour
    (`in_colour`) RT reads its cells in grey and two opponent colours."""
    # the camera aligns: no local search; hundreds of good images: one odd one must not set the thresholds
    rt = {"pixel_map": True, "search_px": 0, "shrink": RT_SHRINK, **({"colour": True} if colour else {})}
    # RT alone draws its map from two grids half a cell apart (its score and thresholds are the first grid's, so
    # the choice reads it as before); as a part of the fused engine it keeps one, the fused map being its sum
    return {"rt": {**rt, "calibration": "robust", "staggered": True},
            "fused": {"parts": [{"engine": "rt", "config": dict(rt)},
                                {"engine": "texture", "config": {"levels": TEXTURE_LEVELS}},
                                {"engine": "mt", "config": {"blocks": MT_BLOCKS}}], "rule": "sum"},
            "patch": {}}


def _join(choice: tuple, measured: list[tuple], ranking: dict[str, float], trials: dict[str, Trial],
          kinds: list[int | str], join: bool) -> tuple[tuple, dict[str, Any]]:
    """(the candidate chosen, what joining it with the next best by the ranking measures: each image's z against
    each one's held-out good images added): joined where the engineer asks for it (`join`). The measure is kept
    either way, so the engineer sees what joining would find: chosen alone, joining did not pay on the real
    sets' dev split (docs/photographs.md, "Two candidates joined, measured end to end")."""
    others = sorted((c for c in measured if c[0] != choice[0]), key=lambda c: -ranking[c[0]])
    if not others or any(trials[c[0]].held is None for c in (choice, others[0])):
        if join:
            log.warning("free-form choice: the joined engine was asked for, but only %s could be measured", choice[0])
            return choice, {"chosen": False, "why": f"only {choice[0]} could be measured: nothing to join it with"}
        return choice, {}
    second = others[0]
    found = joined_auroc([trials[choice[0]], trials[second[0]]], kinds)
    return (joined_candidate(choice, second) if join else choice), {
        "parts": [choice[0], second[0]], "worst_kind_auroc": round(min(found.values()), 4), "chosen": join,
        "auroc_per_kind": {kind_name(k): round(v, 4) for k, v in found.items()}}


def choose_free_form(goods: list[np.ndarray], cell_px: int | None = None, seed: int = 0,
                     defects: list[np.ndarray] | None = None,
                     join: bool = False) -> tuple[str, dict[str, Any], CellGrid, dict[str, Any]]:
    """(engine, settings, grid, what was measured) for a product given by good RGB frames, and by photographs of
    defective ones (`defects`, any size: each is resized to the crop like the good frames) where the engineer
    has them; `join`: the engineer asked for the joined engine, the candidate chosen with the next best."""
    grid = rt_grid(goods, cell_px)
    colour = in_colour(goods)
    configs = candidate_configs(colour)
    base = patch_grid(goods, cell_px)
    # (label, engine, settings, grid), simplest first: a later one must do better by CHOICE_MARGIN to be chosen
    candidates = [("rt", "rt", configs["rt"], grid), ("fused", "fused", configs["fused"], grid),
                  ("patch", "patch", configs["patch"], base)]
    coarse = None if cell_px else coarse_patch_grid(goods)  # a taught cell size sets the crop
    if coarse is not None:
        candidates.append(("patch_coarse", "patch", configs["patch"], coarse))
    fine = None if cell_px else fine_patch_grid(goods)
    if fine is not None:
        candidates.append(("patch_fine", "patch", configs["patch"], fine))
    info: dict[str, Any] = {"position_variance_share": round(position_variance_share(goods), 4)}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(goods))
    n_held = min(CHOICE_HELD, len(goods) // 4)
    if n_held < 3 or len(goods) - n_held < 8:  # too few to measure: per-position statistics need alignment
        choice = candidates[0] if info["position_variance_share"] < 0.5 else candidates[2]
        if defects:
            log.warning("free-form choice: %d defect photographs not used: too few good images to measure on",
                        len(defects))
            info["defect_images_not_used"] = f"{len(defects)}: too few good images to measure the engines on"
        chosen_by = "position variance (too few images to measure)"
        if join:  # nothing measured to join by: the one the variance favours with the other kind of engine
            choice = joined_candidate(choice, candidates[2] if choice is candidates[0] else candidates[0])
            chosen_by += f"; joined, as asked, with {choice[2]['parts'][1]['engine']}"
        return (*choice[1:], {**info, "candidate": choice[0], "chosen_by": chosen_by})
    held, train, faulty = trial_sets(goods, order, n_held, rng, colour)
    taught = list(defects or [])[:MAX_TAUGHT]
    if taught:
        faulty[TAUGHT] = taught
    per_kind, trials, not_measured = {}, {}, {}
    for label, name, config, its_grid in candidates:
        try:
            trials[label] = _trial(name, _trial_config(name, config, its_grid, base), its_grid, train, held, faulty,
                                   seed)
            per_kind[label] = trials[label].auroc
        except EngineError as exc:  # e.g. too few images for it: it is not chosen, and the recipe says why
            log.warning("free-form choice: %s could not be measured: %s", label, exc)
            not_measured[label] = str(exc)
    log.info("free-form choice: AUROC per kind of defect %s", per_kind)
    measured = [c for c in candidates if c[0] in per_kind]
    if not measured:
        raise EngineError("no free-form engine could be measured on these good images: "
                          + "; ".join(f"{k}: {v}" for k, v in not_measured.items()))
    # the product's defects are not known: an engine is as good as the kind it finds worst, the engineer's own
    # defect photographs, where given, being one more kind (docs/photographs.md: with 5 or 20 of them deciding
    # alone, the choice was worse on the real sets than with them as one more kind); a kind no candidate sees
    # better than chance would only add noise to that minimum
    kinds = informative_kinds(per_kind, {k: len(v) for k, v in faulty.items()}, len(held))
    scores = {label: min(per_kind[label][k] for k in kinds) for label in per_kind}
    ranked_by, ranking = choice_ranking(per_kind, kinds, {k: chance_auroc(len(held), len(faulty[k])) for k in kinds},
                                        scores)
    choice = measured[0]
    for c in measured[1:]:
        if ranking[c[0]] > ranking[choice[0]] + CHOICE_MARGIN:
            choice = c
    worst_before = scores[choice[0]]
    choice, joined = _join(choice, measured, ranking, trials, kinds, join)
    if joined:
        info["joined"] = joined
        if joined["chosen"]:
            scores[JOINED] = joined["worst_kind_auroc"]
    if not_measured:
        info["not_measured"] = not_measured
    left_out = [k for k in faulty if k not in kinds]
    if left_out:
        info["kinds_left_out"] = {"kinds": [kind_name(k) for k in left_out],
                                  "why": f"no candidate above AUROC {chance_auroc(len(held), len(held)):.3f}, "
                                         "what chance alone reaches once in 20"}
    crops = {label: list(g.size) for label, _, _, g in candidates if label.startswith("patch")}
    if len(crops) > 1:
        info["patch_crops"] = crops
    chosen_by = (f"synthetic defects and {len(taught)} photographs of defective parts" if taught
                 else "synthetic defects") + f" on held-out good images, the {ranked_by}"
    if joined.get("chosen"):
        first, second = joined["parts"]
        chosen_by += (f"; joined, as asked, with {second}: their worst kind together "
                      f"{joined['worst_kind_auroc']:.3f}, {first}'s alone {worst_before:.3f}")
    return (*choice[1:], {**info, "candidate": choice[0], "chosen_by": chosen_by,
                          **({"taught_auroc": {k: round(v[TAUGHT], 4) for k, v in per_kind.items()},
                              "defect_images": len(taught)} if taught else {}),
                          "worst_kind_auroc": {k: round(v, 4) for k, v in scores.items()},
                          "ranked_by": ranked_by, "ranking": {k: round(v, 4) for k, v in ranking.items()},
                          "synthetic_auroc": {k: round(min(a for kind, a in v.items() if kind != TAUGHT), 4)
                                              for k, v in per_kind.items()},
                          "synthetic_auroc_per_kind": {k: {kind_name(kind): round(v, 4)
                                                           for kind, v in found.items() if kind != TAUGHT}
                                                       for k, found in per_kind.items()}})
