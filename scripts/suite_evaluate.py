"""`product_suite.py evaluate`: teach, train and evaluate every rendered product of the suite with the station's
own commands only (no code per product), and write the table of docs/product-suite.md.

For each product and engine: `station teach --data TRAIN --out SETUP`, `station train --setup SETUP --data
TRAIN --engine E --seed 0 --out RECIPE`, `station eval --recipe RECIPE --data TEST --json`. With `--dev` the
test split is left alone: the training split's images are split per class into a development train and
test half (symlinks), for decisions; the test split is measured once, at the end.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ("rt", "rt-attention", "vit")
COLUMNS = ("auroc", "cell_localization", "accuracy", "binary_accuracy", "escape_rate", "false_reject_rate",
           "review_rate")


def station(*argv: str, log: Path) -> dict:
    """Run `station ARGV` and return its last JSON line; the command's stderr goes to `log`."""
    exe = Path(sys.executable).with_name("station")
    with open(log, "a", encoding="utf-8") as err:
        err.write(f"+ station {' '.join(argv)}\n")
        err.flush()
        done = subprocess.run([str(exe), *argv], stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"station {argv[0]} failed (exit {done.returncode}); see {log}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dev_split(train: Path, out: Path, seed: int = 0) -> tuple[Path, Path]:
    """Half of each class of `train` as a development train split, the other half as its test split
    (symlinks; the manifest's cells are kept)."""
    manifest = json.loads((train / "manifest.json").read_text())
    by_class: dict[str, list[dict]] = {}
    for item in manifest["images"]:
        by_class.setdefault(item["class"], []).append(item)
    rng = random.Random(seed)
    halves: dict[str, list[dict]] = {"train": [], "test": []}
    for items in by_class.values():
        items = sorted(items, key=lambda i: i["file"])
        rng.shuffle(items)
        halves["train"] += items[: len(items) // 2]
        halves["test"] += items[len(items) // 2:]
    for split, items in halves.items():
        for item in items:
            link = out / split / item["file"]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((train / item["file"]).resolve())
        (out / split / "manifest.json").write_text(json.dumps({"schema": 1, "images": items}))
    return out / "train", out / "test"


def binary_accuracy(result: dict) -> float | None:
    """OK/NG accuracy: a good part not passed (NG or REVIEW) and a defect passed are the errors."""
    counts = result.get("counts") or {}
    n = sum(counts.values())
    good = counts.get("good", 0)
    if not n or result.get("escape_rate") is None or result.get("false_reject_rate") is None:
        return None
    errors = result["escape_rate"] * (n - good) + result["false_reject_rate"] * good
    return 1 - errors / n


def evaluate_product(name: str, train: Path, test: Path, out: Path, engines, log: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    setup = station("teach", "--data", str(train), "--out", str(out / "setup"), log=log)
    rows = {"setup": {k: setup[k] for k in ("grid", "roi", "notes")},
            "teach_seconds": round(time.perf_counter() - t0, 1), "engines": {}}
    for engine in engines:
        t0 = time.perf_counter()
        trained = station("train", "--data", str(train), "--setup", str(out / "setup"), "--engine", engine,
                          "--seed", "0", "--out", str(out / engine), "--quiet", log=log)
        wall = time.perf_counter() - t0
        result = station("eval", "--recipe", str(out / engine), "--data", str(test), "--json", log=log)
        result["binary_accuracy"] = binary_accuracy(result)
        row = {k: result.get(k) for k in COLUMNS}
        row.update({"fit_seconds": trained.get("fit_seconds"), "train_wall_seconds": round(wall, 1),
                    "ms_per_image_median": result.get("ms_per_image_median"),
                    "registration": result.get("registration"), "confusion": result.get("confusion"),
                    "n_images": result.get("n_images"), "n_train": trained.get("n_train")})
        rows["engines"][engine] = row
        print(f"{name} {engine}: " + ", ".join(f"{k} {_f(row[k])}" for k in COLUMNS), file=sys.stderr, flush=True)
    return rows


def _f(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(results: dict, about: dict[str, str]) -> str:
    lines = ["| product | engine | AUROC | cell localization | four-class accuracy | binary accuracy | escape | "
             "false reject | review | fit s | ms/image | registration residual p95 px |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for engine, r in res["engines"].items():
            reg = r.get("registration") or {}
            lines.append(f"| {name} | {engine} | {_f(r['auroc'])} | {_f(r['cell_localization'])} | "
                         f"{_f(r['accuracy'])} | {_f(r['binary_accuracy'])} | {_f(r['escape_rate'])} | "
                         f"{_f(r['false_reject_rate'])} | {_f(r['review_rate'])} | {_f(r['fit_seconds'], 1)} | "
                         f"{_f(r['ms_per_image_median'], 1)} | {_f(reg.get('residual_px_p95'), 2)} |")
    return "\n".join(lines)


def cmd_evaluate(args, entries, cache: Path) -> int:
    engines = tuple(args.engine or ENGINES)
    out_root = Path(args.out).expanduser()
    out_root.mkdir(parents=True, exist_ok=True)
    log = out_root / "station.log"
    results = {}
    for e in entries:
        train, test = cache / e.name / "train", cache / e.name / "test"
        if not (train / "manifest.json").is_file() or (not args.dev and not (test / "manifest.json").is_file()):
            print(f"product_suite: error: {e.name} is not rendered in {cache}; run `render` first", file=sys.stderr)
            return 2
        if args.dev:
            train, test = dev_split(train, out_root / e.name / "dev")
        results[e.name] = evaluate_product(e.name, train, test, out_root / e.name, engines, log)
        (out_root / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = table(results, {e.name: e.about for e in entries})
    (out_root / "table.md").write_text(text + "\n")
    print(text)
    print(f"raw figures: {out_root / 'results.json'}; commands and their messages: {log}", file=sys.stderr)
    return 0


def add_parser(sub, cache_env: str) -> None:
    ev = sub.add_parser("evaluate", help="teach, train and evaluate every product with the station's commands")
    ev.add_argument("--cache", help=f"cache folder (default: ${cache_env}, else the default cache)")
    ev.add_argument("--only", help="one product, by name")
    ev.add_argument("--engine", action="append", choices=ENGINES, help="engines to run (repeatable; default all)")
    ev.add_argument("--out", default=os.path.expanduser("~/.cache/station/product-suite-results"),
                    help="recipes, setups, results.json and table.md")
    ev.add_argument("--dev", action="store_true",
                    help="development split: halves of the training split; the test split is not touched")
