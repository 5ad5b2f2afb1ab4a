"""How well the free-form choice's measure picks among its candidates, set by set: each candidate's synthetic
AUROC per kind (as `station train --data SET` measures it on held-out good images) beside its AUROC on the dev
split's real test images, scored by the very engine the choice fitted.

For each set the plan is made as `station train` makes it (the part turned back where it is, both ways where it
is only somewhat steadier); each candidate fitted in the choice's trial also scores the dev split's test images,
brought to the same frames (whole, or turned back by the same pose and template). Written to a JSON file, one
record per set and way; `--rules` then prints which candidate each rule of choice would take and its real AUROC
beside the best candidate's (docs/photographs.md, "The choice audited"), `--joined` what joining them would give.

    python scripts/choice_audit.py --out /tmp/audit.json [SET ...]
    python scripts/choice_audit.py --rules /tmp/audit.json
    python scripts/choice_audit.py --joined /tmp/audit.json

Each record keeps the candidate's scores (held-out good, each synthetic kind, the real test images), so `--joined`
reads whether joining candidates would beat the one chosen without fitting anything again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_bench import CACHE, KINDS  # noqa: E402

from station.core import freeform, freeform_plan  # noqa: E402
from station.core.dataset import load_dataset  # noqa: E402
from station.core.engines import TrainingSet, engine_class  # noqa: E402
from station.core.errors import RegistrationError  # noqa: E402
from station.core.evaluate import auroc  # noqa: E402
from station.core.imageio import to_gray  # noqa: E402
from station.core.pose import turned_back  # noqa: E402
from station.core.training import read_readable, read_training_images  # noqa: E402

log = logging.getLogger("choice_audit")
ORDER = ("rt", "fused", "patch", "patch_coarse", "patch_fine")


def _test_views(views: list[np.ndarray] | None, fit, tests: list[np.ndarray]) -> list:
    """The test frames as the choice's frames are: whole, or turned back by `fit` against the turned goods' mean
    (None where the part is not found: scored as the worst)."""
    if fit is None:
        return list(tests)
    size = (views[0].shape[1], views[0].shape[0])
    template = (np.mean([to_gray(v) for v in views], axis=0) / 255.0).astype(np.float32)
    out = []
    for t in tests:
        try:
            out.append(turned_back(t, fit, size, template))
        except RegistrationError:
            out.append(None)
    return out


def _floats(scores: np.ndarray) -> list[float]:
    return [float(f"{float(v):.6g}") for v in scores]


def audit(name: str) -> list[dict]:
    root = CACHE / name / "dev"
    data, goods_all, _ = read_training_images(load_dataset(root, "train"), whole_frames=True)
    goods = [im for im, s in zip(goods_all, data.samples) if s.label == "good"]
    test = load_dataset(root, "test").samples
    tests, kept, _ = read_readable([s.path for s in test], whole_frames=True)
    y = np.array([test[i].label != "good" for i in kept])
    records: list[dict] = []
    current: dict = {}

    original_trial, original_turned = freeform._trial, freeform_plan.turned_back_goods

    def turned_goods(frames):
        fit, views, info = original_turned(frames)
        current["pose"] = (fit, views)
        return fit, views, info

    def trial(engine_name, config, grid, train, held, faulty, seed):
        whole = any(train[0] is g for g in goods)
        key = "whole" if whole else "turned"
        if key not in current:
            fit, views = current["pose"] if not whole else (None, None)
            current[key] = _test_views(views, fit, tests)
        frames = current[key]
        crops = lambda ims: np.stack([cv2.resize(im, grid.size, interpolation=cv2.INTER_AREA) for im in ims])  # noqa: E731
        engine = engine_class(engine_name)(grid, config)
        engine.fit(TrainingSet(crops(train), ["good"] * len(train), [None] * len(train), grid), seed=seed)
        score = lambda ims: np.array([o.score for o in engine.infer_batch(crops(ims))])  # noqa: E731
        good = score(held)
        ok = [i for i, f in enumerate(frames) if f is not None]
        real = np.full(len(frames), np.inf)
        real[ok] = score([frames[i] for i in ok])
        real = np.nan_to_num(real, nan=np.inf, posinf=1e30)
        faulty_scores = {kind: score(ims) for kind, ims in faulty.items()}
        per_kind = {kind: float(auroc(good, s)) for kind, s in faulty_scores.items()}
        records.append({"set": name, "way": key, "engine": engine_name, "crop": list(grid.size), "held": len(held),
                        "kinds": {freeform.kind_name(k): round(v, 4) for k, v in per_kind.items()},
                        "real": round(float(auroc(real[~y], real[y])), 4),
                        # the scores themselves, so a rule that joins candidates can be read again offline
                        "scores": {"held": _floats(good), "real": _floats(real), "defective": [bool(v) for v in y],
                                   "kinds": {freeform.kind_name(k): _floats(s) for k, s in faulty_scores.items()}}})
        log.info("%s %s %s %s: %s real %.3f", name, key, engine_name, grid.size, records[-1]["kinds"],
                 records[-1]["real"])
        return freeform.Trial(per_kind, good, faulty_scores)

    freeform._trial, freeform_plan.turned_back_goods = trial, turned_goods
    try:
        plan = freeform_plan.plan_free_form(goods, seed=0)
    finally:
        freeform._trial, freeform_plan.turned_back_goods = original_trial, original_turned
    for r in records:
        r["chosen"] = plan.choice.get("candidate")
        r["region"] = plan.region_mode
    return records


def _station_ranking(rs: list[dict]) -> tuple[list, dict[int, float], dict[int, float]]:
    """The station's own rule on one set's candidates: (the informative kinds, each candidate's worst of them,
    its ranking): uninformative kinds left out, the worst of the rest, or the mean above chance where every
    candidate is blind to some kind."""
    per_kind = {i: r["kinds"] for i, r in enumerate(rs)}
    n = rs[0]["held"]
    kinds = freeform.informative_kinds(per_kind, {k: n for k in rs[0]["kinds"]}, n)
    worst = {i: min(v[k] for k in kinds) for i, v in per_kind.items()}
    _, ranking = freeform.choice_ranking(per_kind, kinds, {k: freeform.chance_auroc(n, n) for k in kinds}, worst)
    return kinds, worst, ranking


def rules(records: list[dict]) -> str:
    """Which candidate each rule takes, per set and way, and its real AUROC against the best candidate's."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        by.setdefault((r["set"], r["way"]), []).append(r)
    chance = freeform.chance_auroc(30, 30)

    def pick(rs, figure):
        best = rs[0]
        for r in rs[1:]:
            if figure(r) > figure(best) + freeform.CHOICE_MARGIN:
                best = r
        return best

    def station(rs):
        ranking = _station_ranking(rs)[2]
        return lambda r: ranking[rs.index(r)]

    measures = {
        "station's rule": None,
        "worst kind": lambda r: min(r["kinds"].values()),
        "mean of kinds": lambda r: float(np.mean(list(r["kinds"].values()))),
        "mean above chance": lambda r: float(np.mean([max(v - chance, 0) for v in r["kinds"].values()])),
        "worst two kinds' mean": lambda r: float(np.mean(sorted(r["kinds"].values())[:2])),
    }
    lines = ["| set, frames | best candidate (real) | " + " | ".join(measures) + " |",
             "|---|---|" + "---|" * len(measures)]
    totals = {m: [] for m in measures}
    for (name, way), rs in by.items():
        best = max(rs, key=lambda r: r["real"])
        cells = []
        for m, f in measures.items():
            p = pick(rs, f or station(rs))
            totals[m].append(p["real"] - best["real"])
            cells.append(f"{p['engine']} {p['crop'][0]}x{p['crop'][1]} {p['real']:.3f}")
        lines.append(f"| {name}, {way} | {best['engine']} {best['crop'][0]}x{best['crop'][1]} {best['real']:.3f} | "
                     + " | ".join(cells) + " |")
    lines.append("| mean shortfall from the best | | " + " | ".join(f"{np.mean(v):+.3f}" for v in totals.values())
                 + " |")
    return "\n".join(lines)


def _good_z(record: dict, scores) -> np.ndarray:
    """Scores as the choice reads them to join candidates: robust z against the candidate's held-out good scores,
    in log scale (freeform.good_z)."""
    return freeform.good_z(np.asarray(record["scores"]["held"], float), scores)


def _trial(record: dict) -> freeform.Trial:
    """A record's trial as the choice keeps it: AUROC, held-out good and faulty scores by kind."""
    return freeform.Trial(record["kinds"], np.asarray(record["scores"]["held"], float),
                          {k: np.asarray(v, float) for k, v in record["scores"]["kinds"].items()})


def joined(records: list[dict]) -> str:
    """Whether joining candidates beats the one the station's rule takes: each candidate's image scores as z
    against its held-out good ones, added (`sum`) or the largest taken (`max`), for the rule's pick with the
    next by the rule's ranking (`top two`) and for every candidate (`all`), and the top two added only where
    their synthetic worst kind beats the pick's by CHOICE_MARGIN; real AUROC on the dev split."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if "scores" in r:  # records written before the scores were kept cannot be joined
            by.setdefault((r["set"], r["way"]), []).append(r)
    ways = {"top two, sum": (2, np.sum), "top two, max": (2, np.max), "all, sum": (None, np.sum),
            "all, max": (None, np.max)}
    columns = [*ways, "top two, sum, where the kinds say so"]
    lines = ["| set, frames | the rule's pick | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    totals: dict[str, list[float]] = {"pick": [], **{w: [] for w in columns}}
    for (name, way), rs in by.items():
        kinds, worst, ranking = _station_ranking(rs)
        pick = 0
        for i in range(1, len(rs)):
            if ranking[i] > ranking[pick] + freeform.CHOICE_MARGIN:
                pick = i
        order = [pick] + sorted((i for i in range(len(rs)) if i != pick), key=lambda i: -ranking[i])
        y = np.array(rs[0]["scores"]["defective"], bool)
        cells = []
        totals["pick"].append(rs[pick]["real"])
        for label, (top, how) in ways.items():
            chosen = [rs[i] for i in order[:top]]
            real = how(np.array([_good_z(r, r["scores"]["real"]) for r in chosen]), axis=0)
            value = float(auroc(real[~y], real[y]))
            totals[label].append(value)
            cells.append(f"{value:.3f}")
        # the top two added, only where their synthetic worst kind beats the pick's by the choice's margin: the
        # trial, not the real defects, decides whether to join
        pair = [rs[i] for i in order[:2]]
        pair_worst = min(freeform.joined_auroc([_trial(r) for r in pair], kinds).values()) if kinds else 0.0
        join = len(pair) == 2 and pair_worst > worst[pick] + freeform.CHOICE_MARGIN
        real_pair = np.sum([_good_z(r, r["scores"]["real"]) for r in pair], axis=0)
        value = float(auroc(real_pair[~y], real_pair[y])) if join else rs[pick]["real"]
        totals["top two, sum, where the kinds say so"].append(value)
        cells.append(f"{value:.3f}" + (f" ({pair[1]['engine']} {pair[1]['crop'][0]}x{pair[1]['crop'][1]} joined, "
                                       f"worst kind {worst[pick]:.3f} -> {pair_worst:.3f})" if join else ""))
        lines.append(f"| {name}, {way} | {rs[pick]['engine']} {rs[pick]['crop'][0]}x{rs[pick]['crop'][1]} "
                     f"{rs[pick]['real']:.3f} | " + " | ".join(cells) + " |")
    if not by:
        return "no record with scores: write them again with --out"
    lines.append("| mean | " + " | ".join(f"{np.mean(v):.3f}" for v in totals.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=list(KINDS))
    ap.add_argument("--out", type=Path, help="JSON file the records are added to")
    ap.add_argument("--rules", type=Path, help="print the rules' picks from a JSON file written with --out")
    ap.add_argument("--joined", type=Path, help="print whether joining candidates beats the pick (a --out file)")
    args = ap.parse_args(argv)
    if args.rules:
        print(rules(json.loads(args.rules.read_text())))
        return 0
    if args.joined:
        print(joined(json.loads(args.joined.read_text())))
        return 0
    if not args.out:
        ap.error("--out or --rules")
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    for name in args.sets:
        records = [r for r in records if r["set"] != name] + audit(name)
        args.out.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
