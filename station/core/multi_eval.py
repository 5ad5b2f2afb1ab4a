"""`station eval` of a line of several recipes: the combined verdict's figures at the top level, as for one
recipe, each engine's own figures under `engines`, and how often the engines disagree."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from station.core.dataset import Dataset
from station.core.evaluate import summarize, true_cell
from station.core.imageio import read_image
from station.core.multi import MultiInspector
from station.core.verdict import Verdict


class _Outcomes:
    """Per-image outcomes of one verdict stream, in the shape `summarize` takes."""

    def __init__(self) -> None:
        self.predicted: list[str] = []
        self.verdicts: list[Verdict] = []
        self.scores: list[float] = []
        self.top_cells: list = []

    def add(self, result) -> None:
        self.predicted.append(result.label if result.verdict is not Verdict.REVIEW else "review")
        self.verdicts.append(result.verdict)
        self.scores.append(result.score)
        self.top_cells.append(result.top_cell)

    def summary(self, labels: list[str], ok: str, true_cells: list) -> dict[str, Any]:
        return summarize(labels, self.predicted, self.verdicts, self.scores, ok, self.top_cells, true_cells)


def evaluate_line(line: MultiInspector, data: Dataset) -> dict[str, Any]:
    lead = line.inspectors[0]
    ok = lead.recipe.doc.ok_class
    combined = _Outcomes()
    own = {name: _Outcomes() for name in line.names}
    labels, true_cells, ms, disagreements = [], [], [], 0
    for sample in data.samples:
        image = read_image(sample.path)
        t0 = time.perf_counter()
        result = line.inspect(image)
        ms.append((time.perf_counter() - t0) * 1e3)
        labels.append(sample.label)
        true_cells.append(true_cell(lead, sample, result, image.shape[:2]))
        combined.add(result)
        for name, sub in result.engines.items():
            own[name].add(sub)
        disagreements += bool(result.disagreement)
    out = combined.summary(labels, ok, true_cells)
    engines = {}
    for name, inspector in line.by_name.items():
        recipe = inspector.recipe
        review, ng = recipe.thresholds
        engines[name] = {**own[name].summary(labels, ok, true_cells), "engine": recipe.doc.engine.name,
                         "recipe": str(recipe.path) if recipe.path else recipe.name,
                         "recipe_hash": recipe.content_hash, "thresholds": {"review": review, "ng": ng}}
    n = len(labels)
    out.update({
        "engine": "+".join(i.recipe.doc.engine.name for i in line.inspectors),
        "recipe": line.name,
        "recipe_hash": line.content_hash,
        "combine": line.rule,
        "thresholds": None,  # each engine has its own (under engines); the combined score is in NG-threshold units
        "fit_seconds": None,
        "ms_per_image_median": round(statistics.median(ms), 3) if ms else None,
        "ms_per_image_p95": round(float(np.percentile(ms, 95)), 3) if ms else None,
        "data": str(data.root),
        "disagreement_rate": disagreements / n if n else None,
        "n_disagreements": disagreements,
        "engines": engines,
    })
    return out
