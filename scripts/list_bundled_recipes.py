"""Write resources/recipes/trusted.json: the content hashes of the bundled recipes, which the station trusts
without its own seal (SECURITY.md). Run after retraining a bundled recipe; each one is loaded (validated
and its content hash checked) before it is listed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from station.core.recipe import RECIPE_FILE, TRUSTED_FILE, Recipe

ABOUT = ("content hashes of the recipes shipped with the station; a recipe whose content hash is listed here is "
         "trusted without this station's seal (SECURITY.md). Regenerate with scripts/list_bundled_recipes.py "
         "after retraining a bundled recipe.")


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "resources" / "recipes"
    recipes = {d.name: Recipe._load(d).content_hash for d in sorted(root.iterdir()) if (d / RECIPE_FILE).is_file()}
    (root / TRUSTED_FILE).write_text(json.dumps({"schema_version": 1, "about": ABOUT, "recipes": recipes},
                                                indent=2) + "\n", encoding="utf-8")
    print(json.dumps(recipes, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
