"""Image AUROC of the free-form engines' parts on the real sets, alone and fused by the largest robust z.

For each set (dev split by default): the RT method per 8 x 8 patch, the texture model and the image MT (the
station's own engines, 128 px crop), and the per-pixel Gaussian baseline of scripts/real_bench.py, each
fitted on 80 % of the good training images; the other 20 % give each score's median and robust spread (log
scale). The fusions take the largest of the standardised image scores (rule max) or add those above zero
(rule sum), as the fused engine does per pixel. What docs/photographs.md says of which parts to fuse comes
from here.

    python scripts/engine_parts_trial.py [SET ...] [--final]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_bench import CACHE, KINDS, _resized, gauss_baseline  # noqa: E402

from station.core.dataset import load_dataset  # noqa: E402
from station.core.engines import TrainingSet, engine_class  # noqa: E402
from station.core.evaluate import ranked_auroc  # noqa: E402
from station.core.grid import CellGrid  # noqa: E402

GRID = CellGrid(16, 16, 8)
COMBOS = (("rt", "texture"), ("rt", "mt"), ("texture", "mt"), ("rt", "texture", "mt"), ("rt", "gauss"))


def _engine(name: str, config: dict):
    def scores(train: np.ndarray, *batches: np.ndarray) -> list[np.ndarray]:
        engine = engine_class(name)(GRID, config)
        engine.fit(TrainingSet(train, ["good"] * len(train), [None] * len(train), GRID))
        return [np.array([o.score for o in engine.infer_batch(b)]) for b in batches]
    return scores


def _gauss(train: np.ndarray, *batches: np.ndarray) -> list[np.ndarray]:
    return [gauss_baseline(train, b)[0].reshape(len(b), -1).max(axis=1) for b in batches]


PARTS = {"rt": _engine("rt", {"search_px": 0}), "texture": _engine("texture", {"levels": [1, 2]}),
         "mt": _engine("mt", {"blocks": 8}), "gauss": _gauss}


def trial(root: Path, seed: int = 0) -> dict[str, float]:
    train, test = load_dataset(root, "train"), load_dataset(root, "test")
    y = np.array([s.label != "good" for s in test.samples])
    goods = _resized([s.path for s in train.samples], grey=False)
    images = _resized([s.path for s in test.samples], grey=False)
    order = np.random.default_rng(seed).permutation(len(goods))
    n_held = max(10, len(goods) // 5)
    fit, held = goods[order[n_held:]], goods[order[:n_held]]
    z = {}
    for name, scores in PARTS.items():
        h, t = (np.log(np.maximum(s, 1e-12)) for s in scores(fit, held, images))
        centre = np.median(h)
        spread = np.median(np.abs(h - centre)) * 1.4826 + 1e-6
        z[name] = (t - centre) / spread
    out = {name: round(float(ranked_auroc(v, y)), 3) for name, v in z.items()}
    for combo in COMBOS:
        stacked = np.array([z[c] for c in combo])
        top = stacked.max(axis=0)
        out["+".join(combo) + " max"] = round(float(ranked_auroc(top, y)), 3)
        added = np.where(top > 0, np.maximum(stacked, 0).sum(axis=0), top)
        out["+".join(combo) + " sum"] = round(float(ranked_auroc(added, y)), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=list(KINDS))
    ap.add_argument("--final", action="store_true", help="the final split (default: dev)")
    args = ap.parse_args(argv)
    split = "final" if args.final else "dev"
    for name in args.sets:
        root = CACHE / name / split
        if not root.is_dir():
            raise SystemExit(f"engine_parts_trial: {root} is missing; run scripts/real_sets.py {name}")
        print(f"{name} ({split}): {trial(root)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
