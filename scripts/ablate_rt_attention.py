"""Ablations of the RT-attention engine (docs/rt-attention-ablations.md): each variant is fitted on the
same registered training crops and scored on the same registered test crops, so only the engine
differs. Prints a Markdown table and, with --json, the raw figures.

    .venv/bin/python scripts/ablate_rt_attention.py --max-per-class 20 [--data resources/demo]

--seeds N repeats everything over the samples of N seeds: which 20 images are drawn moves a single
figure by several points, so defaults are chosen on the mean.

--proxy-test scores on the training images the seeded sample leaves out, instead of DATA/test
(for when the test split is not there); --write-proxy DIR also writes them as DIR/test (symlinks
and a manifest) beside DIR/train, so `station eval --data DIR` sees the same split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from station.core.dataset import Dataset, load_dataset
from station.core.engines import engine_class
from station.core.evaluate import summarize
from station.core.grid import CellGrid
from station.core.imageio import read_image
from station.core.inspector import top_cell
from station.core.registration import Registrar, fit_region
from station.core.teach import fit_pattern_region
from station.core.training import labelled_images, teach_for
from station.core.training import register_samples
from station.core.verdict import Verdict, decide

VARIANTS = [  # (axis, label, config overrides of the default)
    ("default", "default", {}),
    ("metrics", "SOART (Y1, Y2, Y3) instead of RT (Y1, Y2)", {"metrics": "soart"}),
    ("unit spaces", "one unit space (good standard only)", {"unit_spaces": "one"}),
    ("queries", "good-type queries (several unit spaces in the keys only)", {"queries": "good"}),
    *[("temperature", f"tau = {t}", {"temperature": t}) for t in (0.1, 0.3, 3.0, 10.0)],
    ("similarity", "plain dot product q.k", {"similarity": "dot"}),
    ("balance", "no class balance (prior = share of reference cells)", {"balance": False}),
    ("context", "the cell with the cells above and below", {"context": "column"}),
    ("context", "column, zero beyond the grid", {"context": "column", "edge": "zero"}),
    ("context", "3x3 neighbours", {"context": "neighbours"}),
    ("good keys", "good reference cells of every position", {"good_keys": "all"}),
    ("parts", "2x1 blocks per cell", {"parts": [2, 1]}),
    ("parts", "3x1 blocks per cell", {"parts": [3, 1]}),
    ("localize", "cells' odds from the configured (all-mode) queries", {"localize": "all"}),
    ("mode cells", "mode standards from the context cell of largest RT distance", {"mode_cells": "evidence"}),
    ("score", "attention log-odds as the verdict score", {"score": "attention"}),
    ("search", "no local search (search_px 0)", {"search_px": 0}),
    ("detect", "score and top cell from the tokens (the previous default)", {"detect": "tokens"}),
    ("detect", "block RT distance alone (no searched-cell term)", {"detect": "blocks"}),
    ("detect", "2x2 detector blocks", {"detect_parts": [2, 2]}),
    ("mode standard", "kin-weighted mean of the defect cells (the previous default)", {"mode_standard": "mean"}),
    ("queries", "mode-standard queries only (no good block)", {"queries": "modes"}),
    ("previous default", "detect tokens, mode standard mean", {"detect": "tokens", "mode_standard": "mean"}),
    ("displacement head", "off: the RT-token head alone (the second round's default)", {"shift_px": 0}),
    ("displacement head", "alone (rt_head_weight 0)", {"rt_head_weight": 0.0}),
    ("displacement head", "RT head weight 0.3", {"rt_head_weight": 0.3}),
    ("displacement head", "RT head weight 1.0 (the two heads equal)", {"rt_head_weight": 1.0}),
    ("displacement head", "bandwidth 1.5 px, correlation 0.1", {"shift_scale": [1.5, 0.1]}),
    ("displacement head", "bandwidth 2.0 px, correlation 0.1", {"shift_scale": [2.0, 0.1]}),
    ("displacement head", "correlation bandwidth 0.05", {"shift_scale": [1.0, 0.05]}),
    ("displacement head", "search 8 px", {"shift_px": 8}),
    ("displacement head", "search 8 px, RT head weight 0.3", {"shift_px": 8, "rt_head_weight": 0.3}),
    ("displacement head", "bandwidth 0.7 px, correlation 0.1", {"shift_scale": [0.7, 0.1]}),
    ("displacement head", "RT head weight 0.05", {"rt_head_weight": 0.05}),
    ("displacement head", "RT head weight 0.2", {"rt_head_weight": 0.2}),
    *[("odds weight", f"verdict score D^2 * exp({w} * odds)", {"odds_weight": w}) for w in (0.0, 0.25, 0.5, 1.0, 2.0)],
    ("displacement head", "correlation bandwidth 0.1 (the fourth round's)", {"shift_scale": [1.0, 0.1]}),
    ("displacement head", "bandwidth per class (Silverman)", {"shift_bandwidth": "adaptive"}),
    ("displacement head", "search inside the crop only at its border", {"shift_edge": "inside"}),
    ("displacement head", "inside the crop, bandwidth 0.7 px, correlation 0.3", {"shift_edge": "inside", "shift_scale": [0.7, 0.3]}),
    ("join", "product of the heads, RT head weight 0.1 (the fourth round's)", {"join": "product"}),
    ("join", "product, correlation bandwidth 0.1", {"join": "product", "shift_scale": [1.0, 0.1]}),
    # the fifth round's head, (dx, dy, r) with a fixed kernel, and what this round added to it, one by one
    *[("token", label, {"shift_token": t, "shift_bandwidth": b, "shift_density": d, "shift_pooled_bw": w})
      for label, t, b, d, w in (
          ("(dx, dy, r), fixed bandwidth, kernel (the fifth round's)", "displacement", "fixed", "kernel", 0.3),
          ("(dx, dy, r), pooled bandwidth 0.3", "displacement", "pooled", "kernel", 0.3),
          ("(dx, dy, r), pooled bandwidth 0.3, kernel + Gaussian", "displacement", "pooled", "kernel+gauss", 0.3),
          ("contrast token, fixed bandwidth, kernel", "contrast", "fixed", "kernel", 0.3),
          ("contrast token, pooled bandwidth 0.3, kernel", "contrast", "pooled", "kernel", 0.3),
          ("contrast token, pooled bandwidth 0.2, kernel + Gaussian", "contrast", "pooled", "kernel+gauss", 0.2),
          ("contrast token, pooled bandwidth 0.3, kernel + Gaussian (today's)", "contrast", "pooled", "kernel+gauss", 0.3),
          ("contrast token, pooled bandwidth 0.5, kernel + Gaussian", "contrast", "pooled", "kernel+gauss", 0.5))],
    ("chroma", "contrast token, no chroma channel (before)", {"shift_token": "contrast"}),
    ("chroma", "contrast token and the chroma channel's (dx, dy, r)", {"shift_token": "contrast+chroma"}),
    ("chroma", "the same, pooled bandwidth 0.5", {"shift_token": "contrast+chroma", "shift_pooled_bw": 0.5}),
    ("review", "REVIEW just above the highest held-out good score (review_z 0, the fifth round's)", {"review_z": 0.0}),
    *[("review", f"REVIEW from a log-normal tail of the good scores, z = {z}", {"review_z": z}) for z in (2.0, 2.58, 3.09)],
    ("join, sixth round", "product of the heads, RT head weight 0 (the displacement head alone)", {"join": "product", "rt_head_weight": 0.0}),
    ("join, sixth round", "product of the heads, RT head weight 0.1", {"join": "product", "rt_head_weight": 0.1}),
    ("join, sixth round", "product of the heads, RT head weight 0.3", {"join": "product", "rt_head_weight": 0.3}),
    ("join, sixth round", "product of the heads, RT head weight 1.0", {"join": "product", "rt_head_weight": 1.0}),
    # the seventh round: the token's (dx, dy, r) from the better matching channel, grey or chroma, and the
    # contrast changes at a wider bandwidth; each step taken back one at a time
    ("seventh round", "the sixth round's defaults (chroma (dx, dy, r) beside grey, confusion join, contrast bw 0.3)",
     {"shift_token": "contrast+chroma", "join": "confusion", "shift_contrast_bw": None}),
    ("seventh round", "better channel, confusion join, contrast bw 0.3", {"join": "confusion", "shift_contrast_bw": None}),
    ("seventh round", "better channel, confusion join", {"join": "confusion"}),
    ("seventh round", "better channel, contrast bw 0.3 (as the rest)", {"shift_contrast_bw": None}),
    ("seventh round", "chroma (dx, dy, r) beside grey (the sixth round's token)", {"shift_token": "contrast+chroma"}),
    *[("seventh round", f"contrast bw {w}", {"shift_contrast_bw": w}) for w in (0.45, 0.9)],
    *[("seventh round", f"RT head weight {w}", {"rt_head_weight": w}) for w in (0.0, 0.3)],
    # the eighth round: NG where the classes' tails meet, the pin where the heads find the defect; each taken back
    ("eighth round", "NG halfway between the extremes (ng_placement midpoint, before)", {"ng_placement": "midpoint"}),
    ("eighth round", "the pin at the most distant cell (top_cells 1, before)", {"top_cells": 1}),
    ("eighth round", "the heads read at the three most distant cells", {"top_cells": 3}),
    ("previous default", "the fourth round's defaults", {"join": "product", "shift_scale": [1.0, 0.1],
                                                          "odds_weight": 0.0}),
]


def registered(data, registrar):
    return register_samples(registrar, data.samples, [read_image(s.path) for s in data.samples])


def run(train, test, grid, config, seed):
    engine = engine_class("rt-attention")(grid, config)
    t0 = time.perf_counter()
    report = engine.fit(train, seed=seed)
    fit_s = time.perf_counter() - t0
    review, ng = report.thresholds
    labels, predicted, verdicts, scores, top_cells, ms = [], [], [], [], [], []
    for crop, label in zip(test.crops, test.labels):
        t = time.perf_counter()
        out = engine.infer(crop)
        ms.append((time.perf_counter() - t) * 1e3)
        verdict = decide(out.score, review, ng)
        if verdict is Verdict.OK:
            pred = train.ok_class
        elif out.class_probs:
            defects = {k: v for k, v in out.class_probs.items() if k != train.ok_class}
            pred = max(defects, key=defects.get) if defects else "defect"
        else:
            pred = "defect"
        labels.append(label)
        predicted.append(pred if verdict is not Verdict.REVIEW else "review")
        verdicts.append(verdict)
        scores.append(out.score)
        top_cells.append(top_cell(out))  # the pin the engine names, as the station takes it
    result = summarize(labels, predicted, verdicts, scores, train.ok_class, top_cells, test.cells)
    result.update({"engine_fit_s": fit_s, "engine_ms_median": statistics.median(ms), "info": report.info})
    return result


def proxy_split(full, picked, out: Path | None):
    """The training images that the seeded sample does not use, as a test split."""
    rest = [s for s in full.samples if s not in set(picked.samples)]
    if out is not None:
        (out / "test").mkdir(parents=True, exist_ok=True)
        if not (out / "train").exists():
            (out / "train").symlink_to(Path(full.root).resolve())
        items = []
        for s in rest:
            rel = f"{s.label}/{s.path.name}"
            (out / "test" / s.label).mkdir(exist_ok=True)
            link = out / "test" / rel
            if not link.exists():
                link.symlink_to(s.path.resolve())
            items.append({"file": rel, "class": s.label, "cell": list(s.cell) if s.cell else None})
        (out / "test" / "manifest.json").write_text(json.dumps({"schema": 1, "images": items}))
    return Dataset(full.root, full.layout, rest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="resources/demo")
    p.add_argument("--max-per-class", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat over the samples of seeds SEED..SEED+N-1 and report mean, spread and worst")
    p.add_argument("--json", help="write the raw figures here")
    p.add_argument("--base", default="{}", help="settings (JSON) every variant starts from, e.g. a candidate default")
    p.add_argument("--axis", action="append", help="run only the variants of this axis (repeatable); "
                   "the default is always run")
    p.add_argument("--proxy-test", action="store_true", help="test on the training images the sample leaves out")
    p.add_argument("--write-proxy", type=Path, help="with --proxy-test: also write that split as DIR/test")
    p.add_argument("--region", choices=("pattern", "blob"), default="pattern",
                   help="registration: the proposed setup's pattern (as station train) or the largest blob")
    args = p.parse_args(argv)
    if args.write_proxy and args.seeds > 1:
        p.error("--write-proxy writes the proxy split of one sample; use it without --seeds")
    grid = CellGrid(3, 9)
    full = load_dataset(args.data, "train")
    variants = [(g, label, {**json.loads(args.base), **o}) for g, label, o in VARIANTS
                if not args.axis or g in args.axis or g == "default"]
    results: dict[str, list[dict]] = {label: [] for _, label, _ in variants}
    for seed in range(args.seed, args.seed + args.seeds):
        train_data = full.sample_per_class(args.max_per_class, seed)
        test_data = proxy_split(full, train_data, args.write_proxy) if args.proxy_test \
            else load_dataset(args.data, "test")
        good_images = [read_image(s.path) for s in train_data.samples if s.label == "good"]
        if args.region == "blob":
            registrar = Registrar(fit_region(good_images, grid), grid)
        else:  # what `station train` does without a taught setup
            setup = teach_for(train_data, good_images, (grid.cols, grid.rows),
                              labelled=labelled_images(train_data, seed=seed))
            grid = setup.grid
            registrar = Registrar(fit_pattern_region(good_images, setup), grid)
        train, test = registered(train_data, registrar), registered(test_data, registrar)
        print(f"seed {seed}: train {train_data.counts()}  test {test_data.counts()}", file=sys.stderr)
        for _, label, config in variants:
            results[label].append(run(train, test, grid, config, seed))
            if args.seeds > 1:
                print(f"  seed {seed} {label}: accuracy {results[label][-1]['accuracy']:.3f}", file=sys.stderr,
                      flush=True)

    def f(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    if args.seeds == 1:
        print("| axis | variant | accuracy | cell localization | AUROC | escape | false reject | review | "
              "held-out acc. (fit) | engine fit s | engine ms/img |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print(f"| axis | variant | accuracy, mean of {args.seeds} samples | sd | worst | cell localization, "
              "mean | worst | escape, mean | false reject, mean | review, mean |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    raw = {}
    for group, label, config in variants:
        rs = results[label]
        raw[label] = {"config": config, "runs": rs}
        if args.seeds == 1:
            r = rs[0]
            line = (f"| {group} | {label} | {f(r['accuracy'])} | {f(r['cell_localization'])} | {f(r['auroc'])} | "
                    f"{f(r['escape_rate'])} | {f(r['false_reject_rate'])} | {f(r['review_rate'])} | "
                    f"{f(r['info'].get('held_out_accuracy'))} | {r['engine_fit_s']:.2f} | {r['engine_ms_median']:.2f} |")
        else:
            acc = np.array([r["accuracy"] for r in rs])
            loc = np.array([r["cell_localization"] for r in rs])

            def mean(key):
                return f(float(np.mean([r[key] for r in rs])))

            line = (f"| {group} | {label} | {acc.mean():.3f} | {acc.std(ddof=1):.3f} | {acc.min():.3f} | "
                    f"{loc.mean():.3f} | {loc.min():.3f} | {mean('escape_rate')} | {mean('false_reject_rate')} | "
                    f"{mean('review_rate')} |")
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
