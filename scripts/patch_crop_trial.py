"""The patch memory at several crop sizes on a real set's dev split: its image AUROC on the real test images
and its worst synthetic kind as the free-form choice would measure it (docs/photographs.md, "The crop").

    python scripts/patch_crop_trial.py SET [SET ...] [--sides 256,512] [--scales 3,4] [--split dev] [--no-real]

Each side is the crop's shorter side (8 cells of side/8 px). For the synthetic trial the choice's light memory
and candidates grow with the crop's area over a 256 px crop's as the choice has them (`--fixed-memory` keeps
the 256 px crop's). The real figure fits the default patch memory on every good training image. `--scales`
measures each side with descriptors of 3 scales (the default) and of 4 (1/8 too: 32 px) in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from station.core import freeform as ff
from station.core.dataset import load_dataset
from station.core.engines import TrainingSet, engine_class
from station.core.evaluate import auroc
from station.core.imageio import read_image

ROOT = Path.home() / ".cache" / "station" / "real-sets"


def trial(name: str, sides: list[int], split: str, real: bool, fixed_memory: bool,
          scale_counts: tuple[int, ...] = (3,)) -> list[dict]:
    root = ROOT / name / split
    goods = [read_image(s.path) for s in load_dataset(root, "train").samples]
    tests = load_dataset(root, "test").samples if real else []
    test = [read_image(s.path) for s in tests]
    good_test = np.array([s.label == "good" for s in tests], dtype=bool)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(goods))
    n_held = min(ff.CHOICE_HELD, len(goods) // 4)
    held, train, faulty = ff.trial_sets(goods, order, n_held, rng)
    base = ff.patch_grid(goods, 32)  # the choice's 256 px crop
    rows = []
    for side, scales in [(side, n) for side in sides for n in scale_counts]:
        grid = ff.patch_grid(goods, side // 8)
        config = ff._trial_config("patch", ff.candidate_configs()["patch"], base if fixed_memory else grid, base)
        config = {**config, "scales": scales}
        t0 = time.perf_counter()
        kinds = ff._trial("patch", config, grid, train, held, faulty, 0).auroc
        row = {"set": name, "side": side, "scales": scales, "crop": list(grid.size), "trial_memory": config["memory"],
               "synthetic": {ff.DEFECT_KINDS[k]: round(v, 3) for k, v in kinds.items()},
               "worst_kind": round(min(kinds.values()), 3), "trial_s": round(time.perf_counter() - t0, 1)}
        if real:
            crops = lambda ims: np.stack([cv2.resize(im, grid.size, interpolation=cv2.INTER_AREA)  # noqa: E731
                                          for im in ims])
            c = crops(goods)
            engine = engine_class("patch")(grid, {**engine_class("patch").default_config(), "scales": scales})
            t0 = time.perf_counter()
            engine.fit(TrainingSet(c, ["good"] * len(c), [None] * len(c), grid))
            row["fit_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            scores = np.array([o.score for o in engine.infer_batch(crops(test))])
            row["ms_per_image"] = round((time.perf_counter() - t0) / max(len(test), 1) * 1000, 1)
            row["image_auroc"] = round(float(auroc(scores[good_test], scores[~good_test])), 3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+")
    p.add_argument("--sides", default="256,512")
    p.add_argument("--scales", default="3", help="descriptor scales to measure, e.g. 3,4")
    p.add_argument("--split", default="dev", choices=["dev", "final"])
    p.add_argument("--no-real", action="store_true", help="the synthetic trial only")
    p.add_argument("--fixed-memory", action="store_true", help="the choice's light memory at every side")
    args = p.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    scale_counts = tuple(int(s) for s in args.scales.split(","))
    if any(n not in (3, 4) for n in scale_counts):
        p.error("--scales takes 3, 4 or both")
    if any(s % 64 or not 64 <= s <= 1024 for s in sides):
        p.error("each side must be a multiple of 64 px between 64 and 1024")
    for name in args.sets:
        if not (ROOT / name / args.split).is_dir():
            p.error(f"no set {name} under {ROOT} (build it with scripts/real_sets.py)")
        trial(name, sides, args.split, not args.no_real, args.fixed_memory, scale_counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
