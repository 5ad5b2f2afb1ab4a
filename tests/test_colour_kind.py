"""A product in colour is also measured on stains of another hue at the same lightness (station.core.freeform):
an engine that reads grey levels only is blind to them and is not chosen for it; RT reads colour there."""

from __future__ import annotations

import cv2
import numpy as np

from station.core import freeform
from station.core.freeform import COLOUR, VISIBLE_LEVELS, choose_free_form, colour_defect, in_colour


def board(rng: np.random.Generator, side: int = 96) -> np.ndarray:
    """An aligned part in colour: a copper board with dark holes and a blue component, a little noise."""
    img = np.zeros((side, side, 3), np.float32)
    img[:] = (190, 120, 90)
    for y in range(12, side, 24):
        for x in range(12, side, 24):
            cv2.circle(img, (x, y), 5, (40, 30, 30), -1)
    cv2.rectangle(img, (30, 30), (66, 60), (40, 60, 150), -1)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_grey_cameras_frames_are_not_in_colour_and_a_coloured_part_is():
    rng = np.random.default_rng(0)
    grey = [cv2.cvtColor(cv2.cvtColor(board(rng), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for _ in range(4)]
    assert not in_colour(grey)
    assert in_colour([board(rng) for _ in range(4)])
    # a colour camera's noise on a grey part, each channel its own: no colour (unsmoothed its chroma read 2.8)
    part = np.full((96, 96, 3), 60, np.uint8)
    cv2.rectangle(part, (24, 12), (72, 84), (200, 200, 200), -1)
    assert not in_colour([np.clip(part + rng.normal(0, 4, part.shape), 0, 255).astype(np.uint8) for _ in range(8)])


def test_a_colour_stain_keeps_the_grey_level_and_changes_what_a_camera_sees():
    rng = np.random.default_rng(1)
    part = board(rng)
    for seed in range(6):
        out = colour_defect(part, np.random.default_rng(seed))
        change = np.abs(out.astype(int) - part).max(axis=-1)
        stained = change > 4
        assert stained.any() and change[stained].mean() >= VISIBLE_LEVELS
        grey = np.abs(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(int) - cv2.cvtColor(part, cv2.COLOR_RGB2GRAY))
        assert grey[stained].mean() < 2  # another hue, not a darker or brighter spot


def test_on_a_product_in_colour_rt_reads_colour_and_sees_the_stains(monkeypatch):
    rng = np.random.default_rng(2)
    goods = [board(rng) for _ in range(48)]
    engine, config, _, info = choose_free_form(goods)
    found = info["synthetic_auroc_per_kind"]
    assert all(COLOUR in kinds for kinds in found.values())
    assert found["rt"][COLOUR] > 0.9  # RT's cells hold grey and two opponent colours
    assert min(found[info["candidate"]].values()) > 0.9
    rt_configs = [config] if engine == "rt" else [p["config"] for p in config.get("parts", []) if p["engine"] == "rt"]
    assert all(c["colour"] for c in rt_configs)
    # read in grey, as it was, RT is blind to them and is not chosen
    grey_rt = freeform.candidate_configs
    monkeypatch.setattr(freeform, "candidate_configs", lambda colour=False: grey_rt(False))
    _, _, _, blind = choose_free_form(goods)
    assert blind["synthetic_auroc_per_kind"]["rt"][COLOUR] < 0.7 and blind["candidate"] != "rt"
    # the same part from a grey camera: no colour kind, and the shape kinds are drawn as before
    grey = [cv2.cvtColor(cv2.cvtColor(g, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for g in goods]
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    order = np.arange(len(goods))
    _, _, colour_sets = freeform.trial_sets(goods, order, 8, rng_a)
    _, _, grey_sets = freeform.trial_sets(grey, order, 8, rng_b)
    assert COLOUR in colour_sets and COLOUR not in grey_sets
    assert set(grey_sets) == set(range(freeform.KINDS))


def test_rt_picked_by_the_engineer_reads_colour_on_a_product_in_colour_and_grey_on_a_grey_one():
    from station.core.freeform_plan import plan_free_form

    rng = np.random.default_rng(6)
    goods = [board(rng) for _ in range(12)]
    grey = [cv2.cvtColor(cv2.cvtColor(g, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for g in goods]
    assert plan_free_form(goods, engine="rt").config["colour"] is True
    assert "colour" not in plan_free_form(grey, engine="rt").config  # the engine's default: grey
