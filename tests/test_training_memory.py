"""A training set too large to hold in memory once read is sampled (seeded), and the engineer is told: thousands
of a large camera's frames must not run a plain PC out of memory halfway through training."""

from __future__ import annotations

import json

import cv2
import numpy as np

from station.cli import main
from station.core import training
from station.core.dataset import load_dataset
from station.core.recipe import Recipe

from test_patch import write_mvtec

TILE = 64 * 64 * 3  # one 64 x 64 tile's bytes once read


def test_frames_are_counted_from_their_headers_as_they_will_be_kept(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.zeros((300, 200, 3), np.uint8))
    assert training.frame_bytes(path, whole_frames=False) == 300 * 200 * 3
    monkeypatch.setattr(training, "WHOLE_SHORT_PX", 100)  # a whole frame is kept at most this on its shorter side
    assert training.frame_bytes(path, whole_frames=True) == 150 * 100 * 3
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert training.frame_bytes(tmp_path / "broken.png", whole_frames=True) == 0  # left out when it is read


def test_a_set_too_large_to_hold_is_sampled_by_its_seed_and_one_that_fits_is_not(tmp_path, monkeypatch):
    data = load_dataset(write_mvtec(tmp_path / "set", np.random.default_rng(0), n_train=20), "train")
    same, line = training.within_memory(data, whole_frames=True)
    assert same is data and line is None
    monkeypatch.setattr(training, "TRAIN_FRAME_BYTES", 10 * TILE)
    sampled, line = training.within_memory(data, whole_frames=True, seed=0)
    assert len(sampled.samples) == 10 and "10 of 20 images used, a seeded sample" in line
    paths = [s.path for s in sampled.samples]
    assert paths == [s.path for s in training.within_memory(data, whole_frames=True, seed=0)[0].samples]
    assert paths != [s.path for s in training.within_memory(data, whole_frames=True, seed=1)[0].samples]
    assert paths == sorted(paths)  # the dataset's order kept


def test_station_train_says_it_sampled_and_the_recipe_keeps_it(tmp_path, monkeypatch, capsys):
    data = write_mvtec(tmp_path / "set", np.random.default_rng(1), n_train=30)
    monkeypatch.setattr(training, "TRAIN_FRAME_BYTES", 24 * TILE)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet", "--engine", "rt",
                 "--grid", "4x4", "--cell-px", "16"]) == 0
    out, err = capsys.readouterr()
    assert "24 of 30 images used, a seeded sample" in err
    stats = json.loads(out)
    assert stats["n_train"] == {"good": 24} and stats["sampled"].startswith("24 of 30")
    assert Recipe.load(tmp_path / "r").doc.provenance["sampled"].startswith("24 of 30")


def test_the_workbench_says_it_sampled_among_its_warnings(tmp_path, monkeypatch):
    from station.core.freeform_plan import AUTO, fit_free_form

    data = load_dataset(write_mvtec(tmp_path / "set", np.random.default_rng(2), n_train=30), "train")
    monkeypatch.setattr(training, "TRAIN_FRAME_BYTES", 24 * TILE)
    recipe, stats = fit_free_form(data, AUTO, "sampled")
    assert stats["warnings"][0].startswith("24 of 30 images used, a seeded sample")
    assert stats["n_train"] == {"good": 24} and recipe.doc.provenance["sampled"] == stats["warnings"][0]
