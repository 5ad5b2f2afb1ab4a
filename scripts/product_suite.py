"""Render the fixed suite of products in scripts/product_suite.json into a cache outside the repo, and check framing.

    scripts/product_suite.py list
    scripts/product_suite.py check  [--only NAME] [--split train|test|both]
    scripts/product_suite.py render [--cache DIR] [--only NAME] [--workers 2]
    scripts/product_suite.py evaluate [--cache DIR] [--only NAME] [--engine E] [--out DIR] [--dev]

``render`` writes ``<cache>/<name>/{train,test}`` (cache: --cache, else $STATION_SUITE_CACHE, else
``~/.cache/station/product-suite``) through ``station.synth.render_dataset`` with ``--keep-existing``
semantics, so an interrupted render resumes where it stopped. The renders are never committed.
``check`` renders nothing: it asks Blender where every pin of every image lands in the frame and fails
when a pin comes closer than MIN_MARGIN to the border or the part leans more than MAX_ROLL_DEG.
The settings and seeds in the JSON file were fixed before any tuning: do not edit them to make a
result look better, and keep the test splits out of every decision until the end.
``evaluate`` (scripts/suite_evaluate.py) teaches, trains and evaluates each product with the station's
own commands and writes the table of docs/product-suite.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.synth import SynthError, check_framing, is_whole_png, render_dataset
from station.synth.product import Product, validate_product

log = logging.getLogger("product_suite")

SUITE_FILE = Path(__file__).with_name("product_suite.json")
CACHE_ENV_VAR = "STATION_SUITE_CACHE"
DEFAULT_CACHE = Path("~/.cache/station/product-suite")
SPLITS = ("train", "test")
MIN_MARGIN = 0.02      # share of the frame: 5 px at 256, so no pin touches the border
MAX_ROLL_DEG = 6.0     # the part's columns and rows stay within this of the image axes


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = Field(ge=0)
    count: int = Field(ge=1, le=100_000)


class SuiteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    about: str = ""
    size: int = Field(256, ge=8, le=4096)
    train: Split
    test: Split
    product: dict = {}

    def settings(self) -> Product:
        return validate_product({"name": self.name, **self.product}, f"product {self.name!r}")


def load_suite(path: Path = SUITE_FILE) -> list[SuiteEntry]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    try:
        entries = [SuiteEntry.model_validate(e) for e in doc["products"]]
    except (KeyError, TypeError, ValidationError) as exc:
        raise SystemExit(f"product_suite: error: {path} is not a valid suite file: {exc}") from None
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise SystemExit(f"product_suite: error: {path} names a product twice: {names}")
    seeds = [s for e in entries for s in (e.train.seed, e.test.seed)]
    if len(set(seeds)) != len(seeds) or {1, 2} & set(seeds):
        raise SystemExit(f"product_suite: error: {path}: every split needs a seed of its own, "
                         "and not the demo's 1 or 2")
    for e in entries:
        e.settings()   # a bad product fails here, before anything renders
    return entries


def pick(entries: list[SuiteEntry], only: str | None) -> list[SuiteEntry]:
    if only is None:
        return entries
    chosen = [e for e in entries if e.name == only]
    if not chosen:
        raise SystemExit(f"product_suite: error: no product {only!r}; names: {', '.join(e.name for e in entries)}")
    return chosen


def cache_root(arg: str | None) -> Path:
    return Path(arg or os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE).expanduser()


def is_complete(folder: Path, seed: int, count: int, size: int, product: dict) -> bool:
    """A split whose manifest matches the settings and whose images are all whole needs no Blender at all."""
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if (m.get("seed"), m.get("count"), m.get("size"), m.get("product")) != (seed, count, size, product):
        return False
    return all(is_whole_png(folder / im["file"]) for im in m["images"])


# ----------------------------------------------------------------------------- subcommands

def cmd_list(args) -> int:
    for e in pick(load_suite(), args.only):
        p = e.settings().settings()
        print(f"{e.name}: {p['cols']}x{p['rows']} {p['pins']} pitch {p['pitch']}, camera tilt "
              f"{p['camera']['tilt_deg']} azimuth {p['camera']['azimuth_deg']} lens {p['camera']['lens_mm']} mm, "
              f"{p['background']}; train seed {e.train.seed} x {e.train.count}, test seed {e.test.seed} x "
              f"{e.test.count}, {e.size} px")
    return 0


def cmd_check(args) -> int:
    splits = SPLITS if args.split == "both" else (args.split,)
    failed = False
    for e in pick(load_suite(), args.only):
        for split in splits:
            sp = getattr(e, split)
            frames = check_framing(e.settings(), seed=sp.seed, count=sp.count, size=e.size)
            worst = min(frames, key=lambda f: f["min_margin"])
            roll = max(max(abs(f["col_angle_deg"]), abs(f["row_angle_deg"])) for f in frames)
            cut = {}
            for f in frames:
                for edge in f["housing_cut"]:
                    cut[edge] = cut.get(edge, 0) + 1
            ok = worst["min_margin"] >= MIN_MARGIN and roll <= MAX_ROLL_DEG
            failed |= not ok
            print(json.dumps({"product": e.name, "split": split, "images": len(frames), "ok": ok,
                              "min_margin": worst["min_margin"], "worst_image": worst["index"],
                              "max_roll_deg": round(roll, 2), "housing_cut": cut}), flush=True)
    return 1 if failed else 0


def cmd_render(args) -> int:
    root = cache_root(args.cache)
    entries = pick(load_suite(), args.only)
    log.info("rendering %d product(s) into %s with %d worker(s)", len(entries), root, args.workers)
    for e in entries:
        product = e.settings()
        for split in SPLITS:
            sp = getattr(e, split)
            out = root / e.name / split
            if is_complete(out, sp.seed, sp.count, e.size, product.settings()):
                log.info("%s/%s: complete (%d images), skipped", e.name, split, sp.count)
                continue
            t0 = time.perf_counter()
            step = max(1, sp.count // 10)

            def progress(done: int, total: int, name=f"{e.name}/{split}") -> None:
                if done % step == 0 or done == total:
                    log.info("%s: %d/%d images (%.0f s)", name, done, total, time.perf_counter() - t0)

            render_dataset(out, sp.count, sp.seed, size=e.size, workers=args.workers, python=args.blender_python,
                           progress=progress, keep_existing=True, product=product)
            log.info("%s/%s: done in %.0f s -> %s", e.name, split, time.perf_counter() - t0, out)
    log.info("suite rendered into %s", root)
    return 0


def cmd_evaluate(args) -> int:
    from suite_evaluate import cmd_evaluate as evaluate

    return evaluate(args, pick(load_suite(), args.only), cache_root(args.cache))


SUBCOMMANDS = {"list": cmd_list, "check": cmd_check, "render": cmd_render, "evaluate": cmd_evaluate}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the suite's products and seeds")
    ls.add_argument("--only", help="one product, by name")
    ck = sub.add_parser("check", help="framing of every image (renders nothing; needs bpy)")
    ck.add_argument("--only", help="one product, by name")
    ck.add_argument("--split", choices=(*SPLITS, "both"), default="both")
    rn = sub.add_parser("render", help="render every product's train and test splits into the cache (resumable)")
    rn.add_argument("--cache", help=f"cache folder (default: ${CACHE_ENV_VAR}, else {DEFAULT_CACHE})")
    rn.add_argument("--only", help="one product, by name")
    rn.add_argument("--workers", type=int, default=2, help="Blender processes (the work, not the products, is split)")
    rn.add_argument("--blender-python", help="a Python with bpy (default: $STATION_BLENDER_PYTHON)")
    from suite_evaluate import add_parser

    add_parser(sub, CACHE_ENV_VAR)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command](args)
    except SynthError as exc:
        print(f"product_suite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
