"""A line of several recipes: one registration per frame, each recipe's engine on the registered part,
and one verdict by the line's combine rule (station/core/combine.py).

The first recipe registers the part; a recipe that registers the same way (same grid, same region
mode, its grid placed within a pixel of the first's) takes that crop as it is, so the engines judge
the same pixels and their pins are the same pins. Another recipe registers for itself: a crop found
another way is not the crop its engine learned from (a pattern-mode recipe given a blob-mode crop
rejected every good part of the demo set).

The engines run one after the other by default; with `parallel` the others run on a thread each while
the first runs in the calling thread. Each engine is only ever used by one thread at a time: a
MultiInspector is not to be shared between threads (load a copy, as the threshold tuner does).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from station.core.combine import DEFAULT_RULE, check_rule, combine
from station.core.errors import StationError
from station.core.inspector import InspectionResult, Inspector
from station.core.recipe import Recipe

MAX_RECIPES = 8


def line_names(recipes: list[Recipe]) -> list[str]:
    """Each recipe's name on the line: the recipe's name, made unique by its engine's where two share one."""
    names: list[str] = []
    for recipe in recipes:
        name = recipe.name or recipe.doc.engine.name
        if name in names:
            name = f"{name}/{recipe.doc.engine.name}"
        while name in names:
            name += "'"
        names.append(name)
    return names


SHARE_SHIFT_PX = 1.0  # two blob regions whose grids sit this close take the same crop
SHARE_SPAN = 1e-3  # two pose regions whose spans differ by at most this share of the frame's side take the same crop
SHARE_TONE = 2.0  # grey levels: two free-form regions whose reference tones differ by at most this take the same crop


def _same_tone(a, b) -> bool:
    """Two regions' tones (station.core.tone.Tone or None) judge every crop alike: within SHARE_TONE grey levels
    of each other, with the same limits."""
    if a is None or b is None:
        return a is None and b is None
    if (a.blocks is None) != (b.blocks is None) or a.limit != b.limit or a.block_limit != b.block_limit:
        return False
    close = np.abs(a.reference - b.reference).max() <= SHARE_TONE
    return close and (a.blocks is None or np.abs(a.blocks - b.blocks).max() <= SHARE_TONE)


def same_registration(lead: Recipe, other: Recipe) -> bool:
    """Whether `other` may judge `lead`'s registered crop: the same grid and region, up to a pixel of shift."""
    a, b = lead.region, other.region
    if lead.grid != other.grid or (a.mode, a.polarity, a.refine) != (b.mode, b.polarity, b.refine):
        return False
    if not _same_tone(a.tone, b.tone):
        return False  # a crop brought to the lead's tones: shared only where they are the other's too
    if a.mode == "pattern":
        return a.pattern is not None and b.pattern is not None and a.pattern.to_dict() == b.pattern.to_dict() \
            and a.margin == b.margin
    if a.mode == "pose":  # the crop spans the same stretch of the part (shares of the frame's side)
        return a.turn == b.turn and abs(a.span_x - b.span_x) <= SHARE_SPAN and abs(a.span_y - b.span_y) <= SHARE_SPAN
    return abs(a.shift_x - b.shift_x) <= SHARE_SHIFT_PX and abs(a.shift_y - b.shift_y) <= SHARE_SHIFT_PX


class MultiInspector:
    """Several recipes on one frame; quacks like `Inspector` for the live line, the CLI and eval."""

    def __init__(self, recipes: list[Recipe], rule: str = DEFAULT_RULE, parallel: bool = False) -> None:
        if not recipes:
            raise StationError("a line needs at least one recipe")
        if len(recipes) > MAX_RECIPES:
            raise StationError(f"a line runs at most {MAX_RECIPES} recipes, not {len(recipes)}")
        self.names = line_names(recipes)
        self.rule = check_rule(rule, self.names)
        self._inspectors = [Inspector(r) for r in recipes]
        self.by_name = dict(zip(self.names, self._inspectors))
        self.recipe = recipes[0]  # the lead recipe: its registration is the line's
        self._shares = [same_registration(recipes[0], r) for r in recipes]
        digest = hashlib.sha256("|".join([self.rule, *(r.content_hash for r in recipes)]).encode()).hexdigest()
        self.content_hash = f"line:{digest[:56]}"  # fits the result log's recipe_hash column (80)
        self.name = "+".join(self.names)
        self._pool = ThreadPoolExecutor(len(recipes) - 1, "station-engine") if parallel and len(recipes) > 1 \
            else None

    @property
    def inspectors(self) -> list[Inspector]:
        return list(self._inspectors)

    def named(self) -> dict[str, Inspector]:
        return dict(self.by_name)

    @property
    def recipes(self) -> list[Recipe]:
        return [i.recipe for i in self._inspectors]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def inspect(self, frame: np.ndarray) -> InspectionResult:
        t0 = time.perf_counter()
        lead = self._inspectors[0]
        registered, why = lead.register(frame)
        reg_ms = (time.perf_counter() - t0) * 1e3

        def judge(i: int) -> InspectionResult:
            inspector = self._inspectors[i]
            if self._shares[i]:
                return inspector.judge(registered, reg_ms, why)
            t = time.perf_counter()
            own, own_why = inspector.register(frame)
            return inspector.judge(own, (time.perf_counter() - t) * 1e3, own_why)

        if self._pool is None:
            results = [judge(i) for i in range(len(self._inspectors))]
        else:
            futures = [self._pool.submit(judge, i) for i in range(1, len(self._inspectors))]
            results = [judge(0), *(f.result() for f in futures)]
        by_name = dict(zip(self.names, results))
        ng = {n: i.recipe.thresholds[1] for n, i in self.by_name.items()}
        out = combine(by_name, ng, self.rule, self.content_hash)
        out.timings_ms["wall"] = (time.perf_counter() - t0) * 1e3
        return out


def load_line(paths: list[str], rule: str = DEFAULT_RULE, parallel: bool = False):
    """An `Inspector` for one recipe folder, a `MultiInspector` for several."""
    recipes = [Recipe.load(p) for p in paths]
    if len(recipes) == 1:
        check_rule(rule, line_names(recipes))  # a rule that names no engine is said, not ignored
        return Inspector(recipes[0])
    return MultiInspector(recipes, rule, parallel)
