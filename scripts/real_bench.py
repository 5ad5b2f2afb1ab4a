"""Benchmark the station on the photographed sets of scripts/real_sets.py, beside two classic baselines.

For each set: the station as a new user runs it (`station train --data SET/train-split --out R` with no other
option, then `station eval --recipe R --data SET --json`), and two baselines computed here on the same split:

  gauss  per-pixel Gaussian of the image resized to 128 x 128 (mean and standard deviation of each pixel and
         channel over the good training images); the map is the squared z-score summed over channels,
         smoothed (sigma 2 px); the image score is its maximum.
  rt8    Taguchi's RT method per 8 x 8 patch: the grey image resized to 128 x 128, one unit space per patch
         position (16 x 16 positions; station.core.engines.rt, SOART metrics); the image score is the largest RT
         distance, the map the patch distances.

Writes a markdown table (image AUROC, pixel AUROC where masks exist, fit time, ms per image) to
docs/photographs.md and the raw figures to a JSON file beside it.

    python scripts/real_bench.py --dev            # development split
    python scripts/real_bench.py                  # the final split, once
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from station.core.dataset import load_dataset
from station.core.evaluate import auroc, ranked_auroc
from station.core.imageio import read_image, to_gray
from station.core.recipe import Recipe
from station.core.engines.rt import UnitSpace, cell_vectors, scale_pixels

log = logging.getLogger("real_bench")
CACHE = Path.home() / ".cache" / "station" / "real-sets"
SIDE = 128
KINDS = {"bottle": "object, 900 x 900", "magnetic-tile": "texture, tiles of varying size",
         "deeppcb": "PCB tracks, 640 x 640", "kolektorsdd": "commutator surface, grey, 500 x ~1250",
         "elpv-poly": "texture, polycrystalline solar cells (EL), grey, 300 x 300",
         "elpv-mono": "aligned pattern, monocrystalline solar cells (EL), grey, 300 x 300",
         "tire": "object, a tyre's tread from above, 800 x 600",
         "bottle-turned": "object turned at random, 900 x 900",
         "screw": "object lying at any angle, grey, 1024 x 1024, no masks",
         "metal-plate": "object hanging at any angle, 512 x 512",
         "casting": "round cast impeller at any angle, grey, 300 x 300, no masks",
         "transistor": "object on a board, colour, 1024 x 1024, a part missing or misplaced among the defects",
         "lenses": "transparent lens on a stage, 2448 x 2048 and 2048 x 1713, small defects",
         "wood": "texture in colour, wood boards with grain and knots, 256 x 256",
         "fabric": "texture, woven fabric (line-scan tiles), grey, 256 x 256, small defects"}


def _resized(paths: list[Path], grey: bool) -> np.ndarray:
    out = []
    for p in paths:
        im = cv2.resize(read_image(p), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        out.append(to_gray(im) if grey else im)
    return np.stack(out)


def _masks(samples) -> list[np.ndarray | None]:
    out = []
    for s in samples:
        if s.label == "good":
            out.append(np.zeros((SIDE, SIDE), bool))
        elif s.mask is not None:
            m = read_image(s.mask)[:, :, 0]
            out.append(cv2.resize(m, (SIDE, SIDE), interpolation=cv2.INTER_AREA) > 127)
        else:
            out.append(None)
    return out


def gauss_baseline(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    x = train.astype(np.float32)
    mean, std = x.mean(axis=0), x.std(axis=0) + 2.0  # +2 grey levels: a pixel that never varies is not infinite
    z2 = (((test.astype(np.float32) - mean) / std) ** 2).sum(axis=-1)
    return np.stack([cv2.GaussianBlur(m, (0, 0), 2.0) for m in z2]), 0.0


def rt8_baseline(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    cells = SIDE // 8
    space = UnitSpace.fit(cell_vectors(scale_pixels(train), cells, cells), "soart")
    d2 = space.distance(cell_vectors(scale_pixels(test), cells, cells)).reshape(-1, cells, cells)
    return np.stack([cv2.resize(m.astype(np.float32), (SIDE, SIDE), interpolation=cv2.INTER_NEAREST) for m in d2]), 0.0


def baselines(root: Path) -> dict[str, dict]:
    train = load_dataset(root, "train")
    test = load_dataset(root, "test")
    labels = np.array([s.label == "good" for s in test.samples])
    masks = _masks(test.samples)
    out = {}
    for name, fn, grey in (("gauss", gauss_baseline, False), ("rt8", rt8_baseline, True)):
        t0 = time.perf_counter()
        tr = _resized([s.path for s in train.samples], grey)
        t_fit0 = time.perf_counter()
        maps, _ = fn(tr, tr[:1])
        fit = time.perf_counter() - t_fit0
        t1 = time.perf_counter()
        te = _resized([s.path for s in test.samples], grey)
        maps, _ = fn(tr, te)
        ms = (time.perf_counter() - t1) / len(te) * 1e3
        scores = maps.reshape(len(maps), -1).max(axis=1)
        keep = [i for i, m in enumerate(masks) if m is not None]
        pix = outside = None
        if any(masks[i].any() for i in keep):
            pix = ranked_auroc(np.concatenate([maps[i].ravel() for i in keep]),
                               np.concatenate([masks[i].ravel() for i in keep]))
            # the map's maximum where no test image has a defect: an image AUROC close to the whole map's comes
            # from something other than the defects (a session)
            union = np.any([masks[i] for i in keep], axis=0)
            if not union.all():  # tiles whose defects together cover the whole frame leave nothing outside
                rest = maps[:, ~union].max(axis=1)
                outside = auroc(rest[labels], rest[~labels])
        out[name] = {"auroc": auroc(scores[labels], scores[~labels]), "pixel_auroc": pix,
                     "auroc_outside_defects": outside,
                     "fit_seconds": round(fit, 3), "ms_per_image": round(ms, 3),
                     "wall_seconds": round(time.perf_counter() - t0, 1)}
        log.info("%s %s: %s", root, name, out[name])
    return out


def station(*args: str, log_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "station", *args]
    with log_path.open("a") as fh:
        fh.write("$ " + " ".join(cmd[2:]) + "\n")
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=fh, text=True)
    if done.returncode != 0:
        raise SystemExit(f"real_bench: station {' '.join(args)} failed (exit {done.returncode}); see {log_path}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def station_run(root: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "recipe"
    t0 = time.perf_counter()
    trained = station("train", "--data", str(root), "--out", str(recipe), "--quiet", log_path=work / "log.txt")
    wall = time.perf_counter() - t0
    result = station("eval", "--recipe", str(recipe), "--data", str(root), "--json", log_path=work / "log.txt")
    crop = "x".join(map(str, Recipe.load(recipe).grid.size))
    return {"engine": trained.get("engine"), "crop": crop, "auroc": result.get("auroc"),
            "pixel_auroc": result.get("pixel_auroc"),
            "pro": result.get("pro"), "fit_seconds": trained.get("fit_seconds"), "train_wall_seconds": round(wall, 1),
            "ms_per_image": result.get("ms_per_image_median"), "escape_rate": result.get("escape_rate"),
            "false_reject_rate": result.get("false_reject_rate"), "n_images": result.get("n_images"),
            "n_train": trained.get("n_train")}


def _f(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(rows: dict[str, dict], split: str) -> str:
    lines = [f"| set ({split} split) | kind | engine, crop | station image AUROC | station pixel AUROC | PRO (FPR<=0.3) | "
             "gauss image / pixel AUROC | rt8 image / pixel AUROC | station fit s | station ms/image | "
             "gauss / rt8 fit s | gauss / rt8 ms/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        s, g, t = r["station"], r["gauss"], r["rt8"]
        lines.append(f"| {name} | {KINDS.get(name, '')} | {s['engine']} {s.get('crop', '')} | {_f(s['auroc'])} | "
                     f"{_f(s['pixel_auroc'])} | "
                     f"{_f(s['pro'])} | {_f(g['auroc'])} / {_f(g['pixel_auroc'])} | {_f(t['auroc'])} / "
                     f"{_f(t['pixel_auroc'])} | {_f(s['fit_seconds'], 1)} | {_f(s['ms_per_image'], 1)} | "
                     f"{_f(g['fit_seconds'], 2)} / {_f(t['fit_seconds'], 2)} | {_f(g['ms_per_image'], 2)} / "
                     f"{_f(t['ms_per_image'], 2)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=list(KINDS))
    ap.add_argument("--dev", action="store_true", help="the development split (default: the final split)")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--work", type=Path, default=Path("/tmp/station-real-bench"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "photographs-table.md")
    args = ap.parse_args(argv)
    split = "dev" if args.dev else "final"
    saved = args.out.with_suffix(".json")
    rows = json.loads(saved.read_text()) if saved.is_file() else {}  # sets run before keep their rows
    for name in args.sets:
        root = args.cache / name / split
        if not root.is_dir():
            raise SystemExit(f"real_bench: {root} is missing; run scripts/real_sets.py {name}")
        rows[name] = {**baselines(root), "station": station_run(root, args.work / split / name)}
        log.info("%s station: %s", name, rows[name]["station"])
    rows = {name: rows[name] for name in KINDS if name in rows}
    args.out.write_text(table(rows, split))
    saved.write_text(json.dumps(rows, indent=1))
    print(table(rows, split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
