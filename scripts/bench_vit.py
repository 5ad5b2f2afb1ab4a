"""Time the ViT engine per image: with the attention map (explicit attention), without it (fused),
and the whole inspection (registration included). Prints one JSON object.

With --localization, also the acceptance figure that `station eval` does not give: among the
correctly classified defect images of the test split, how often the top attention cell is the
labelled defective pin.

    .venv/bin/python scripts/bench_vit.py [--recipe DIR] [--data DIR] [--images N] [--repeat R]
                                          [--threads T] [--localization]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from station.core.dataset import load_dataset
from station.core.imageio import read_image
from station.core.inspector import Inspector
from station.core.recipe import Recipe
from station.core.resources import bundled_recipe, demo_dir


def _median_ms(fn, items, repeat: int) -> float:
    fn(items[0])  # warm-up: first call pays for allocations
    times = []
    for _ in range(repeat):
        for item in items:
            t0 = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--localization", action="store_true")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    recipe = Recipe.load(args.recipe or bundled_recipe("vit"))
    data = load_dataset(args.data or demo_dir(), "test")
    step = max(1, len(data.samples) // args.images)
    frames = [read_image(s.path) for s in data.samples[::step][: args.images]]
    inspector = Inspector(recipe)
    crops = [inspector.registrar.register(f).crop for f in frames]
    engine = recipe.engine
    out = {
        "recipe": str(recipe.path), "device": engine.device, "torch_threads": torch.get_num_threads(),
        "images": len(crops), "repeat": args.repeat,
        "engine_ms_with_map": _median_ms(lambda c: engine.infer_batch(c[None], maps=True), crops, args.repeat),
        "engine_ms_without_map": _median_ms(lambda c: engine.infer_batch(c[None], maps=False), crops, args.repeat),
        "inspect_ms_with_map": _median_ms(inspector.inspect, frames, 1),
    }
    batch = np.stack(crops)
    t0 = time.perf_counter()
    engine.infer_batch(batch, maps=True)
    out["engine_ms_per_image_batched_with_map"] = round((time.perf_counter() - t0) * 1e3 / len(crops), 3)
    if args.localization:
        out.update(localization(inspector, data))
    print(json.dumps(out))


def localization(inspector: Inspector, data) -> dict:
    ok = inspector.recipe.doc.ok_class
    correct, hits, labelled = 0, 0, 0
    for s in data.samples:
        if s.label == ok or s.cell is None:
            continue
        labelled += 1
        result = inspector.inspect(read_image(s.path))
        if result.label == s.label and result.verdict.value == "NG":
            correct += 1
            hits += result.top_cell == s.cell
    return {"defect_images_with_cell": labelled, "correctly_classified": correct,
            "top_cell_is_defective_pin": round(hits / correct, 4) if correct else None}


if __name__ == "__main__":
    main()
