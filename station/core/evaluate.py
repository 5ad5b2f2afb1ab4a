"""`station eval`: run a recipe over a labelled test set and compute the figures an engineer signs off on."""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import cv2
import numpy as np

from station.core.engines.base import ok_first
from station.core.dataset import Dataset
from station.core.errors import ImageError
from station.core.imageio import read_image
from station.core.inspector import Inspector
from station.core.masks import read_mask
from station.core.recipe import Recipe
from station.core.registration import cell_offsets
from station.core.training import mask_cell
from station.core.verdict import Verdict

log = logging.getLogger(__name__)


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


def ranked_auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """AUROC of many scores (pixels) by ranks, O(n log n); ties get their average rank."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=np.finfo(float).max,
                           posinf=np.finfo(float).max)
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.arange(1, scores.size + 1)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    if counts.max() > 1:
        mean_rank = first + (counts + 1) / 2.0
        ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pro_score(maps: list[np.ndarray], masks: list[np.ndarray], max_fpr: float = 0.3, steps: int = 200) -> float | None:
    """Per-region overlap (Bergmann et al. 2020): the area under the curve of the mean overlap of each
    connected defect region (each counts once, whatever its size) against the false positive rate on
    good pixels, up to `max_fpr`, divided by `max_fpr` (1.0 is perfect)."""
    regions = []
    for i, m in enumerate(masks):
        n, labels = cv2.connectedComponents(m.astype(np.uint8))
        regions.extend((i, labels == k) for k in range(1, n))
    normal = np.concatenate([mp[~m] for mp, m in zip(maps, masks)]) if maps else np.array([])
    if not regions or normal.size == 0:
        return None
    values = np.concatenate([mp.ravel() for mp in maps])
    thresholds = np.unique(np.quantile(values, np.linspace(0.0, 1.0, steps)))
    points = [(0.0, 0.0)]
    for t in np.append(thresholds, np.inf):
        points.append((float((normal >= t).mean()), float(np.mean([(maps[i][r] >= t).mean() for i, r in regions]))))
    points.sort()
    fpr, pro = np.array(points).T
    keep = fpr <= max_fpr
    end = float(np.interp(max_fpr, fpr, np.maximum.accumulate(pro)))
    fpr = np.append(fpr[keep], max_fpr)
    pro = np.append(np.maximum.accumulate(pro)[keep], end)
    return float(np.sum((fpr[1:] - fpr[:-1]) * (pro[1:] + pro[:-1]) / 2.0) / max_fpr)


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


def true_cell(inspector: Inspector, sample, result, shape: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The labelled defective cell of a sample: from the manifest, else from its mask after registration (the
    frame's `shape`, where given, is the mask's)."""
    if sample.cell is None and sample.mask is not None and result.registered is not None:
        return mask_cell(inspector.registrar, result.registered, sample.mask, shape)
    return sample.cell


def evaluate(recipe: Recipe, data: Dataset) -> dict[str, Any]:
    inspector = Inspector(recipe)
    ok = recipe.doc.ok_class
    labels, predicted, verdicts, scores, top_cells, true_cells, ms = [], [], [], [], [], [], []
    residuals, no_part = [], 0
    maps, masks = [], []  # pixel maps and ground truth in crop coordinates, where both exist
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
        true_cells.append(true_cell(inspector, sample, result, image.shape[:2]))
        truth = crop_mask(inspector, sample, result, ok, image.shape[:2])
        if truth is not None:
            maps.append(small(result.pixel_map))
            masks.append(small(truth.astype(np.float32)) >= 0.5)
        if result.registered is None:
            no_part += 1
        elif template is not None and sample.label == ok:
            residuals.append(np.hypot(*cell_offsets(result.registered.crop, template, recipe.grid).T))
    out = summarize(labels, predicted, verdicts, scores, ok, top_cells, true_cells)
    if any(m.any() for m in masks):
        out["pixel_auroc"] = ranked_auroc(np.concatenate([m.ravel() for m in maps]),
                                          np.concatenate([m.ravel() for m in masks]))
        out["pro"] = pro_score(maps, masks)
        out["n_pixel_maps"] = len(maps)
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


PIXEL_EVAL_SIDE = 128  # maps and masks are compared at most this many px a side (memory stays bounded)


def small(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    f = min(1.0, PIXEL_EVAL_SIDE / max(h, w))
    if f >= 1.0:
        return image.astype(np.float32)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def crop_mask(inspector: Inspector, sample, result, ok_class: str,
              shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The ground-truth mask in the crop's coordinates (all clear for a good part), where the engine gave
    a pixel map and the truth is known: a good sample, or a defect with its mask (brought to the frame's
    `shape` where given; one that cannot be read is left out with a warning)."""
    if result.pixel_map is None or result.registered is None:
        return None
    h, w = result.pixel_map.shape
    if sample.label == ok_class:
        return np.zeros((h, w), bool)
    if sample.mask is None:
        return None
    try:
        mask = read_mask(sample.mask, shape).astype(np.uint8) * 255
    except ImageError as exc:  # a broken mask loses one image's pixel figures, not the evaluation
        log.warning("mask left out: %s", exc)
        return None
    warped = inspector.registrar.warp(np.dstack([mask] * 3), result.registered.matrix)[:, :, 0]
    if warped.shape != (h, w):
        warped = cv2.resize(warped, (w, h), interpolation=cv2.INTER_NEAREST)
    return warped > 127


def _residual_summary(residuals: list[np.ndarray], no_part: int) -> dict[str, Any]:
    """How well registration holds: per-cell residual shift (px) of good parts against the template."""
    out: dict[str, Any] = {"part_not_found": no_part}
    if residuals:
        r = np.concatenate(residuals)
        out.update({"residual_px_p50": round(float(np.median(r)), 3), "residual_px_p95": round(float(np.percentile(r, 95)), 3),
                    "residual_px_max": round(float(r.max()), 3), "n_good_images": len(residuals)})
    return out
