"""The image MT engine: the Mahalanobis-Taguchi method over a descriptor of the whole image (grey level,
contrast and colour per block, whole-image quantiles), with a map of each block's share of the distance."""

import numpy as np
import pytest

from station.core.engines import TrainingSet, engine_class
from station.core.errors import EngineError
from station.core.grid import CellGrid

GRID = CellGrid(8, 8, 8)  # a 64 x 64 crop


def shaded(rng, n, side=64, tint=(1.0, 1.0, 1.0)):
    """A lit surface: a soft shading that varies from part to part, and sensor noise."""
    out = []
    yy, xx = np.mgrid[0:side, 0:side] / side
    for _ in range(n):
        g = 110 + 30 * xx * rng.uniform(0.8, 1.2) + 15 * yy * rng.uniform(0.5, 1.5) + rng.normal(0, 4, (side, side))
        out.append(np.dstack([g * t for t in tint]).clip(0, 255).astype(np.uint8))
    return np.stack(out)


def fit(good, config=None):
    engine = engine_class("mt")(GRID, config or {})
    return engine, engine.fit(TrainingSet(good, ["good"] * len(good), [None] * len(good), GRID), seed=0)


def test_a_dark_patch_is_found_and_mapped_in_its_block_and_survives_a_round_trip():
    rng = np.random.default_rng(0)
    engine, report = fit(shaded(rng, 60))
    clean = shaded(rng, 8)
    bad = clean[0].copy()
    bad[40:52, 8:20] = (bad[40:52, 8:20] * 0.6).astype(np.uint8)
    outs = engine.infer_batch(np.concatenate([clean, bad[None]]))
    assert outs[-1].score >= report.thresholds[1] > max(o.score for o in outs[:-1])
    m = outs[-1].pixel_map
    assert m.shape == (64, 64) and m.dtype == np.float32 and m.max() == pytest.approx(outs[-1].score, rel=1e-5)
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert 36 <= y <= 56 and 4 <= x <= 24  # the peak is on the patch's blocks
    again = engine_class("mt").from_saved(GRID, dict(engine.config))
    again.load_arrays(engine.arrays())
    np.testing.assert_allclose(again.infer(bad).pixel_map, m, rtol=1e-6)
    np.testing.assert_allclose(engine.copy().infer(bad).pixel_map, m, rtol=1e-6)


def test_a_colour_change_of_equal_brightness_is_found_on_a_coloured_part_and_grey_parts_ignore_colour():
    rng = np.random.default_rng(1)
    tint = (1.1, 0.95, 0.8)
    engine, report = fit(shaded(rng, 60, tint=tint))
    clean = shaded(rng, 8, tint=tint)
    bad = clean[0].astype(np.float32)
    bad[16:40, 16:40] = bad[16:40, 16:40][..., [1, 0, 2]]  # red and green swapped: about the same grey
    outs = engine.infer_batch(np.concatenate([clean, bad.clip(0, 255).astype(np.uint8)[None]]))
    assert outs[-1].score >= report.thresholds[1] > max(o.score for o in outs[:-1])
    grey_engine, _ = fit(shaded(rng, 40))
    n = 8 * 8
    used = grey_engine.arrays()["used"]
    assert used[:2 * n].all() and not used[2 * n:4 * n].any()  # no colour items where the parts have no colour


def test_bad_settings_arrays_and_good_images_give_one_line():
    with pytest.raises(EngineError, match="blocks"):
        engine_class("mt")(GRID, {"blocks": 40})
    with pytest.raises(EngineError, match="at least 64 px"):
        engine_class("mt")(GRID, {"blocks": 16, "side_px": 32})
    with pytest.raises(EngineError, match="every good image is the same"):
        fit(np.full((20, 64, 64, 3), 128, np.uint8))
    with pytest.raises(EngineError, match="at least 5"):
        fit(shaded(np.random.default_rng(2), 4))
    engine, _ = fit(shaded(np.random.default_rng(3), 30))
    arrays = engine.arrays()
    broken = {**arrays, "precision": arrays["precision"][:-1]}
    with pytest.raises(EngineError, match="do not match"):
        engine.copy().load_arrays(broken)
    with pytest.raises(EngineError, match="not finite"):
        engine.copy().load_arrays({**arrays, "scale": np.full_like(arrays["scale"], np.nan)})
    with pytest.raises(EngineError, match="item mask"):
        engine.copy().load_arrays({**arrays, "used": np.zeros(3, np.uint8)})


def test_a_lamp_3_percent_dimmer_is_not_a_defect_where_parts_of_the_frame_hardly_vary():
    """A part with a black hole and an overexposed (white) corner: those blocks hardly vary among the good
    images, and a unit space that trusted them read a lamp 3 % dimmer as NG on every part (scores 130 times
    the NG threshold). Each item's variance now gets its camera step (one grey level) added; a real dark
    patch is still found."""
    rng = np.random.default_rng(2)

    def parts(n):
        out = np.clip(shaded(rng, n) + rng.uniform(-1.5, 1.5, (n, 1, 1, 1)), 0, 255).astype(np.uint8)  # the lamp
        out[:, 20:44, 20:44] = rng.integers(1, 5, (n, 24, 24, 1))  # a black hole in the part, the sensor's noise
        out[:, :16, :16] = np.clip(rng.normal(256, 2, (n, 16, 16, 1)), 0, 255)  # an overexposed corner
        return out

    engine, report = fit(parts(60))
    held = parts(10)
    dimmer = np.rint(held * 0.97).clip(0, 255).astype(np.uint8)  # a camera rounds
    assert sum(o.score >= report.thresholds[1] for o in engine.infer_batch(dimmer)) <= 1  # of 10
    bad = held[0].copy()
    bad[44:60, 44:60] = (bad[44:60, 44:60] * 0.6).astype(np.uint8)
    assert engine.infer(bad).score >= report.thresholds[1]
