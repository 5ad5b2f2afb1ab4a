"""What the engineer's defect photographs do to the thresholds (`station train --defect-images`), per real set.

For each set: N defect photographs drawn (seeded) from the dev split's test images are copied to a folder; the
station is trained on the final split's good images with them (`station train --data SET/final --defect-images
DIR`) and evaluated on the final split's test images (`station eval`), none of which it has seen. Printed per
set, as one JSON line: the engine and crop chosen, image AUROC, escape rate, false-reject rate and review rate,
and the thresholds. Compare with `scripts/real_bench.py`, the same without photographs.

    python scripts/taught_thresholds.py [--n 20] [SET ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_bench import CACHE, KINDS, station  # noqa: E402

from station.core.dataset import load_dataset  # noqa: E402
from station.core.recipe import Recipe  # noqa: E402


def run(name: str, n: int, work: Path) -> dict:
    bad = [s for s in load_dataset(CACHE / name / "dev", "test").samples if s.label != "good"]
    folder = work / name / "defects"
    if folder.exists():
        shutil.rmtree(folder)  # made by this script alone (under --work)
    folder.mkdir(parents=True)
    for k, i in enumerate(np.random.default_rng(0).permutation(len(bad))[:n]):
        shutil.copy(bad[i].path, folder / f"{k:03d}{bad[i].path.suffix}")
    recipe = work / name / "recipe"
    log = work / name / "log.txt"
    final = CACHE / name / "final"
    trained = station("train", "--data", str(final), "--out", str(recipe), "--quiet", "--defect-images",
                      str(folder), log_path=log)
    result = station("eval", "--recipe", str(recipe), "--data", str(final), "--json", log_path=log)
    r = Recipe.load(recipe)
    return {"set": name, "defect_photographs": min(n, len(bad)), "engine": trained["engine"],
            "crop": "x".join(map(str, r.grid.size)), "auroc": round(result["auroc"], 3),
            **{k: round(result[k], 3) for k in ("escape_rate", "false_reject_rate", "review_rate")},
            "thresholds": [round(t, 3) for t in r.thresholds]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=list(KINDS))
    ap.add_argument("--n", type=int, default=20, help="defect photographs given to the station")
    ap.add_argument("--work", type=Path, default=Path("/tmp/station-taught-thresholds"))
    args = ap.parse_args(argv)
    for name in args.sets:
        if not (CACHE / name / "final").is_dir():
            ap.error(f"no set {name} under {CACHE} (build it with scripts/real_sets.py)")
        print(json.dumps(run(name, args.n, args.work)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
