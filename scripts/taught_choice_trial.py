"""How the free-form choice does with a few photographs of defective parts (`station train --defect-images`).

For each real set: the choice is made on the dev split's good training images, with N defect photographs
drawn (seeded) from the *final* split's test images, so that none of them is among the images it is then
judged on; each candidate, as fitted in the choice's own trial, is then scored on the dev split's test
images. Printed per set: the engine chosen with the photographs as one more kind (the station's rule), the
engine the photographs alone would choose, the one synthetic defects alone choose, and each candidate's
AUROC on the real dev defects.

    python scripts/taught_choice_trial.py [--n 5] [SET ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_bench import CACHE, KINDS  # noqa: E402

from station.core import freeform  # noqa: E402
from station.core.dataset import load_dataset  # noqa: E402
from station.core.engines import TrainingSet, engine_class  # noqa: E402
from station.core.evaluate import auroc  # noqa: E402
from station.core.imageio import read_image  # noqa: E402

ORDER = ("rt", "fused", "patch", "patch_coarse", "patch_fine")  # the choice's order: the simpler first on a tie


def trial(name: str, n: int) -> str:
    goods = [read_image(s.path) for s in load_dataset(CACHE / name / "dev", "train").samples]
    bad = [s for s in load_dataset(CACHE / name / "final", "test").samples if s.label != "good"]
    defects = [read_image(bad[i].path) for i in np.random.default_rng(0).permutation(len(bad))[:n]]
    test = load_dataset(CACHE / name / "dev", "test").samples
    y = np.array([s.label != "good" for s in test])
    test_images = [read_image(s.path) for s in test]
    real: dict[str, float] = {}

    def scored(engine_name, config, grid, train, held, faulty, seed):  # the choice's trial, also on the dev test
        crops = lambda ims: np.stack([cv2.resize(im, grid.size, interpolation=cv2.INTER_AREA) for im in ims])  # noqa: E731
        engine = engine_class(engine_name)(grid, config)
        engine.fit(TrainingSet(crops(train), ["good"] * len(train), [None] * len(train), grid), seed=seed)
        score = lambda ims: np.array([o.score for o in engine.infer_batch(crops(ims))])  # noqa: E731
        good = score(held)
        t = score(test_images)
        real[f"{engine_name} {grid.size[0]}x{grid.size[1]}"] = round(float(auroc(t[~y], t[y])), 3)
        found = {kind: score(ims) for kind, ims in faulty.items()}
        return freeform.Trial({kind: float(auroc(good, s)) for kind, s in found.items()}, good, found)

    original = freeform._trial
    freeform._trial = scored
    try:
        engine, _, _, info = freeform.choose_free_form(goods, seed=0, defects=defects)
    finally:
        freeform._trial = original
    pick = lambda s: max(s, key=lambda k: (s[k], -ORDER.index(k)))  # noqa: E731
    return (f"{name}: N={len(defects)} chosen {engine} {info['worst_kind_auroc']} | photographs alone "
            f"{pick(info['taught_auroc'])} {info['taught_auroc']} | synthetic alone {pick(info['synthetic_auroc'])} "
            f"{info['synthetic_auroc']} | real dev AUROC {real}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=list(KINDS))
    ap.add_argument("--n", type=int, default=5, help="defect photographs given to the choice")
    args = ap.parse_args(argv)
    for name in args.sets:
        print(trial(name, args.n), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
