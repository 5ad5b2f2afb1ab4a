"""One frame in, one inspection result out: registration, the engine, and the verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from station.core.engines.base import EngineOutput
from station.core.errors import EngineError, ImageError, RegistrationError, StationError
from station.core.recipe import Recipe
from station.core.registration import Registered, Registrar
from station.core.verdict import Verdict, decide, decide_cells

NO_PART = "no_part"
BAD_FRAME = "bad_frame"  # a frame that could not be inspected at all (station/core/frame_check.py)


@dataclass
class InspectionResult:
    verdict: Verdict
    label: str  # the OK class, a defect class, "defect" (anomaly engines) or "no_part"
    score: float
    cell_scores: np.ndarray | None  # (rows, cols)
    top_cell: tuple[int, int] | None  # (col, row) of the highest cell score
    timings_ms: dict[str, float]
    recipe_hash: str
    registered: Registered | None = None
    class_probs: dict[str, float] | None = None
    message: str = ""  # why a frame could not be judged normally
    extra: dict[str, Any] = field(default_factory=dict)
    #: a line of several recipes: each one's own result, by name (station/core/multi.py); empty for one recipe
    engines: dict[str, InspectionResult] = field(default_factory=dict)
    disagreement: str = ""  # where the engines disagree ("" when they agree or there is one engine)
    pixel_map: np.ndarray | None = None  # (H, W) at the crop's resolution, from engines that map pixels

    @property
    def cell_unit(self) -> str:
        """What the operator is told a cell is: a pin, or on a free-form part (mapped per pixel) an area, "cell"."""
        return "pin" if self.pixel_map is None else "cell"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON contract of `station inspect`."""
        return {
            "verdict": self.verdict.value,
            "class": self.label,
            "score": _finite(self.score),
            "top_cell": list(self.top_cell) if self.top_cell else None,
            "cell_scores": None if self.cell_scores is None else [[_finite(v) for v in row] for row in self.cell_scores],
            "class_probs": self.class_probs,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "recipe_hash": self.recipe_hash,
            "message": self.message,
            **({"tone_shift": round(self.registered.tone_shift, 2)}
               if self.registered is not None and self.registered.tone_shift is not None else {}),
            **({"engines": {name: r.to_dict() for name, r in self.engines.items()},
                "disagreement": self.disagreement} if self.engines else {}),
        }


def light_note(shift: float | None) -> str:
    """What the operator is told when a free-form part was shot in other light than the taught good parts (a lamp
    that dimmed, an exposure that changed; `shift`, grey levels, None when it was not): it was judged in their
    tones, and the light wants a look."""
    if shift is None:
        return ""
    return f"light {abs(shift):.0f} levels {'darker' if shift < 0 else 'brighter'} than taught: check the lamp"


def _finite(v: float) -> float | None:
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None


class Inspector:
    """One recipe: registration, then its engine and thresholds. Not to be shared between threads unless
    its engine declares itself thread-safe (`Engine.capabilities.thread_safe`): load a copy instead."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.registrar = Registrar(recipe.region, recipe.grid)

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def content_hash(self) -> str:
        return self.recipe.content_hash

    def named(self) -> dict[str, Inspector]:
        """The recipes this one runs, by the name its results' `engines` use (itself; several on a line)."""
        return {self.name: self}

    def register(self, frame: np.ndarray) -> tuple[Registered | None, str]:
        """(the registered part, "") or (None, why no part was found)."""
        try:
            return self.registrar.register(frame), ""
        except (RegistrationError, ImageError) as exc:
            return None, str(exc)

    def inspect(self, frame: np.ndarray) -> InspectionResult:
        t0 = time.perf_counter()
        registered, why = self.register(frame)
        return self.judge(registered, (time.perf_counter() - t0) * 1e3, why)

    def judge(self, registered: Registered | None, registration_ms: float, why: str = "") -> InspectionResult:
        """The verdict on a registered part (None: no part was found, for the reason `why`)."""
        if registered is None:
            # a frame without a recognisable part is never passed: NG, and the operator is told why
            return InspectionResult(Verdict.NG, NO_PART, float("inf"), None, None,
                                    {"registration": registration_ms, "engine": 0.0, "total": registration_ms},
                                    self.recipe.content_hash, message=why)
        review, ng = self.recipe.thresholds
        t1 = time.perf_counter()
        out = self.recipe.engine.infer(registered.crop)
        engine_ms = (time.perf_counter() - t1) * 1e3
        cell_thresholds = self.recipe.cell_thresholds
        if cell_thresholds is None:
            verdict = decide(out.score, review, ng)
        else:
            verdict = decide_cells(out.cell_scores, *cell_thresholds)
        label = self._label(verdict, out.class_probs)
        timings = {"registration": registration_ms, "engine": engine_ms, "total": registration_ms + engine_ms}
        return InspectionResult(verdict, label, out.score, out.cell_scores, top_cell(out), timings,
                                self.recipe.content_hash, registered, out.class_probs, extra=out.extra,
                                pixel_map=out.pixel_map, message=light_note(registered.tone_shift))

    def _label(self, verdict: Verdict, probs: dict[str, float] | None) -> str:
        ok = self.recipe.doc.ok_class
        if verdict is Verdict.OK:
            return ok
        if probs:
            defects = {k: v for k, v in probs.items() if k != ok}
            if defects:
                return max(defects, key=defects.get)
        return "defect"


def top_cell(out: EngineOutput) -> tuple[int, int]:
    """(col, row) of the cell an engine's result names: the one it says, else its highest cell score (a cell
    whose score is not finite counts as the highest)."""
    rows, cols = out.cell_scores.shape
    if out.top_cell is not None:
        col, row = (int(v) for v in out.top_cell)
        if not (0 <= col < cols and 0 <= row < rows):
            raise EngineError(f"the engine named cell {(col, row)} outside its {cols}x{rows} grid")
        return col, row
    flat = int(np.nanargmax(np.where(np.isfinite(out.cell_scores), out.cell_scores, np.inf)))
    return flat % cols, flat // cols


def bad_frame_result(reason: str, recipe_hash: str) -> InspectionResult:
    """One NG result for a frame that could not be inspected: a part that was not judged is never passed."""
    return InspectionResult(Verdict.NG, BAD_FRAME, float("inf"), None, None,
                            {"registration": 0.0, "engine": 0.0, "total": 0.0}, recipe_hash, message=reason)


def inspect_file(inspector: Inspector, path) -> InspectionResult:
    """Read and inspect one image file; an unreadable file raises ImageError (a StationError)."""
    from station.core.imageio import read_image

    return inspector.inspect(read_image(path))


__all__ = ["InspectionResult", "Inspector", "StationError", "inspect_file", "bad_frame_result", "BAD_FRAME", "NO_PART"]
