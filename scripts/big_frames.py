"""Train and evaluate the station on a large camera's frames: a set in the MVTec layout (one of
scripts/real_sets.py's) enlarged to SIZE x SIZE px, saved as JPEG, then `station train --data` with no other
option and `station eval --json`, each in its own process; prints each one's wall time, peak memory (the
process's maximum resident set) and the image AUROC.

    python scripts/big_frames.py ~/.cache/station/real-sets/bottle/dev --size 3000 --work /tmp/big

The enlarged set is written under WORK (kept for a second run; delete it yourself). Nothing here is committed.
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

log = logging.getLogger("big_frames")


def enlarge(src: Path, dst: Path, size: int) -> int:
    """Every image of `src` (train and test; masks too) resized to size x size into `dst`; how many images."""
    n = 0
    for path in sorted(src.rglob("*.png")):
        out = (dst / path.relative_to(src)).with_suffix(".png" if "ground_truth" in path.parts else ".jpg")
        if out.exists():
            n += 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SystemExit(f"big_frames: {path} cannot be read")
        mask = "ground_truth" in path.parts
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if mask else cv2.INTER_CUBIC)
        if not cv2.imwrite(str(out), image, [] if mask else [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise SystemExit(f"big_frames: cannot write {out}")
        n += 1
    return n


def measured(args: list[str], work: Path) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of one station command in a process of its own."""
    out_path = work / "stdout.txt"
    t0 = time.perf_counter()
    with out_path.open("w") as out, subprocess.Popen([sys.executable, "-m", "station", *args], stdout=out,
                                                     stderr=subprocess.PIPE, text=True) as proc:
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest of all so far
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"big_frames: station {' '.join(args)} failed: {err.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024, out_path.read_text()  # ru_maxrss: kB on Linux


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a set in the MVTec layout (train/good, test/<class>, ground_truth)")
    ap.add_argument("--size", type=int, default=3000, help="the side the frames are enlarged to (px)")
    ap.add_argument("--work", type=Path, required=True, help="where the enlarged set and the recipe go")
    args = ap.parse_args(argv)
    big = args.work / f"set-{args.size}"
    log.info("%d images at %d x %d px in %s", enlarge(args.data, big, args.size), args.size, args.size, big)
    recipe = args.work / "recipe"
    if recipe.exists():
        raise SystemExit(f"big_frames: {recipe} exists; remove it first")
    wall_t, peak_t, _ = measured(["train", "--data", str(big), "--out", str(recipe)], args.work)
    wall_e, peak_e, out = measured(["eval", "--recipe", str(recipe), "--data", str(big), "--json"], args.work)
    report = json.loads(out)
    print(json.dumps({"size": args.size, "train_wall_s": round(wall_t, 1), "train_peak_mb": round(peak_t),
                      "eval_wall_s": round(wall_e, 1), "eval_peak_mb": round(peak_e),
                      "image_auroc": report.get("auroc"), "pixel_auroc": report.get("pixel_auroc")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
