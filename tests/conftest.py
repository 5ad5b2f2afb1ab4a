"""Test setup: Qt runs offscreen (set here, not by the person running the tests), and shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

from synthetic import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small drawn connector data set with train and test splits (seconds to make)."""
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root / "train", {"good": 30, "pushed": 8, "tilted": 8, "missing": 8}, seed=1)
    write_dataset(root / "test", {"good": 20, "pushed": 10, "tilted": 10, "missing": 10}, seed=2)
    return root


@pytest.fixture(scope="session")
def synthetic_recipe(synthetic_data, tmp_path_factory) -> Path:
    """An RT recipe fitted on the synthetic data set."""
    from station.core.dataset import load_dataset
    from station.core.grid import CellGrid
    from station.core.training import train_recipe

    out = tmp_path_factory.mktemp("recipes") / "rt"
    recipe, _ = train_recipe(load_dataset(synthetic_data, "train"), "rt", CellGrid(3, 9), "synthetic-rt")
    recipe.save(out)
    return out
