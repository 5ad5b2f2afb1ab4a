"""RT-attention's pin: the heads are read at the `top_cells` cells of largest distance and the cell where they
find the defect likeliest is the pin named, so a pin leaning into the next cell is named at its own; the score
and the map stay the RT distance's, and the station takes the pin the engine names."""

from __future__ import annotations

import numpy as np
import pytest

from station.core.engines.base import EngineOutput
from station.core.engines.rt_attention import RTAttentionEngine
from station.core.errors import EngineError
from station.core.grid import CellGrid
from station.core.inspector import top_cell

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


def test_the_top_cell_is_where_the_heads_find_the_defect_among_the_most_distant(fitted, monkeypatch):
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
    for out in (one, two):  # the map is the RT distance either way
        np.testing.assert_allclose(out.cell_scores.ravel(), fake)
    # heads at the most distant cell only (recipes before the setting): the next cell is named
    assert top_cell(one) == (2, 4)
    # heads at the two most distant cells: the heads, fitted on the labelled cells, name the pin's own
    assert top_cell(two) == (1, 4)
    assert max((c for c in two.class_probs if c != "good"), key=two.class_probs.get) == "tilted"
    # the score is the most distant cell's either way: how unlike good the part is does not hang on the heads
    assert two.score == pytest.approx(one.score) and two.extra["rt_distance"] == pytest.approx(fake[beside])


def test_the_station_takes_the_pin_the_engine_names():
    scores = np.zeros((9, 3))
    scores[4, 2] = 5.0
    assert top_cell(EngineOutput(1.0, scores)) == (2, 4)  # no pin named: the highest cell score
    assert top_cell(EngineOutput(1.0, scores, top_cell=(1, 4))) == (1, 4)
    scores[0, 0] = np.nan  # a cell whose score is not finite counts as the highest
    assert top_cell(EngineOutput(1.0, scores)) == (0, 0)
    with pytest.raises(EngineError, match="outside"):
        top_cell(EngineOutput(1.0, scores, top_cell=(3, 0)))


def test_top_cells_is_saved_and_validated(fitted):
    assert RTAttentionEngine.from_saved(GRID, {}).config["top_cells"] == 1  # a recipe without the key
    again = _with(fitted)
    crop = draw_crop(np.random.default_rng(6), "pushed", (0, 2))
    out, expect = again.infer(crop), fitted.infer(crop)
    np.testing.assert_allclose(out.cell_scores, expect.cell_scores)
    assert top_cell(out) == top_cell(expect) == (0, 2)
    one_cell = CellGrid(1, 1, 24)  # more cells asked for than the grid has: every cell is read
    assert RTAttentionEngine(one_cell, {"top_cells": 16, "detect_parts": [2, 2]}).config["top_cells"] == 16
    for bad in (0, 17, True, "2", 1.5):
        with pytest.raises(EngineError, match="top_cells"):
            RTAttentionEngine(GRID, {"top_cells": bad})
