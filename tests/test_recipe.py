"""The recipe bundle: round trip, content hash, and refusal of every kind of bad bundle."""

import json
import shutil

import numpy as np
import pytest

from station.core.errors import RecipeError
from station.core.recipe import ARRAYS_FILE, RECIPE_FILE, SEAL_FILE, Recipe


@pytest.fixture
def recipe_copy(synthetic_recipe, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(synthetic_recipe, out)
    return out


def _edit(folder, **changes):
    path = folder / RECIPE_FILE
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_round_trip_keeps_hash_and_engine(synthetic_recipe, tmp_path):
    recipe = Recipe.load(synthetic_recipe)
    assert recipe.content_hash.startswith("sha256:")
    again = tmp_path / "again"
    recipe.save(again)
    reloaded = Recipe.load(again)
    assert reloaded.content_hash == recipe.content_hash
    a, b = recipe.engine.arrays(), reloaded.engine.arrays()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_no_pickle_in_the_bundle(synthetic_recipe):
    assert sorted(p.name for p in synthetic_recipe.iterdir()) == [ARRAYS_FILE, RECIPE_FILE, SEAL_FILE]
    assert not (synthetic_recipe / ARRAYS_FILE).read_bytes().startswith(b"\x80")  # pickle protocol marker


def test_tampered_threshold_is_refused(recipe_copy):
    _edit(recipe_copy, thresholds={"review": 1e5, "ng": 1e5})
    with pytest.raises(RecipeError, match="content hash"):
        Recipe.load(recipe_copy)


def test_tampered_arrays_are_refused(recipe_copy):
    blob = bytearray((recipe_copy / ARRAYS_FILE).read_bytes())
    blob[-5] ^= 0xFF
    (recipe_copy / ARRAYS_FILE).write_bytes(bytes(blob))
    with pytest.raises(RecipeError, match="content hash"):
        Recipe.load(recipe_copy)


def test_truncated_arrays_are_refused(recipe_copy):
    blob = (recipe_copy / ARRAYS_FILE).read_bytes()
    (recipe_copy / ARRAYS_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RecipeError):
        Recipe.load(recipe_copy)


def test_wrong_schema_version_is_refused(recipe_copy):
    _edit(recipe_copy, schema_version=99)
    with pytest.raises(RecipeError, match="schema version 99"):
        Recipe.load(recipe_copy)


def test_unknown_field_is_refused(recipe_copy):
    _edit(recipe_copy, surprise=1)
    with pytest.raises(RecipeError, match="surprise"):
        Recipe.load(recipe_copy)


def test_unknown_engine_is_refused(recipe_copy):
    _edit(recipe_copy, engine={"name": "crystal-ball", "config": {}})
    with pytest.raises(RecipeError, match="crystal-ball"):
        Recipe.load(recipe_copy)


def test_not_json_and_missing_files_are_refused(recipe_copy, tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        Recipe.load(tmp_path / "nowhere")
    (recipe_copy / ARRAYS_FILE).unlink()
    with pytest.raises(RecipeError, match="missing"):
        Recipe.load(recipe_copy)
    (recipe_copy / RECIPE_FILE).write_text("{not json")
    with pytest.raises(RecipeError):
        Recipe.load(recipe_copy)


def test_arrays_of_another_grid_are_refused(synthetic_recipe, tmp_path):
    recipe = Recipe.load(synthetic_recipe)
    doc = recipe.doc.model_copy(update={"grid": recipe.doc.grid.model_copy(update={"cols": 4})})
    recipe.doc = doc
    recipe.save(tmp_path / "other")
    with pytest.raises(RecipeError, match="another grid|template"):
        Recipe.load(tmp_path / "other")


def test_save_replaces_a_recipe_but_never_a_folder_holding_other_files(synthetic_recipe, tmp_path):
    recipe = Recipe.load(synthetic_recipe)
    target = tmp_path / "r"
    recipe.save(target)
    recipe.save(target)  # a recipe over a recipe: replaced
    assert sorted(p.name for p in target.iterdir()) == sorted([RECIPE_FILE, ARRAYS_FILE, SEAL_FILE])
    (target / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="not the recipe's"):
        recipe.save(target)
    assert (target / "notes.txt").read_text() == "mine"


def test_save_leaves_a_folder_named_like_its_old_copy_alone(synthetic_recipe, tmp_path):
    recipe = Recipe.load(synthetic_recipe)
    recipe.save(tmp_path / "r")
    mine = tmp_path / ".r.old"  # the name the old bundle used to be moved to, then removed
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    recipe.save(tmp_path / "r")
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.old", "r"]  # no temporary folder left behind
