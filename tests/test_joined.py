"""The joined engine (two of the free-form choice's candidates, each on a crop of its own size) and the choice's
rule for joining: the chosen candidate with the next best, where together they find their worst kind of synthetic
defect better than it alone by more than the margin."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from station.cli import main
from station.core import freeform
from station.core.engines import TrainingSet, engine_class
from station.core.errors import EngineError
from station.core.freeform import Trial, choose_free_form, joined_auroc
from station.core.grid import CellGrid
from station.core.recipe import Recipe

from test_patch import texture, with_spot, write_mvtec

GRID = CellGrid(8, 8, 16)  # the recipe's 128 x 128 crop
PARTS = [{"engine": "patch", "config": {"memory": 512, "candidates": 4000}},  # on the recipe's crop
         {"engine": "texture", "config": {}, "grid": {"cols": 8, "rows": 8, "cell_px": 8}}]  # on a 64 x 64 one


def _up(tiles: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(t, GRID.size, interpolation=cv2.INTER_LINEAR) for t in tiles])


def test_each_part_reads_the_crop_at_its_own_size_and_the_map_is_the_recipes_and_round_trips():
    rng = np.random.default_rng(0)
    good = _up(texture(rng, 24))
    engine = engine_class("joined")(GRID, {"parts": PARTS})
    assert [p.grid.size for p in engine.parts] == [(128, 128), (64, 64)]
    report = engine.fit(TrainingSet(good, ["good"] * 24, [None] * 24, GRID), seed=0)
    fits = report.info["part_fits"]
    assert [(f["engine"], f["crop"]) for f in fits] == [("patch", [128, 128]), ("texture", [64, 64])]
    assert fits[0]["search"].startswith("exact")  # the patch part's own report is kept (a small memory)
    clean = _up(texture(rng, 4))
    bad, mask = with_spot(clean[0], at=(50, 70), r=10)
    outs = engine.infer_batch(np.concatenate([clean, bad[None]]))
    m = outs[-1].pixel_map
    assert m.shape == (128, 128) and outs[-1].cell_scores.shape == (8, 8)
    assert outs[-1].score > max(o.score for o in outs[:-1]) and outs[-1].score >= report.thresholds[1]
    assert m[mask > 0].mean() > 2 * m[mask == 0].mean()  # the joined map is high where the spot is
    assert set(outs[-1].extra["parts"]) == {"patch", "texture"}
    again = engine_class("joined").from_saved(GRID, json.loads(json.dumps(engine.config)))
    again.load_arrays(engine.arrays())
    np.testing.assert_allclose(again.infer(bad).pixel_map, m, rtol=1e-2, atol=1e-2)  # patch memory as float16
    np.testing.assert_allclose(engine.copy().infer(bad).pixel_map, m, rtol=1e-2, atol=1e-2)  # a copy: the same


def test_bad_joined_settings_are_refused_in_one_line():
    cases = [{"parts": [{"engine": "vit"}, {"engine": "rt"}]},  # a classifier has no map to join
             {"parts": [{"engine": "rt"}]},  # one part is not a join
             {"parts": [{"engine": "rt"}] * 4},
             {"parts": [{"engine": "rt", "grid": {"cols": 99, "rows": 8, "cell_px": 8}}, {"engine": "mt"}]},
             {"parts": [{"engine": "rt", "grid": {"cols": 8, "rows": 8}}, {"engine": "mt"}]},
             {"parts": [{"engine": "rt", "size": 3}, {"engine": "mt"}]},
             {"rule": "max"}]
    for config in cases:
        with pytest.raises(EngineError):
            engine_class("joined")(GRID, config)
    with pytest.raises(EngineError, match="not been fitted"):
        engine_class("joined")(GRID).infer(np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(EngineError, match="statistics"):
        engine_class("joined")(GRID).load_arrays({})


def _trial_of(seeing: dict[int, float]):
    """A fake trial: held-out good scores around 1, and each kind's faulty images raised by `seeing[kind]` (in
    log units) on half of them, so a candidate sees a kind as far as it is raised."""
    def trial(name, config, grid, train, held, faulty, seed):
        rng = np.random.default_rng(sum(int(v * 10) for v in seeing.values()))  # the same on every call
        good = np.exp(rng.normal(0, 0.3, len(held)))
        scores = {k: np.exp(rng.normal(0, 0.3, len(ims)) + seeing.get(k, 0.0) * (np.arange(len(ims)) % 2))
                  for k, ims in faulty.items()}
        return Trial({k: float(freeform.auroc(good, s)) for k, s in scores.items()}, good, scores)
    return trial


def test_joined_auroc_adds_each_candidates_z_against_its_own_good_images():
    held_a, held_b = np.array([1.0, 2.0, 4.0]), np.array([10.0, 10.0, 10.0])  # b's spread: the least counted
    a = Trial({}, held_a, {0: np.array([8.0])})
    b = Trial({}, held_b, {0: np.array([10.0 * np.exp(0.05)])})  # one least spread above b's good images
    z_a = (np.log(8.0) - np.log(2.0)) / (np.log(2.0) * 1.4826)
    assert freeform.good_z(held_a, np.array([8.0]))[0] == pytest.approx(z_a)
    assert freeform.good_z(held_b, b.faulty[0])[0] == pytest.approx(1.0)
    assert joined_auroc([a, b], [0]) == {0: 1.0}


def test_the_choice_measures_joining_and_joins_only_when_asked(monkeypatch):
    sees = {"rt": {0: 2.0, 1: 0.1, 2: 2.0, 3: 2.0}, "fused": {0: 0.1, 1: 2.0, 2: 2.0, 3: 2.0},
            "patch": {0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2}}
    trials = {name: _trial_of(s) for name, s in sees.items()}
    monkeypatch.setattr(freeform, "_trial", lambda name, *a: trials[name](name, *a))
    frames = [np.full((96, 96, 3), 100 + i, np.uint8) for i in range(130)]
    engine, _, _, info = choose_free_form(frames)
    # each alone misses a kind; together they see all four: measured and said, not chosen (docs/photographs.md)
    joined = info["joined"]
    assert joined["parts"][0] == engine and set(joined["parts"]) == {"rt", "fused"} and joined["chosen"] is False
    assert joined["worst_kind_auroc"] > max(info["worst_kind_auroc"][p] for p in ("rt", "fused")) + 0.1
    assert "joined" not in info["worst_kind_auroc"] and "joined" not in info["chosen_by"]
    engine, config, grid, info = choose_free_form(frames, join=True)
    assert engine == "joined" and info["candidate"] == "joined" and info["joined"]["chosen"]
    assert info["worst_kind_auroc"]["joined"] == joined["worst_kind_auroc"]
    assert [p["engine"] for p in config["parts"]] == joined["parts"]
    assert all(p["grid"] == {"cols": 16, "rows": 16, "cell_px": 8} for p in config["parts"]) and grid.size == (128, 128)
    assert "joined, as asked" in info["chosen_by"]


def test_joined_parts_keep_their_crops_the_recipes_the_larger(monkeypatch):
    sees = {"rt": {0: 2.0, 1: 0.1, 2: 2.0, 3: 2.0}, "fused": {0: 0.3, 1: 0.3, 2: 0.3, 3: 0.3},
            "patch": {0: 0.1, 1: 2.0, 2: 2.0, 3: 2.0}}
    trials = {name: _trial_of(s) for name, s in sees.items()}
    monkeypatch.setattr(freeform, "_trial", lambda name, config, grid, *a: trials[
        name if name != "patch" or grid.size == (256, 256) else "fused"](name, config, grid, *a))
    frames = [np.full((300, 300, 3), 100 + i, np.uint8) for i in range(130)]
    engine, config, grid, info = choose_free_form(frames, join=True)
    assert engine == "joined" and set(info["joined"]["parts"]) == {"rt", "patch"}
    crops = {p["engine"]: CellGrid(**p["grid"]).size for p in config["parts"]}
    assert crops == {"rt": (128, 128), "patch": (256, 256)} and grid.size == (256, 256)
    assert config["parts"][[p["engine"] for p in config["parts"]].index("patch")]["config"] == {}  # the engine's own
    few = frames[:10]  # too few to measure: the one the frames' variance favours, with the other kind of engine
    engine, config, grid, info = choose_free_form(few, join=True)
    first = "rt" if info["position_variance_share"] < 0.5 else "patch"
    assert engine == "joined" and [p["engine"] for p in config["parts"]] == [first, {"rt": "patch"}.get(first, "rt")]
    assert "too few" in info["chosen_by"] and "joined, as asked" in info["chosen_by"]


def test_the_engineer_may_ask_for_the_joined_engine_and_train_and_eval_it(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data = write_mvtec(tmp_path / "set", rng)
    recipe = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(recipe), "--quiet", "--engine", "joined"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["engine"] == "joined" and "--engine joined; good images only" in err
    loaded = Recipe.load(recipe)
    choice = loaded.doc.provenance["engine_choice"]
    parts = loaded.doc.engine.config["parts"]
    assert [p["engine"] for p in parts] == choice["joined"]["parts"] and choice["joined"]["chosen"]
    largest = max((CellGrid(**p["grid"]) for p in parts), key=lambda g: g.size[0] * g.size[1])
    assert loaded.grid.size == largest.size
    assert main(["eval", "--recipe", str(recipe), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["auroc"] >= 0.9 and result["pixel_auroc"] > 0.9
    # with cells given, the joined engine's default parts read the recipe's crop
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "cells"), "--quiet", "--engine", "joined",
                 "--grid", "4x4", "--cell-px", "16"]) == 0
    capsys.readouterr()
    assert [p["engine"] for p in Recipe.load(tmp_path / "cells").doc.engine.config["parts"]] == ["patch", "fused"]


def test_the_training_view_retrains_a_joined_recipe_joined_and_other_free_form_ones_by_the_choice():
    from types import SimpleNamespace

    from station.ui.workbench.training_view import AUTO, engine_to_retrain

    def recipe(engine, mode):
        return SimpleNamespace(doc=SimpleNamespace(engine=SimpleNamespace(name=engine)),
                               region=SimpleNamespace(mode=mode))

    assert engine_to_retrain(recipe("joined", "full")) == "joined"
    assert engine_to_retrain(recipe("patch", "full")) == AUTO and engine_to_retrain(recipe("fused", "pose")) == AUTO
    assert engine_to_retrain(recipe("rt", "pattern")) == "rt"  # a taught part keeps its engine


def test_the_joined_engine_asked_for_with_one_candidate_measured_says_there_is_nothing_to_join(monkeypatch):
    rt = _trial_of({0: 2.0, 1: 2.0, 2: 2.0, 3: 2.0})

    def only_rt(name, *a):
        if name != "rt":
            raise EngineError(f"the {name} engine needs more images")
        return rt(name, *a)

    monkeypatch.setattr(freeform, "_trial", only_rt)
    engine, _, _, info = choose_free_form([np.full((96, 96, 3), 100 + i, np.uint8) for i in range(130)], join=True)
    assert engine == "rt" and info["joined"] == {"chosen": False, "why": "only rt could be measured: nothing to "
                                                                          "join it with"}
