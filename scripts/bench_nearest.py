"""Time the patch memory's nearest-neighbour search, the patch engine's main cost per frame, by chunk size.

    python scripts/bench_nearest.py [--queries 4096] [--memory 8192] [--dims 48] [--repeat 5]

One 256 x 256 crop gives 4096 descriptors; the default memory holds 8192 of 48 dimensions. All chunk sizes
are timed in one run, interleaved, so the machine's load falls on each alike; the figures to compare are the
ratios to the default chunk.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from station.core.engines.patch_features import nearest_distance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=4096)
    p.add_argument("--memory", type=int, default=8192)
    p.add_argument("--dims", type=int, default=48)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--chunks", default="64,256,1024,4096")
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(args.queries, args.dims, generator=gen)
    memory = torch.randn(args.memory, args.dims, generator=gen)
    chunks = [int(c) for c in args.chunks.split(",")]
    times: dict[int, list[float]] = {c: [] for c in chunks}
    nearest_distance(queries, memory)  # warm up
    for _ in range(args.repeat):
        for c in chunks:
            t0 = time.perf_counter()
            nearest_distance(queries, memory, chunk=c)
            times[c].append(time.perf_counter() - t0)
    median = {c: sorted(t)[len(t) // 2] * 1000 for c, t in times.items()}
    base = median.get(256, median[chunks[0]])
    print(json.dumps({"queries": args.queries, "memory": args.memory, "dims": args.dims,
                      "threads": torch.get_num_threads(),
                      "median_ms": {c: round(m, 1) for c, m in median.items()},
                      "ratio_to_chunk_256": {c: round(m / base, 2) for c, m in median.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
