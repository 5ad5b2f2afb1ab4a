"""RT-attention's top cell (the pin it names): the heads are read at the `top_cells` cells of largest distance
and the cell of highest verdict score is the top, so a pin leaning into the next cell is named at its own."""

from __future__ import annotations

import numpy as np
import pytest

from station.core.engines.rt_attention import RTAttentionEngine
from station.core.errors import EngineError

from test_rt_attention import GRID, draw_crop, training_set


@pytest.fixture(scope="module")
def fitted() -> RTAttentionEngine:
    engine = RTAttentionEngine(GRID)
    engine.fit(training_set({"good": 8, "pushed": 4, "tilted": 4, "missing": 4}))
    return engine


def _with(engine: RTAttentionEngine, **config) -> RTAttentionEngine:
    twin = RTAttentionEngine(GRID, {**engine.config, **config})
    twin.load_arrays(engine.arrays())
    return twin


def test_the_top_cell_is_the_one_of_highest_score_among_the_most_distant(fitted, monkeypatch):
    assert fitted.config["top_cells"] == 2
    crop = draw_crop(np.random.default_rng(5), "tilted", (1, 4))
    own, beside = GRID.index(1, 4), GRID.index(2, 4)
    d2 = fitted.detect(fitted._rt._scaled(crop))
    assert int(np.argmax(d2)) == own
    fake = d2.copy()
    fake[beside] = 1.5 * d2[own]  # the pin's top seen as more distant in the next cell, as on the demo

    outs = {}
    for k in (1, 2):
        engine = _with(fitted, top_cells=k)
        monkeypatch.setattr(engine, "detect", lambda scaled, vectors=None: fake)
        outs[k] = engine.infer(crop)
    one, two = outs[1], outs[2]
    # heads at the most distant cell only (recipes before the setting): the next cell is named
    assert int(np.argmax(one.cell_scores)) == beside
    np.testing.assert_allclose(one.cell_scores.ravel(), fake)
    # heads at the two most distant cells: the heads, fitted on the labelled cells, name the pin's own
    assert int(np.argmax(two.cell_scores)) == own
    assert two.score == pytest.approx(float(two.cell_scores.max()))  # the map peaks with the image's score
    assert max((c for c in two.class_probs if c != "good"), key=two.class_probs.get) == "tilted"
    assert two.score >= one.score  # the verdict score is the highest of the scores read


def test_top_cells_is_saved_and_validated(fitted):
    assert RTAttentionEngine.from_saved(GRID, {}).config["top_cells"] == 1  # a recipe without the key
    again = _with(fitted)
    crop = draw_crop(np.random.default_rng(6), "pushed", (0, 2))
    np.testing.assert_allclose(again.infer(crop).cell_scores, fitted.infer(crop).cell_scores)
    for bad in (0, GRID.n_cells + 1, True, "2", 1.5):
        with pytest.raises(EngineError, match="top_cells"):
            RTAttentionEngine(GRID, {"top_cells": bad})
