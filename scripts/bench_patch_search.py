"""Time the patch memory's two costs per crop on a recipe's own crops, one crop at a time as the live view asks,
each pair interleaved so the machine's load falls on both alike, with the largest difference between them:
the search, every memory row (nearest_distance) against the search pruned by clusters (patch_search.MemoryIndex)
and against the search probed (only the `--probe` clusters nearest each descriptor, with how much longer its distances
come out on average); and the descriptors, each window's pixels gathered, standardised and projected (raw_descriptors, as before)
against the projection done as convolutions (patch_features.Descriptor).

    python scripts/bench_patch_search.py RECIPE DATA [--images 24] [--repeat 3] [--probe 4]

RECIPE is a patch-engine recipe, DATA a set in the MVTec layout whose test images are read (every k-th, for
`--images` of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from station.core.dataset import load_dataset
from station.core.engines.patch_features import nearest_distance, raw_descriptors
from station.core.engines.patch_search import MemoryIndex
from station.core.imageio import read_image
from station.core.inspector import Inspector
from station.core.recipe import Recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("data")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--probe", type=int, default=4, help="clusters searched per descriptor by the probed search")
    args = p.parse_args(argv)
    recipe = Recipe.load(args.recipe)
    engine = recipe.engine
    if engine.name != "patch":
        raise SystemExit(f"bench_patch_search: {args.recipe} is a {engine.name} recipe, not a patch one")
    inspector = Inspector(recipe)
    samples = load_dataset(args.data, "test").samples
    samples = samples[::max(1, len(samples) // args.images)][:args.images]
    crops = np.stack([inspector.registrar.register(read_image(s.path)).crop for s in samples])
    t0 = time.perf_counter()
    index = MemoryIndex(engine.memory)
    build_ms = (time.perf_counter() - t0) * 1e3
    times: dict[str, list[float]] = {"every_row": [], "pruned": [], "probed": [], "windows": [], "convolutions": []}
    excess: list[float] = []
    worst = worst_descriptor = 0.0
    d = engine.descriptor
    for _ in range(args.repeat):
        for crop in crops:
            t0 = time.perf_counter()
            with torch.no_grad():
                windows = ((raw_descriptors(crop[None], d.scales) - d.mean) / d.std) @ d.projection
            t1 = time.perf_counter()
            feats = d(crop[None])
            times["windows"].append(t1 - t0)
            times["convolutions"].append(time.perf_counter() - t1)
            worst_descriptor = max(worst_descriptor, float((feats - windows).abs().max()))
            queries = feats.reshape(-1, feats.shape[-1])
            t0 = time.perf_counter()
            brute = nearest_distance(queries, engine.memory)
            t1 = time.perf_counter()
            pruned = index.nearest(queries)
            t2 = time.perf_counter()
            probed = index.nearest(queries, probe=args.probe)
            times["probed"].append(time.perf_counter() - t2)
            excess.append(float((probed - brute).mean() / brute.mean()))
            times["every_row"].append(t1 - t0)
            times["pruned"].append(t2 - t1)
            worst = max(worst, float((pruned - brute).abs().max()))
    median = {k: round(float(np.median(v)) * 1e3, 1) for k, v in times.items()}
    print(json.dumps({"recipe": args.recipe, "crop": list(recipe.grid.size), "queries_per_crop": int(queries.shape[0]),
                      "memory": list(engine.memory.shape), "threads": torch.get_num_threads(),
                      "index_build_ms": round(build_ms, 1), "median_ms_per_crop": median,
                      "ratio": round(median["every_row"] / median["pruned"], 2), "largest_difference": worst,
                      "probe": args.probe, "probed_ratio": round(median["every_row"] / median["probed"], 2),
                      "probed_mean_excess": round(float(np.mean(excess)), 5),
                      "typical_distance": round(float(brute.median()), 4),
                      "descriptor_ratio": round(median["windows"] / median["convolutions"], 2),
                      "descriptor_largest_difference": worst_descriptor,
                      "descriptor_largest_value": round(float(feats.abs().max()), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
