"""`station eval`: run a recipe over a labelled test set and compute the figures an engineer signs off on."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from station.core.engines.base import ok_first
from station.core.dataset import Dataset
from station.core.imageio import read_image
from station.core.inspector import Inspector
from station.core.recipe import Recipe
from station.core.registration import cell_offsets
from station.core.training import mask_cell
from station.core.verdict import Verdict


def auroc(good_scores, defect_scores) -> float | None:
    """Area under the ROC curve (defect scores above good ones), by the Mann-Whitney rank sum; ties count half."""
    g = np.asarray(good_scores, dtype=float)
    d = np.asarray(defect_scores, dtype=float)
    if g.size == 0 or d.size == 0:
        return None
    g = np.nan_to_num(g, nan=np.inf, posinf=np.finfo(float).max)
    d = np.nan_to_num(d, nan=np.inf, posinf=np.finfo(float).max)
    greater = (d[:, None] > g[None, :]).sum()
    ties = (d[:, None] == g[None, :]).sum()
    return float((greater + 0.5 * ties) / (g.size * d.size))


def summarize(labels: list[str], predicted: list[str], verdicts: list[Verdict], scores: list[float],
              ok_class: str, top_cells: list, true_cells: list) -> dict[str, Any]:
    """Image-level metrics from per-image outcomes; shared by `station eval` and the threshold tuner."""
    n = len(labels)
    classes = ok_first(labels, ok_class)
    is_good = np.array([lab == ok_class for lab in labels])
    score_arr = np.array(scores, dtype=float)
    hits = {c: 0 for c in classes}
    confusion: dict[str, dict[str, int]] = {c: {} for c in classes}
    for lab, pred in zip(labels, predicted):
        confusion[lab][pred] = confusion[lab].get(pred, 0) + 1
        # an anomaly engine says "defect": that counts as recall for every defect class
        if pred == lab or (lab != ok_class and pred == "defect"):
            hits[lab] += 1
    counts = {c: labels.count(c) for c in classes}
    escapes = sum(1 for lab, v in zip(labels, verdicts) if lab != ok_class and v is Verdict.OK)
    false_rejects = sum(1 for lab, v in zip(labels, verdicts) if lab == ok_class and v is not Verdict.OK)
    reviews = sum(1 for v in verdicts if v is Verdict.REVIEW)
    n_defect, n_good = int((~is_good).sum()), int(is_good.sum())
    localized = [tc == cc for tc, cc, lab in zip(top_cells, true_cells, labels) if lab != ok_class and cc is not None]
    return {
        "auroc": auroc(score_arr[is_good], score_arr[~is_good]),
        "accuracy": sum(hits.values()) / n if n else None,
        "per_class_recall": {c: hits[c] / counts[c] for c in classes},
        "confusion": confusion,
        "escape_rate": escapes / n_defect if n_defect else None,
        "false_reject_rate": false_rejects / n_good if n_good else None,
        "review_rate": reviews / n if n else None,
        "cell_localization": sum(localized) / len(localized) if localized else None,
        "n_cell_labels": len(localized),
        "n_images": n,
        "counts": counts,
    }


def true_cell(inspector: Inspector, sample, result) -> tuple[int, int] | None:
    """The labelled defective cell of a sample: from the manifest, else from its mask after registration."""
    if sample.cell is None and sample.mask is not None and result.registered is not None:
        return mask_cell(inspector.registrar, result.registered, sample.mask)
    return sample.cell


def evaluate(recipe: Recipe, data: Dataset) -> dict[str, Any]:
    inspector = Inspector(recipe)
    ok = recipe.doc.ok_class
    labels, predicted, verdicts, scores, top_cells, true_cells, ms = [], [], [], [], [], [], []
    residuals, no_part = [], 0
    template = recipe.region.crop_template
    for sample in data.samples:
        image = read_image(sample.path)
        t0 = time.perf_counter()
        result = inspector.inspect(image)
        ms.append((time.perf_counter() - t0) * 1e3)
        labels.append(sample.label)
        predicted.append(result.label if result.verdict is not Verdict.REVIEW else "review")
        verdicts.append(result.verdict)
        scores.append(result.score)
        top_cells.append(result.top_cell)
        true_cells.append(true_cell(inspector, sample, result))
        if result.registered is None:
            no_part += 1
        elif template is not None and sample.label == ok:
            residuals.append(np.hypot(*cell_offsets(result.registered.crop, template, recipe.grid).T))
    out = summarize(labels, predicted, verdicts, scores, ok, top_cells, true_cells)
    review, ng = recipe.thresholds
    out.update({
        "engine": recipe.doc.engine.name,
        "recipe": recipe.name,
        "recipe_hash": recipe.content_hash,
        "thresholds": {"review": review, "ng": ng},
        "fit_seconds": recipe.doc.provenance.get("fit_seconds"),
        "ms_per_image_median": round(statistics.median(ms), 3) if ms else None,
        "ms_per_image_p95": round(float(np.percentile(ms, 95)), 3) if ms else None,
        "data": str(data.root),
        "registration": _residual_summary(residuals, no_part),
    })
    return out


def _residual_summary(residuals: list[np.ndarray], no_part: int) -> dict[str, Any]:
    """How well registration holds: per-cell residual shift (px) of good parts against the template."""
    out: dict[str, Any] = {"part_not_found": no_part}
    if residuals:
        r = np.concatenate(residuals)
        out.update({"residual_px_p50": round(float(np.median(r)), 3), "residual_px_p95": round(float(np.percentile(r, 95)), 3),
                    "residual_px_max": round(float(r.max()), 3), "n_good_images": len(residuals)})
    return out
