"""The RT and SOART formulas of DESIGN §2.2, and their edge cases."""

import numpy as np
import pytest

from station.core.engines import TrainingSet, engine_class
from station.core.errors import EngineError
from station.core.grid import CellGrid
from station.core.engines.rt import UnitSpace, cell_vectors, rt_metrics, scale_pixels


def test_rt_metrics_match_the_formulas_by_hand():
    x = np.array([[1.0, 2.0, 3.0]])
    y = np.array([[2.0, 4.0, 7.0]])
    xx, xy, yy = 14.0, 2 + 8 + 21, 4 + 16 + 49
    beta = xy / xx
    se = yy - xy**2 / xx
    y2 = np.sqrt(se / 2)
    vol = np.sqrt(np.mean(y**2) / np.mean((beta * x) ** 2))
    shear = np.mean(np.abs(y - beta * vol * x))
    got = rt_metrics(y, x, "soart")[0]
    assert got == pytest.approx([beta, y2, shear])
    assert rt_metrics(y, x, "rt")[0] == pytest.approx([beta, y2])


def test_a_vector_proportional_to_the_standard_has_no_error():
    x = np.array([[0.2, 0.5, 0.9, 0.4]])
    y1, y2, y3 = rt_metrics(3 * x, x, "soart")[0]
    assert y1 == pytest.approx(3.0) and y2 == pytest.approx(0.0, abs=1e-6) and y3 == pytest.approx(0.0, abs=1e-6)


def test_k_below_two_is_refused():
    with pytest.raises(EngineError, match="k >= 2"):
        rt_metrics(np.ones((1, 1)), np.ones((1, 1)))
    with pytest.raises(EngineError, match="k < 2"):
        cell_vectors(np.ones((3, 3)), cols=3, rows=3)


def test_zero_standard_vector_is_refused():
    with pytest.raises(EngineError, match="standard vector is zero"):
        rt_metrics(np.ones((1, 4)), np.zeros((1, 4)))


def test_pixels_are_scaled_so_black_is_not_zero():
    scaled = scale_pixels(np.zeros((4, 4), np.uint8))
    assert scaled.min() > 0


def test_nan_image_is_refused_not_scored():
    img = np.full((8, 8), 100.0)
    img[2, 2] = np.nan
    with pytest.raises(EngineError, match="NaN"):
        scale_pixels(img)


def test_unit_space_needs_three_images():
    with pytest.raises(EngineError, match="at least 3"):
        UnitSpace.fit(np.random.default_rng(0).random((2, 4, 9)))


def test_singular_covariance_is_guarded_and_distance_stays_finite():
    # identical images: every cell's metrics have zero variance
    vectors = np.tile(np.random.default_rng(1).random((1, 4, 16)) + 0.1, (5, 1, 1))
    space = UnitSpace.fit(vectors)
    assert np.all(np.isfinite(space.cov_inv))
    same = space.distance(vectors[0])
    assert np.allclose(same, 0.0, atol=1e-3)
    other = space.distance(vectors[0] * 1.5)
    assert np.all(np.isfinite(other)) and np.all(other > 1.0)


def test_unit_space_mean_distance_is_about_one():
    rng = np.random.default_rng(2)
    base = rng.random((6, 25)) + 0.2
    vectors = base[None] * rng.normal(1, 0.05, (400, 6, 1)) + rng.normal(0, 0.02, (400, 6, 25))
    space = UnitSpace.fit(vectors, ridge=0.0)
    assert space.distance(vectors).mean() == pytest.approx(1.0, rel=0.1)


def _training(crops, labels):
    grid = CellGrid(3, 9, 8)
    return TrainingSet(np.asarray(crops, np.uint8), labels, [None] * len(labels), grid)


def test_rt_engine_handles_constant_images_without_nan():
    grid = CellGrid(3, 9, 8)
    w, h = grid.size
    rng = np.random.default_rng(3)
    crops = [np.clip(rng.normal(120, 10, (h, w, 3)), 0, 255) for _ in range(6)]
    engine = engine_class("rt")(grid)
    engine.fit(_training(crops, ["good"] * 6))
    for value in (0, 255):
        out = engine.infer(np.full((h, w, 3), value, np.uint8))
        assert np.isfinite(out.score) and np.all(np.isfinite(out.cell_scores))
        assert out.score > 10  # a blank frame is nothing like the part


def test_rt_engine_with_fewer_than_three_good_images_says_so():
    grid = CellGrid(3, 9, 8)
    w, h = grid.size
    engine = engine_class("rt")(grid)
    with pytest.raises(EngineError, match="at least 3"):
        engine.fit(_training([np.zeros((h, w, 3))] * 2, ["good"] * 2))


# -- thresholds from held-out scores -------------------------------------------------------------
def test_review_starts_above_the_good_scores_or_at_their_log_normal_tail():
    from station.core.verdict import calibrate_thresholds

    good = np.array([1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.5, 1.0])
    defect = np.array([40.0, 60.0, 90.0])
    review, ng = calibrate_thresholds(good, defect)
    assert review == pytest.approx(1.5 * 1.05) and ng == pytest.approx(np.sqrt(1.5 * 40.0))
    logs = np.log(good)
    tail = float(np.exp(logs.mean() + 2.58 * logs.std(ddof=1)))
    assert tail > 1.5 * 1.05  # the case the tail is for: a short sample's highest score is not its tail
    review_z, ng_z = calibrate_thresholds(good, defect, review_z=2.58)
    assert review_z == pytest.approx(tail) and ng_z == pytest.approx(ng)
    # never above NG: with the defects close, REVIEW stops where NG starts
    review_close, ng_close = calibrate_thresholds(good, np.array([1.6, 1.7, 1.8]), review_z=10.0)
    assert review_close == pytest.approx(ng_close)
    # without defects NG stays 50% above the highest good score and REVIEW under it
    review_only, ng_only = calibrate_thresholds(good, review_z=10.0)
    assert ng_only == pytest.approx(1.5 * 1.5) and review_only == pytest.approx(ng_only)
    assert calibrate_thresholds(good, review_z=2.58)[0] <= ng_only


def test_px_settings_follow_the_cell_size_and_are_saved_as_numbers():
    from station.core.engines.rt_attention import RTAttentionEngine
    from station.core.engines.rt_engine import RTEngine
    from station.core.grid import CellGrid

    assert RTEngine(CellGrid(3, 9, 24)).config["search_px"] == 1
    assert RTEngine(CellGrid(3, 9, 48)).config["search_px"] == 2
    assert RTEngine(CellGrid(3, 9, 48), {"search_px": 0}).config["search_px"] == 0  # an explicit value wins
    rta = RTAttentionEngine(CellGrid(3, 9, 48))
    assert (rta.config["search_px"], rta.config["shift_px"]) == (4, 10)
    rta = RTAttentionEngine(CellGrid(3, 9, 12))
    assert (rta.config["search_px"], rta.config["shift_px"]) == (1, 2)
    import pytest
    from station.core.errors import EngineError

    with pytest.raises(EngineError, match="search_px"):
        RTEngine(CellGrid(3, 9, 24), {"search_px": "wide"})


def test_overlapping_scores_are_cut_by_rates_not_by_counts():
    """Three defect images per good one (a typical labelled set) must not push the NG threshold into the
    good parts: the cost weighs the escape and false-reject rates, not their counts."""
    import numpy as np

    from station.core.verdict import calibrate_thresholds

    good = np.linspace(1.0, 10.0, 40)  # held-out good scores, a long tail
    defect = np.concatenate([[1.5, 2.0], np.linspace(20, 60, 118)])  # two weak defects among 120
    _, ng = calibrate_thresholds(good, defect)
    assert np.mean(good >= ng) <= 0.1  # counts would have cut at 1.5: 97 % of good parts rejected


def _stained_parts(rng, n, side=64):
    """Good grained faces (n, side, side, 3) and one with a dark 6 px square centred on a cell corner."""
    import cv2

    grain = cv2.GaussianBlur(np.random.default_rng(7).normal(0, 1, (side, side)).astype(np.float32), (0, 0), 1.2)
    base = 120 + 30 * grain / grain.std()
    goods = np.stack([np.clip(base + rng.normal(0, 3, base.shape), 0, 255) for _ in range(n)]).astype(np.uint8)
    flawed = goods[0].copy()
    flawed[29:35, 29:35] = 30  # the corner of four 8 px cells, at (32, 32)
    return np.repeat(goods[..., None], 3, axis=-1), np.repeat(flawed[..., None], 3, axis=-1)


def test_a_staggered_map_puts_a_flaw_on_a_cell_corner_where_it_is_and_keeps_the_score():
    """RT alone maps from two grids half a cell apart: the cells' map is flat over the four cells a flaw on their
    corner touches; the second grid has a cell centred on it. The score, cells and thresholds stay the first grid's,
    and the second unit space is saved and read back with the recipe's arrays."""
    rng = np.random.default_rng(0)
    goods, flawed = _stained_parts(rng, 24)
    grid = CellGrid(8, 8, 8)
    data = TrainingSet(goods, ["good"] * len(goods), [None] * len(goods), grid)
    config = {"pixel_map": True, "search_px": 0, "calibration": "robust"}
    plain, staggered = (engine_class("rt")(grid, {**config, "staggered": s}) for s in (False, True))
    report_plain, report_staggered = plain.fit(data), staggered.fit(data)
    assert report_plain.thresholds == report_staggered.thresholds
    assert staggered.capabilities.map_name == "RT distance per 8 px patch, drawn per pixel"  # the legend
    assert engine_class("rt")(grid, {"search_px": 0}).capabilities.map_name == "RT distance per cell"
    a, b = plain.infer(flawed), staggered.infer(flawed)
    assert a.score == b.score and np.array_equal(a.cell_scores, b.cell_scores) and b.pixel_map.max() <= b.score
    def off(m):  # how far the centre of the map's top tenth is from the flaw's centre, px
        ys, xs = np.nonzero(m >= 0.9 * m.max())
        return float(np.hypot(ys.mean() - 31.5, xs.mean() - 31.5))

    assert off(b.pixel_map) <= 1.5 and off(b.pixel_map) < off(a.pixel_map) - 1
    inside = lambda m: m[28:36, 28:36].mean() / m.mean()  # noqa: E731 - how much of the map sits on the flaw
    assert inside(b.pixel_map) > 1.2 * inside(a.pixel_map)
    arrays = staggered.arrays()
    assert {"offset.standard", "offset.mean", "offset.cov_inv"} <= set(arrays)
    loaded = engine_class("rt").from_saved(grid, staggered.config)
    loaded.load_arrays(arrays)
    assert np.array_equal(loaded.infer(flawed).pixel_map, b.pixel_map)
    before = engine_class("rt").from_saved(grid, {k: v for k, v in plain.config.items() if k != "staggered"})
    before.load_arrays(plain.arrays())  # a recipe saved before the setting: one grid, as then
    assert before.offset_space is None and np.array_equal(before.infer(flawed).pixel_map, a.pixel_map)
    with pytest.raises(EngineError, match="offset.standard"):
        loaded.load_arrays(plain.arrays())


def _coloured_parts(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(good colour crops, the held-out good ones, the same with a stain of another hue at the same grey level)."""
    from station.core.freeform import colour_defect

    def part():
        im = np.full((64, 64, 3), (60, 140, 200), np.float32)
        im[16:40, 20:52] = (200, 80, 40)
        return np.clip(im + rng.normal(0, 3, im.shape), 0, 255).astype(np.uint8)

    goods = np.stack([part() for _ in range(n)])
    held = np.stack([part() for _ in range(12)])
    return goods, held, np.stack([colour_defect(im, rng) for im in held])


@pytest.mark.parametrize("search_px", [0, 1])
def test_rt_in_colour_sees_a_stain_of_another_hue_that_grey_rt_cannot(search_px):
    """RT read grey levels only: a stain of another hue at the same grey level scored at chance (0.51 on the
    transistor's held-out good images). With `colour` a cell's vector holds its grey, a* and b* pixels."""
    from station.core.evaluate import auroc

    rng = np.random.default_rng(3)
    goods, held, stained = _coloured_parts(rng, 30)
    grid = CellGrid(8, 8, 8)
    data = TrainingSet(goods, ["good"] * len(goods), [None] * len(goods), grid)
    found = {}
    for colour in (False, True):
        engine = engine_class("rt")(grid, {"pixel_map": True, "search_px": search_px, "colour": colour})
        engine.fit(data)
        scores = lambda crops: [o.score for o in engine.infer_batch(crops)]  # noqa: E731
        found[colour] = auroc(scores(held), scores(stained))
    assert found[False] < 0.75 and found[True] > 0.95


def test_rt_in_colour_saves_and_reads_back_and_a_grey_recipe_is_read_in_grey():
    rng = np.random.default_rng(4)
    goods, held, stained = _coloured_parts(rng, 16)
    grid = CellGrid(8, 8, 8)
    data = TrainingSet(goods, ["good"] * len(goods), [None] * len(goods), grid)
    config = {"pixel_map": True, "search_px": 0, "staggered": True}
    colour = engine_class("rt")(grid, {**config, "colour": True})
    colour.fit(data)
    assert colour.unit_space.standard.shape == (64, 3 * 64)
    loaded = engine_class("rt").from_saved(grid, colour.config)
    loaded.load_arrays(colour.arrays())
    assert np.array_equal(loaded.infer(stained[0]).pixel_map, colour.infer(stained[0]).pixel_map)
    grey = engine_class("rt")(grid, config)
    grey.fit(data)
    before = engine_class("rt").from_saved(grid, {k: v for k, v in grey.config.items() if k != "colour"})
    assert before.config["colour"] is False  # a recipe saved before the setting reads grey, as then
    before.load_arrays(grey.arrays())
    assert before.infer(stained[0]).score == grey.infer(stained[0]).score
    with pytest.raises(EngineError, match="channels"):  # a grey unit space is not read as a colour one
        loaded.load_arrays(grey.arrays())
    # a grey crop given to a colour recipe has neutral opponent colours: scored, not refused
    assert np.isfinite(colour.infer(goods[0].mean(axis=-1).astype(np.uint8)).score)
