"""Where the bundled resources live: the demo data set and the default recipes."""

from __future__ import annotations

import os
from pathlib import Path

from station.core.errors import StationError


def resources_dir() -> Path:
    """`STATION_RESOURCES`, else the `resources/` folder of the source tree the station runs from."""
    env = os.environ.get("STATION_RESOURCES")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "resources"
    if not path.is_dir():
        raise StationError(f"bundled resources not found at {path}; install the station from its source tree "
                           "(pip install -e .) or set STATION_RESOURCES")
    return path


def demo_dir() -> Path:
    return resources_dir() / "demo"


def demo_split(split: str) -> Path:
    path = demo_dir() / split
    if not path.is_dir():
        raise StationError(f"the bundled demo {split} set is missing at {path}; regenerate it with "
                           "`station synth` (see README)")
    return path


DEFAULT_ENGINE = "rt"


def bundled_recipe(engine: str | None = None) -> Path:
    """The bundled recipe of an engine (`resources/recipes/<engine>`), or that of the default engine."""
    name = engine or DEFAULT_ENGINE
    path = resources_dir() / "recipes" / name
    if not (path / "recipe.json").is_file():
        raise StationError(f"no bundled recipe {name!r} at {path}; train one with `station train --out {path}`")
    return path
