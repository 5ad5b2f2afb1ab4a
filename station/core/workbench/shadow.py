"""Shadow mode: a candidate recipe judges the frames the active one judges, and keeps those it would judge otherwise.

The line keeps acting on the active recipe only. The engineer sees, before publishing, how many
verdicts would change and which frames (with both verdicts, classes and scores).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from station.core.inspector import InspectionResult, Inspector
from station.core.recipe import Recipe
from station.core.workbench.errors import WorkbenchError


@dataclass
class VerdictChange:
    frame_id: Any
    active_verdict: str
    candidate_verdict: str
    active_label: str
    candidate_label: str
    active_score: float
    candidate_score: float
    label: str | None  # the true class, where the frame's is known (replay of a labelled set)
    time: float
    frame: np.ndarray | None = None  # kept for the most recent changes only (see `keep_frames`)

    @property
    def transition(self) -> str:
        return f"{self.active_verdict}->{self.candidate_verdict}"


class ShadowRun:
    """Run `candidate` beside `active`. Call `observe` from the inference thread; read `summary()` anywhere."""

    def __init__(self, active: Recipe, candidate: Recipe, max_changes: int = 1000, keep_frames: int = 50) -> None:
        self.active = active
        self.candidate = candidate
        self._active_inspector = Inspector(active)
        self._candidate_inspector = Inspector(candidate)
        self.keep_frames = int(keep_frames)
        self._changes: deque[VerdictChange] = deque(maxlen=int(max_changes))
        self._counts: Counter[str] = Counter()
        self._n_frames = 0
        self._n_changed = 0
        self._lock = threading.Lock()

    def observe(self, frame: np.ndarray, active_result: InspectionResult | None = None, frame_id: Any = None,
                label: str | None = None) -> VerdictChange | None:
        """Judge `frame` with the candidate (and with the active recipe unless its result is given).

        Returns the change when the verdict or the class differs, else None.
        """
        if active_result is None:
            active_result = self._active_inspector.inspect(frame)
        elif active_result.recipe_hash != self.active.content_hash:
            raise WorkbenchError("the active result given to shadow mode comes from another recipe")
        cand = self._candidate_inspector.inspect(frame)
        changed = cand.verdict is not active_result.verdict or cand.label != active_result.label
        with self._lock:
            self._n_frames += 1
            fid = self._n_frames - 1 if frame_id is None else frame_id
            self._counts[f"{active_result.verdict.value}->{cand.verdict.value}"] += 1
            if not changed:
                return None
            self._n_changed += 1
            change = VerdictChange(fid, active_result.verdict.value, cand.verdict.value, active_result.label,
                                   cand.label, float(active_result.score), float(cand.score), label, time.time(),
                                   np.array(frame, copy=True) if self.keep_frames > 0 else None)
            self._changes.append(change)
            with_frames = [c for c in self._changes if c.frame is not None]
            for old in with_frames[:-self.keep_frames] if self.keep_frames > 0 else []:
                old.frame = None
            return change

    def changes(self) -> list[VerdictChange]:
        with self._lock:
            return list(self._changes)

    def summary(self) -> dict[str, Any]:
        """Frames seen, frames whose verdict or class would change, and the verdict transition counts."""
        with self._lock:
            n_verdict = sum(v for k, v in self._counts.items() if k.split("->")[0] != k.split("->")[1])
            labelled = [c for c in self._changes if c.label is not None]
            ok = self.active.doc.ok_class
            return {
                "frames": self._n_frames,
                "changed": self._n_changed,
                "verdict_changed": n_verdict,
                "transitions": dict(self._counts),
                "new_escapes": sum(1 for c in labelled if c.label != ok and c.candidate_verdict == "OK"
                                   and c.active_verdict != "OK"),
                "new_false_rejects": sum(1 for c in labelled if c.label == ok and c.candidate_verdict != "OK"
                                         and c.active_verdict == "OK"),
                "active_hash": self.active.content_hash,
                "candidate_hash": self.candidate.content_hash,
            }

    def reset(self) -> None:
        with self._lock:
            self._changes.clear()
            self._counts.clear()
            self._n_frames = 0
            self._n_changed = 0
