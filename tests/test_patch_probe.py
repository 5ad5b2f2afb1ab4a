"""The patch memory's probed search: a fixed share of the memory searched per descriptor, measured when fitting
against the exact search, and kept out of recipes saved before it."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from station.core.engines import TrainingSet, engine_class
from station.core.engines import patch_engine
from station.core.engines.patch_features import nearest_distance
from station.core.engines.patch_search import CLUSTERS, MemoryIndex
from station.core.evaluate import auroc
from station.core.grid import CellGrid

from test_patch import texture

GRID = CellGrid(8, 8, 16)  # a 128 x 128 crop: 1024 descriptors a crop, enough for a memory that clusters
SETTINGS = {"memory": 2048, "candidates": 24000}


def _gathered(gen: torch.Generator) -> torch.Tensor:
    """Descriptors of good parts: they gather around a few dozen kinds of patch."""
    centres = torch.randn(40, 16, generator=gen) * 6
    return centres[torch.randint(0, 40, (4000,), generator=gen)] + torch.randn(4000, 16, generator=gen)


def test_a_probed_search_never_finds_a_nearer_row_than_there_is_and_finds_the_nearest_where_good_parts_gather():
    gen = torch.Generator().manual_seed(7)
    memory = _gathered(gen)
    index = MemoryIndex(memory)
    near = memory[torch.randint(0, 4000, (3000,), generator=gen)] + 0.3 * torch.randn(3000, 16, generator=gen)
    queries = torch.cat([near, memory[:100]])
    exact = torch.cdist(queries.double(), memory.double()).min(dim=1).values
    probed = index.nearest(queries, probe=4)
    assert index.searched_share == 4 / CLUSTERS
    assert bool((probed.double() >= exact - 1e-3).all())  # approximate only ever farther
    assert float((probed.double() - exact).mean() / exact.mean()) < 0.01
    assert float(probed[-100:].max()) < 2e-2  # rows the memory holds are found
    # with every cluster probed it is the exact search
    assert torch.allclose(index.nearest(queries, probe=CLUSTERS - 1).double(), exact, atol=2e-2, rtol=1e-3)  # float32 rounding near 0

    flat = torch.rand(4000, 16, generator=gen)  # no structure: the nearest row is often in a cluster not probed
    index = MemoryIndex(flat)
    queries = torch.rand(2000, 16, generator=gen)
    exact = nearest_distance(queries, flat)
    assert float((index.nearest(queries, probe=1) - exact).mean() / exact.mean()) > 0.05


def test_the_engine_measures_the_probe_when_fitting_and_finds_a_defect_with_it():
    rng = np.random.default_rng(3)
    good = texture(rng, 40, side=128)
    engine = engine_class("patch")(GRID, SETTINGS)
    assert engine.config["probe"] == 4  # new recipes probe
    report = engine.fit(TrainingSet(good[:30], ["good"] * 30, [None] * 30, GRID), seed=0)
    assert report.info["search"] == f"4 of {CLUSTERS} clusters" and 0 <= report.info["probe_excess"] <= 0.01
    assert engine.config["probe"] == 4
    spotted = good[30:].copy()
    for img in spotted:
        cv2.circle(img, (60, 70), 6, (250, 250, 250), -1)
    scores = [o.score for o in engine.infer_batch(np.concatenate([good[30:], spotted]))]
    assert auroc(np.array(scores[:10]), np.array(scores[10:])) == 1.0
    searched = engine._index.searched_share
    assert searched == 4 / CLUSTERS  # what was inferred was searched probed


def test_where_probing_lengthens_good_distances_the_engine_searches_exactly(monkeypatch):
    monkeypatch.setattr(patch_engine, "PROBE_MAX_EXCESS", -1.0)  # any excess at all is too much
    good = texture(np.random.default_rng(4), 24, side=128)
    engine = engine_class("patch")(GRID, SETTINGS)
    report = engine.fit(TrainingSet(good, ["good"] * 24, [None] * 24, GRID), seed=0)
    assert engine.config["probe"] == 0 and report.info["search"].startswith("exact: probing 4 clusters")
    engine.infer(good[0])
    assert engine._index.searched_share > 4 / CLUSTERS


def test_a_small_memory_and_a_recipe_saved_before_the_probe_search_exactly():
    good = texture(np.random.default_rng(5), 12, side=64)
    small_grid = CellGrid(8, 8, 8)
    engine = engine_class("patch")(small_grid, {"memory": 256, "candidates": 2000})
    report = engine.fit(TrainingSet(good, ["good"] * 12, [None] * 12, small_grid), seed=0)
    assert report.info["search"] == "exact: the memory is too small to cluster"
    old = engine_class("patch").from_saved(small_grid, {"memory": 256, "candidates": 2000, "position_z": True})
    assert old.config["probe"] == 0


def test_the_choice_measures_patch_candidates_with_the_exact_search_and_the_chosen_engine_probes():
    from station.core.freeform import _trial_config, candidate_configs

    config = candidate_configs()["patch"]
    assert _trial_config("patch", config, GRID, GRID)["probe"] == 0  # what each crop sees, not the probe's noise
    assert engine_class("patch")(GRID, config).config["probe"] == 4
