"""How many good parts a free-form recipe rejects when the lamp drifts a little.

For each photographed set of scripts/real_sets.py (development split): the RT, fused or patch engine as
`station train` sets it up for a free-form product is fitted on most of the good images (training and test
goods together), its NG threshold calibrated as in training, and the rest of the good images are scored as
they are, 3 % and 6 % darker, and 2 grey levels darker or brighter (with --keep-saturated, pixels at 255 stay
there: an overexposed area whose light is far over the sensor's range stays white when the lamp dims a
little). A drift that small is not a defect; the share judged NG should stay where it is as they are.
Compared for each `--shrink` (each RT cell's covariance drawn toward the mean cell's, `shrink` in the RT
settings; 0 is the unit space of each cell alone; the patch engine has no RT cell and ignores it).

    python scripts/lamp_drift.py bottle tire --shrink 0 0.2
    python scripts/lamp_drift.py bottle --engine fused
    python scripts/lamp_drift.py tire deeppcb --engine patch --shrink 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from station.core.engines import TrainingSet, engine_class
from station.core.freeform import RT_SHRINK, candidate_configs, patch_grid, rt_grid
from station.core.imageio import is_image_file, read_image

CACHE = Path.home() / ".cache" / "station" / "real-sets"
DRIFTS = {"as is": lambda a: a, "3 % darker": lambda a: a * 0.97, "6 % darker": lambda a: a * 0.94,
          "2 levels darker": lambda a: a - 2, "2 levels brighter": lambda a: a + 2}


def ng_shares(root: Path, engine_name: str, shrink: float, keep_saturated: bool = False,
              seed: int = 1) -> dict[str, float]:
    paths = sorted(p for sub in ("train/good", "test/good") for p in (root / sub).glob("*") if is_image_file(p))
    if len(paths) < 20:
        raise SystemExit(f"{root}: {len(paths)} good images, at least 20 are needed")
    goods = [read_image(p) for p in paths]
    grid = patch_grid(goods) if engine_name == "patch" else rt_grid(goods)
    crops = np.stack([cv2.resize(im, grid.size, interpolation=cv2.INTER_AREA) for im in goods])
    order = np.random.default_rng(seed).permutation(len(crops))
    n_held = max(20, len(crops) // 5)
    held, fit = crops[order[:n_held]], crops[order[n_held:]]
    config = candidate_configs()[engine_name]
    parts = [p["config"] for p in config.get("parts", []) if p["engine"] == "rt"]
    for rt in [config] if engine_name == "rt" else parts:
        rt["shrink"] = shrink
    engine = engine_class(engine_name)(grid, config)
    ng = engine.fit(TrainingSet(fit, ["good"] * len(fit), [None] * len(fit), grid), seed=0).thresholds[1]
    shares = {}
    dither = np.random.default_rng(seed + 1).uniform(-0.5, 0.5, held.shape)
    for name, drift in DRIFTS.items():
        # the light changes before the camera rounds it to a level, and its noise dithers the rounding: scaling
        # the stored levels and rounding alone would merge neighbouring levels, a histogram no camera gives
        drifted = np.clip(np.rint(drift(held.astype(np.float32)) + (dither if name != "as is" else 0)), 0, 255)
        drifted = drifted.astype(np.uint8)
        if keep_saturated:  # a region far over the sensor's range stays at 255 however the lamp drifts
            drifted[held == 255] = 255
        shares[name] = float(np.mean([o.score >= ng for o in engine.infer_batch(drifted)]))
    return shares


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--shrink", type=float, nargs="+", default=[0.0, RT_SHRINK])
    ap.add_argument("--engine", choices=["rt", "fused", "patch"], default="rt", help="the free-form engine, as chosen")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--keep-saturated", action="store_true", help="pixels at 255 stay there (overexposed areas)")
    args = ap.parse_args(argv)
    print("| set | engine | shrink | " + " | ".join(f"NG share, {d}" for d in DRIFTS) + " |")
    print("|---|---|---|" + "---|" * len(DRIFTS))
    for name in args.sets:
        for shrink in args.shrink:
            shares = ng_shares(args.cache / name / "dev", args.engine, shrink, args.keep_saturated)
            cells = " | ".join(f"{v:.2f}" for v in shares.values())
            print(f"| {name} | {args.engine} | {shrink:g} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
