"""The texture engine (a learned neighbour predictor: what the surface's own pattern does not predict) and the
fused engine (several anomaly engines read against good parts, the one that sees most decides)."""

import cv2
import numpy as np
import pytest

from station.core.engines import TrainingSet, engine_class
from station.core.errors import EngineError
from station.core.freeform import choose_free_form
from station.core.grid import CellGrid

from choice_rule import chosen_by_the_rule

GRID = CellGrid(8, 8, 8)  # a 64 x 64 crop


def stripes(rng, n, side=64):
    """Brushed-metal-like tiles: vertical streaks at random places and a soft shading (no fixed position)."""
    out = []
    for _ in range(n):
        cols = rng.normal(0, 14, side)
        g = 120 + cols[None, :] + np.linspace(-10, 10, side)[:, None] * rng.uniform(-1, 1)
        g = g + rng.normal(0, 3, (side, side))
        out.append(np.dstack([g.clip(0, 255).astype(np.uint8)] * 3))
    return np.stack(out)


def with_hole(img, at=(22, 40), r=3):
    out = img.copy()
    cv2.circle(out, at, r, (30, 30, 30), -1)
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(mask, at, r, 255, -1)
    return out, mask


def fit(name, config, good):
    engine = engine_class(name)(GRID, config)
    return engine, engine.fit(TrainingSet(good, ["good"] * len(good), [None] * len(good), GRID), seed=0)


@pytest.mark.parametrize("name", ["texture", "fused"])
def test_a_hole_in_a_streaked_surface_is_mapped_where_it_is_and_survives_a_round_trip(name):
    rng = np.random.default_rng(0)
    engine, report = fit(name, {}, stripes(rng, 40))
    clean = stripes(rng, 6)
    bad, mask = with_hole(clean[0])
    outs = engine.infer_batch(np.concatenate([clean, bad[None]]))
    m = outs[-1].pixel_map
    assert m.shape == (64, 64) and m.dtype == np.float32
    assert outs[-1].score > max(o.score for o in outs[:-1])
    assert outs[-1].score >= report.thresholds[1] and max(o.score for o in outs[:-1]) < report.thresholds[1]
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert abs(y - 40) <= 4 and abs(x - 22) <= 4  # the peak is on the hole
    assert outs[-1].cell_scores.shape == (8, 8) and outs[-1].cell_scores.max() == pytest.approx(outs[-1].score)
    again = engine_class(name).from_saved(GRID, dict(engine.config))
    again.load_arrays(engine.arrays())
    np.testing.assert_allclose(again.infer(bad).pixel_map, m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine.copy().infer(bad).pixel_map, m, rtol=1e-5, atol=1e-5)


def test_texture_model_learns_the_grain_so_streaks_are_not_defects():
    """Along the streaks a pixel is predicted by its neighbours above and below: the learned weights say so,
    and a new streak (the texture itself) scores lower than a small dark hole."""
    rng = np.random.default_rng(1)
    engine, _ = fit("texture", {"levels": [0]}, stripes(rng, 40))
    w = engine.weights[0][:8]
    ring = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    vertical = sum(abs(w[i]) for i, (dy, dx) in enumerate(ring) if dx == 0)
    assert vertical > 0.5 * np.abs(w).sum()
    plain = stripes(rng, 1)[0]
    streak = plain.copy()
    streak[:, 30] = np.clip(streak[:, 30].astype(int) - 25, 0, 255).astype(np.uint8)  # one more dark streak
    hole, _ = with_hole(plain)
    s_streak, s_hole = (engine.infer(im).score for im in (streak, hole))
    assert s_hole > 1.5 * s_streak


def test_a_dimmer_lamp_changes_nothing_for_the_texture_model():
    rng = np.random.default_rng(2)
    engine, _ = fit("texture", {}, stripes(rng, 30))
    img = stripes(rng, 1)[0]
    dim = (img.astype(np.float32) * 0.7).astype(np.uint8)
    assert engine.infer(dim).score == pytest.approx(engine.infer(img).score, rel=0.1)


def test_bad_settings_and_arrays_are_refused_in_one_line():
    with pytest.raises(EngineError, match="levels"):
        engine_class("texture")(GRID, {"levels": [0, 0]})
    with pytest.raises(EngineError, match="too small"):
        engine_class("texture")(GRID, {"levels": [3], "radius_px": 8})
    with pytest.raises(EngineError, match="radius_px"):
        engine_class("texture")(GRID, {"radius_px": 100})
    with pytest.raises(EngineError, match="not been fitted"):
        engine_class("texture")(GRID).infer(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(EngineError, match="weights"):
        engine_class("texture")(GRID).load_arrays({"weights": np.zeros((5, 5), np.float32)})
    texture, _ = fit("texture", {}, stripes(np.random.default_rng(3), 12))
    arrays = texture.arrays()
    arrays["spread.0"] = np.zeros_like(arrays["spread.0"])
    with pytest.raises(EngineError, match="finite and positive"):
        engine_class("texture")(GRID).load_arrays(arrays)
    with pytest.raises(EngineError, match="joins"):
        engine_class("fused")(GRID, {"parts": [{"engine": "vit"}, {"engine": "rt"}]})
    with pytest.raises(EngineError, match="parts"):
        engine_class("fused")(GRID, {"parts": [{"engine": "rt"}]})
    with pytest.raises(EngineError, match="statistics"):
        engine_class("fused")(GRID).load_arrays({})
    with pytest.raises(EngineError, match="at least 8"):
        fit("fused", {}, stripes(np.random.default_rng(4), 5))


def test_the_free_form_choice_tries_the_fused_engine_and_keeps_the_simplest_on_a_tie():
    rng = np.random.default_rng(5)
    tiles = list(stripes(rng, 40))
    engine, config, grid, info = choose_free_form(tiles)
    assert set(info["synthetic_auroc"]) == {"rt", "fused", "patch"}
    for name, kinds in info["synthetic_auroc_per_kind"].items():  # an engine counts as good as its worst kind
        assert set(kinds) == {"spot", "scratch", "pasted", "smudge"}
        assert info["synthetic_auroc"][name] == min(kinds.values())
    assert engine == chosen_by_the_rule(info["ranking"], ("rt", "fused", "patch"))
    if engine == "fused":
        assert [p["engine"] for p in config["parts"]] == ["rt", "texture", "mt"] and grid.size == (128, 128)
        assert config["rule"] == "sum"


def test_fused_scores_stay_ordered_and_inside_a_recipes_bounds_for_near_identical_good_parts():
    """With good parts almost alike the spread of their scores is tiny, and every small difference was dozens of
    spreads: thresholds of e^40 that no recipe may hold. The spread counted is at least 5 % and distances beyond
    8 spreads grow by their logarithm."""
    rng = np.random.default_rng(7)
    base = stripes(rng, 1)[0].astype(np.int16)
    good = np.stack([np.clip(base + rng.integers(-1, 2, base.shape), 0, 255).astype(np.uint8) for _ in range(20)])
    engine, report = fit("fused", {}, good)
    assert (engine.spread >= 0.05).all() and max(report.thresholds) < 1e6
    dark, _ = with_hole(good[0], r=4)
    faint = (0.5 * good[0] + 0.5 * dark).astype(np.uint8)  # the same hole, half as deep
    s_faint, s_dark = engine.infer(faint).score, engine.infer(dark).score
    assert report.thresholds[1] <= s_faint < s_dark < np.exp(8 + np.log1p(1e6))


def test_fused_evidence_adds_up_by_the_sum_rule_and_old_recipes_keep_the_largest():
    """Where two parts each see a defect a little, the sum rule counts both; a recipe saved before the rule
    existed keeps its old behaviour (the largest part decides)."""
    rng = np.random.default_rng(8)
    good = stripes(rng, 40)
    engine, _ = fit("fused", {"rule": "sum"}, good)
    bad, _ = with_hole(stripes(rng, 1)[0])
    out = engine.infer(bad)
    z = [(np.log(s) - c) / w for s, c, w in zip(out.extra["parts"].values(), engine.centre, engine.spread)]
    assert sum(v for v in z if v > 0) > max(z) > 0  # both parts see the hole
    old = engine_class("fused").from_saved(GRID, {k: v for k, v in engine.config.items() if k != "rule"})
    assert old.config["rule"] == "max"
    old.load_arrays(engine.arrays())
    assert old.infer(bad).score < out.score
    with pytest.raises(EngineError, match="rule"):
        engine_class("fused")(GRID, {"rule": "mean"})


def test_synthetic_defects_of_every_kind_change_the_image_and_a_smudge_wipes_out_the_grain():
    from station.core.freeform import KINDS, synthetic_defect

    rng = np.random.default_rng(9)
    tile, donor = stripes(rng, 2, side=128)
    for kind in range(KINDS):
        out = synthetic_defect(tile, donor, np.random.default_rng(kind), kind=kind)
        assert out.shape == tile.shape and out.dtype == np.uint8 and np.abs(out.astype(int) - tile).max() > 20
    smudged = synthetic_defect(tile, donor, np.random.default_rng(3), kind=3).astype(float)[..., 0]
    changed = np.abs(smudged - tile[..., 0]) > 10
    assert smudged[changed].std() < tile[..., 0][changed].std()  # less grain where it changed


def test_synthetic_defects_land_where_a_camera_would_see_them():
    """A part on a black background: a dark spot or a smudge drawn on the black changed it by a level or two,
    which the choice then measured as a defect (a lamp's drift, in effect). Each is drawn again until it is
    visible: on the part, or bright."""
    from station.core.freeform import KINDS, VISIBLE_LEVELS, synthetic_defect

    part = np.full((240, 240, 3), 3, np.uint8)
    cv2.circle(part, (150, 120), 60, (150, 150, 150), -1)
    rng = np.random.default_rng(4)
    for kind in range(KINDS):
        for _ in range(10):
            out = synthetic_defect(part, part, rng, kind=kind)
            change = np.abs(out.astype(int) - part).max(axis=-1)
            assert change[change > 2].mean() >= VISIBLE_LEVELS, kind


def test_the_free_form_choice_works_from_a_dozen_good_images_and_skips_an_engine_it_cannot_measure(monkeypatch):
    """Twelve good images made `station train` fail: the fused candidate's image MT was fitted on 6 of them
    and wanted 8. Every candidate is now measured from a dozen, and one that cannot be is left out, saying why."""
    import station.core.freeform as freeform

    tiles = list(stripes(np.random.default_rng(10), 12))
    engine, _, _, info = choose_free_form(tiles)
    assert set(info["synthetic_auroc"]) == {"rt", "fused", "patch"} and "not_measured" not in info
    real_trial = freeform._trial

    def patch_fails(name, *args):
        if name == "patch":
            raise EngineError("the patch engine needs more images")
        return real_trial(name, *args)

    monkeypatch.setattr(freeform, "_trial", patch_fails)
    engine, _, _, info = choose_free_form(tiles)
    assert engine in ("rt", "fused") and set(info["synthetic_auroc"]) == {"rt", "fused"}
    assert info["not_measured"] == {"patch": "the patch engine needs more images"}
    monkeypatch.setattr(freeform, "_trial", lambda *a: (_ for _ in ()).throw(EngineError("too few")))
    with pytest.raises(EngineError, match="no free-form engine could be measured"):
        choose_free_form(tiles)
