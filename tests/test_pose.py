"""A part that lies at any angle on a plain background is turned back to one pose (station.core.pose)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from station.cli import main
from station.core.errors import RegistrationError
from station.core.grid import CellGrid
from station.core.inspector import Inspector
from station.core.pose import (fit_pose, fit_round, part_pose, pattern_turn, round_part_pose, swept_circle,
                               turned_back_goods)
from station.core.recipe import Recipe
from station.core.registration import Registrar, fit_pose_region

SIDE = 200


def screw(rng: np.random.Generator, angle: float | None = None, notch: bool = False,
          centre: tuple[float, float] | None = None, mask: list | None = None) -> np.ndarray:
    """A dark shaft with a head at one end, on a light, slightly noisy table, turned by `angle` (random if None);
    with `notch`, a bite out of the shaft's side near its tip (its mask appended to `mask`, where given)."""
    canvas = np.full((SIDE, SIDE), 205, np.float32)
    part = np.zeros((SIDE, SIDE), np.float32)
    cv2.rectangle(part, (60, 94), (150, 106), 1.0, -1)  # the shaft
    cv2.circle(part, (60, 100), 16, 1.0, -1)  # the head, heavier end
    for x in range(80, 150, 10):  # a thread
        cv2.line(part, (x, 91), (x + 4, 109), 1.0, 2)
    if notch:
        cv2.circle(part, (130, 92), 6, 0.0, -1)
    angle = float(rng.uniform(0, 360)) if angle is None else angle
    cx, cy = centre if centre is not None else (SIDE / 2 + rng.uniform(-15, 15), SIDE / 2 + rng.uniform(-15, 15))
    m = cv2.getRotationMatrix2D((105, 100), angle, 1.0)
    m[:, 2] += [cx - 105, cy - 100]
    part = cv2.warpAffine(part, m, (SIDE, SIDE), flags=cv2.INTER_LINEAR)
    if mask is not None:
        bite = np.zeros((SIDE, SIDE), np.uint8)
        cv2.circle(bite, (130, 92), 6, 255, -1)
        mask.append(cv2.warpAffine(bite, m, (SIDE, SIDE), flags=cv2.INTER_NEAREST))
    image = canvas * (1 - part) + 60 * part + rng.normal(0, 3, (SIDE, SIDE))
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)


def write_set(root, draw, defect: str) -> None:
    """An MVTec-layout set of 40 good training frames and 8 good and 8 `defect` test frames with their masks;
    `draw(defective, masks)` makes one frame (appending its defect's mask to `masks`)."""
    (root / "train" / "good").mkdir(parents=True)
    for i in range(40):
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), draw(False, None))
    (root / "ground_truth" / defect).mkdir(parents=True)
    for cls, defective in (("good", False), (defect, True)):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(8):
            masks: list = []
            cv2.imwrite(str(root / "test" / cls / f"{i:03d}.png"), draw(defective, masks))
            if defective:
                cv2.imwrite(str(root / "ground_truth" / defect / f"{i:03d}_mask.png"), masks[0])


def hottest_in_frame(recipe: Recipe, frame: np.ndarray) -> np.ndarray:
    """Where in `frame` (x, y) the recipe's map is hottest: its pixel taken back to the frame through the pose."""
    result = Inspector(recipe).inspect(frame)
    y, x = np.unravel_index(np.argmax(result.pixel_map), result.pixel_map.shape)
    scale = recipe.grid.size[0] / result.pixel_map.shape[1]
    return result.registered.to_frame(np.array([[(x + 0.5) * scale, (y + 0.5) * scale]]))[0]


def test_the_pose_is_the_parts_axis_from_its_heavier_end_wherever_it_lies():
    rng = np.random.default_rng(0)
    for angle in (0.0, 37.0, 90.0, 200.0, 300.0):
        pose = part_pose(screw(rng, angle, centre=(90.0, 110.0)))
        # the head (heavier end) first: the axis points from the head to the tip, the frame's y axis downwards
        expected = (-angle) % 360
        assert min(abs(pose.angle % 360 - expected), 360 - abs(pose.angle % 360 - expected)) < 6
        assert np.hypot(pose.centre[0] - 90, pose.centre[1] - 110) < 20  # its mass's centre: the head pulls it
        assert 100 < pose.length < 140  # the part is about 120 px long
        assert pose.elongation > 2


def test_turned_back_frames_show_the_part_in_one_pose():
    rng = np.random.default_rng(1)
    goods = [screw(rng) for _ in range(24)]
    fit, views, info = turned_back_goods(goods)
    assert fit is not None and info["used"]
    before, after = info["position_variance_share"]
    assert after < 0.5 * before
    grey = np.stack([cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) for v in views]).astype(np.float32)
    mean = grey.mean(axis=0)
    # every view is like the mean view: none is the wrong way round
    for g in grey:
        assert np.corrcoef(g.ravel(), mean.ravel())[0, 1] > 0.8


@pytest.mark.parametrize("what", ["round", "surface", "blank"])
def test_surfaces_are_not_turned_and_a_part_without_an_axis_is_not_turned_by_one(what):
    rng = np.random.default_rng(2)
    frames = []
    for _ in range(12):
        image = np.full((SIDE, SIDE), 205, np.float32) + rng.normal(0, 3, (SIDE, SIDE))
        if what == "round":
            cv2.circle(image, (int(rng.integers(80, 120)), int(rng.integers(80, 120))), 40, 60.0, -1)
        elif what == "surface":
            image = cv2.GaussianBlur(rng.uniform(0, 255, (SIDE, SIDE)).astype(np.float32), (0, 0), 4) * 3 - 200
        frames.append(cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB))
    assert fit_pose(frames) is None
    fit, views, info = turned_back_goods(frames)
    if what == "round":  # a disc that moves is centred, and turned by its pattern, not by an axis it lacks
        assert fit is not None and fit.turn == "pattern" and info["used"]
        return
    assert fit is None and views is frames


def test_a_part_the_fixture_holds_in_one_pose_keeps_the_whole_frame():
    rng = np.random.default_rng(6)
    held = [screw(rng, float(rng.uniform(-2, 2)), centre=(100 + rng.uniform(-3, 3), 100)) for _ in range(20)]
    fit, views, info = turned_back_goods(held)
    assert fit is None and views is held
    loose = [screw(rng, float(rng.uniform(-20, 20))) for _ in range(20)]  # turned within 20 degrees: it moves
    assert turned_back_goods(loose)[0] is not None


def test_a_pose_is_not_used_unless_the_part_is_found_in_every_good_frame():
    rng = np.random.default_rng(3)
    goods = [screw(rng) for _ in range(10)] + [np.full((SIDE, SIDE, 3), 205, np.uint8)]  # one empty table
    assert fit_pose(goods) is None


def test_a_pose_region_registers_a_turned_part_and_says_when_there_is_none():
    rng = np.random.default_rng(4)
    goods = [screw(rng) for _ in range(16)]
    fit = fit_pose(goods)
    grid = CellGrid(24, 12, 8)
    region = fit_pose_region(goods, grid, fit)
    registrar = Registrar(region, grid)
    a = registrar.register(screw(rng, 10.0)).crop
    b = registrar.register(screw(rng, 190.0)).crop  # half a turn: the head still comes first
    ga, gb = (cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (a, b))
    assert np.corrcoef(ga.ravel(), gb.ravel())[0, 1] > 0.85
    with pytest.raises(RegistrationError, match="part not found"):
        registrar.register(np.full((SIDE, SIDE, 3), 205, np.uint8))
    # the same view from a camera of twice the resolution gives the same crop: the span follows the frame's size
    frame = screw(rng, 70.0)
    c1 = registrar.register(frame).crop
    c2 = registrar.register(cv2.resize(frame, (2 * SIDE, 2 * SIDE), interpolation=cv2.INTER_CUBIC)).crop
    g1, g2 = (cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (c1, c2))
    assert np.corrcoef(g1.ravel(), g2.ravel())[0, 1] > 0.95
    small = np.full((SIDE, SIDE, 3), 205, np.uint8)
    small[50:150, 50:150] = cv2.resize(screw(rng), (100, 100), interpolation=cv2.INTER_AREA)
    with pytest.raises(RegistrationError, match="part not found: the part covers"):
        registrar.register(small)  # a part a quarter the size of every good one


def test_train_turns_a_part_that_lies_at_any_angle_back_and_finds_a_bite_out_of_it(tmp_path, capsys):
    rng = np.random.default_rng(5)
    root = tmp_path / "set"
    write_set(root, lambda notch, masks: screw(rng, notch=notch, mask=masks), "notch")
    recipe = tmp_path / "r"
    assert main(["train", "--data", str(root), "--out", str(recipe), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "turned back to one pose" in err
    loaded = Recipe.load(recipe)
    assert loaded.region.mode == "pose" and loaded.region.span_x > loaded.region.span_y > 0
    assert loaded.doc.provenance["engine_choice"]["pose"]["used"]
    assert main(["eval", "--recipe", str(recipe), "--data", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the masks, drawn on the frames, are turned back with them: the map is compared with them where they are
    assert result["auroc"] >= 0.9 and result["n_pixel_maps"] == 16 and result["pixel_auroc"] > 0.9
    # the map's hottest pixel, taken back to the frame through the pose, is on the bite, however the part lies
    for angle in (20.0, 250.0):
        found = hottest_in_frame(loaded, screw(rng, angle, notch=True, centre=(95.0, 105.0)))
        m = cv2.getRotationMatrix2D((105, 100), angle, 1.0)
        bite = m @ np.array([130.0, 92.0, 1.0]) + [95.0 - 105, 105.0 - 100]
        assert np.hypot(*(found - bite)) < 15, (angle, found, bite)


def cap(rng: np.random.Generator, angle: float | None = None, centre: tuple[float, float] | None = None,
        spot: bool = False, neighbour: bool = False, mask: list | None = None) -> np.ndarray:
    """A round dark cap with a hole, a printed bar and a dot on one side, on a light table, turned by `angle`
    (random if None) about its centre; with `spot`, a light fleck on it (its mask appended to `mask`); with
    `neighbour`, part of another cap in the frame's corner."""
    image = np.full((SIDE, SIDE), 210, np.float32)
    cv2.circle(image, (100, 100), 60, 70.0, -1)
    cv2.circle(image, (100, 100), 25, 210.0, -1)  # the hole shows the table
    cv2.rectangle(image, (120, 95), (150, 105), 140.0, -1)
    cv2.circle(image, (100, 60), 6, 150.0, -1)
    bite = np.zeros((SIDE, SIDE), np.uint8)
    if spot:
        cv2.circle(image, (80, 135), 6, 200.0, -1)
        cv2.circle(bite, (80, 135), 6, 255, -1)
    angle = float(rng.uniform(0, 360)) if angle is None else angle
    cx, cy = centre if centre is not None else (100 + rng.uniform(-15, 15), 100 + rng.uniform(-15, 15))
    m = cv2.getRotationMatrix2D((100, 100), angle, 1.0)
    m[:, 2] += [cx - 100, cy - 100]
    image = cv2.warpAffine(image, m, (SIDE, SIDE), borderValue=210.0)
    if neighbour:
        cv2.circle(image, (SIDE + 20, SIDE + 20), 70, 70.0, -1)
    if mask is not None:
        mask.append(cv2.warpAffine(bite, m, (SIDE, SIDE), flags=cv2.INTER_NEAREST))
    image = image + rng.normal(0, 3, (SIDE, SIDE))
    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)


def test_a_round_part_is_centred_even_with_a_neighbour_at_the_frames_edge():
    rng = np.random.default_rng(7)
    for neighbour in (False, True):
        pose = round_part_pose(cap(rng, 30.0, centre=(90.0, 105.0), neighbour=neighbour))
        assert np.hypot(pose.centre[0] - 90, pose.centre[1] - 105) < 3  # the hole does not move the centre
        assert 110 < pose.length < 130  # the cap is 120 px across; the neighbour is not counted
    with pytest.raises(RegistrationError, match="part not found"):
        round_part_pose(np.full((SIDE, SIDE, 3), 210, np.uint8))


def test_an_oval_part_is_centred_to_a_fraction_of_a_pixel_however_it_lies():
    rng = np.random.default_rng(11)
    for angle in range(0, 180, 20):  # an oval's largest inner circle may slide along its long axis; its mass does not
        image = np.full((SIDE, SIDE), 200, np.float32)
        cx, cy = 100 + rng.uniform(-10, 10), 100 + rng.uniform(-10, 10)
        cv2.ellipse(image, ((cx, cy), (110, 80), angle), 60.0, -1)
        image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
        pose = round_part_pose(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
        assert np.hypot(pose.centre[0] - cx, pose.centre[1] - cy) < 1.0, angle


def test_a_round_part_is_turned_back_by_its_pattern():
    rng = np.random.default_rng(8)
    goods = [cap(rng) for _ in range(20)]
    fit, views, info = turned_back_goods(goods)
    assert fit is not None and fit.turn == "pattern" and info["used"] and info["turned_by"] == "pattern"
    assert fit.span[0] == fit.span[1]  # a square about its centre
    grey = np.stack([cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) for v in views]).astype(np.float32)
    mean = grey.mean(axis=0)
    for g in grey:  # every print at one place: the turn was found, not only the centre
        assert np.corrcoef(g.ravel(), mean.ravel())[0, 1] > 0.95
    crop = cv2.cvtColor(views[0], cv2.COLOR_RGB2GRAY).astype(np.float32)
    turned = cv2.warpAffine(crop, cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), 37.0, 1.0),
                            crop.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    # the turn measured is the one made, to a degree, either way round
    turn = pattern_turn(cv2.cvtColor(turned.astype(np.uint8), cv2.COLOR_GRAY2RGB), mean / 255.0) % 360
    assert min(abs(turn - 323.0), abs(turn - 37.0)) < 1.5


def test_a_round_pose_region_registers_a_turned_cap_and_keeps_its_turn_in_the_recipe(tmp_path):
    rng = np.random.default_rng(9)
    goods = [cap(rng) for _ in range(16)]
    fit = fit_round(goods)
    grid = CellGrid(16, 16, 8)
    region = fit_pose_region(goods, grid, fit)
    assert region.turn == "pattern" and region.to_dict()["turn"] == "pattern"
    registrar = Registrar(region, grid)
    a, b = (cv2.cvtColor(registrar.register(cap(rng, angle)).crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
            for angle in (10.0, 250.0))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    screws = [screw(rng) for _ in range(8)]
    axis = fit_pose_region(screws, CellGrid(24, 12, 8), fit_pose(screws))
    assert "turn" not in axis.to_dict()  # an axis pose's recipe is written as before the round part


def test_train_centres_and_turns_a_round_part_and_finds_a_fleck_on_it(tmp_path, capsys):
    rng = np.random.default_rng(10)
    root = tmp_path / "set"
    write_set(root, lambda spot, masks: cap(rng, spot=spot, mask=masks), "fleck")
    recipe = tmp_path / "r"
    assert main(["train", "--data", str(root), "--out", str(recipe), "--quiet"]) == 0
    assert "round part centred and turned back to one pose by its pattern" in capsys.readouterr().err
    loaded = Recipe.load(recipe)
    assert loaded.region.mode == "pose" and loaded.region.turn == "pattern"
    assert main(["eval", "--recipe", str(recipe), "--data", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["auroc"] >= 0.9 and result["pixel_auroc"] > 0.9
    for angle in (40.0, 200.0):  # the hottest pixel, taken back to the frame, is on the fleck however it lies
        found = hottest_in_frame(loaded, cap(rng, angle, centre=(95.0, 105.0), spot=True))
        m = cv2.getRotationMatrix2D((100, 100), angle, 1.0)
        fleck = m @ np.array([80.0, 135.0, 1.0]) + [95.0 - 100, 105.0 - 100]
        assert np.hypot(*(found - fleck)) < 12, (angle, found, fleck)


def test_an_oval_part_turning_in_place_is_turned_back_though_its_outline_hardly_moves():
    rng = np.random.default_rng(12)
    nut = np.full((SIDE, SIDE), 20, np.float32)
    cv2.ellipse(nut, ((100.0, 100.0), (120.0, 96.0), 0.0), 150.0, -1)
    grain = cv2.GaussianBlur(rng.normal(0, 40, (SIDE, SIDE)).astype(np.float32), (0, 0), 3)
    nut = nut + grain * (nut > 100)
    cv2.circle(nut, (150, 100), 8, 230.0, -1)  # its tip
    frames = []
    for _ in range(24):
        m = cv2.getRotationMatrix2D((100, 100), float(rng.uniform(0, 360)), 1.0)
        frame = cv2.warpAffine(nut, m, (SIDE, SIDE), borderValue=20.0) + rng.normal(0, 2, (SIDE, SIDE))
        frames.append(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB))
    fit, views, info = turned_back_goods(frames)
    before, after = info["position_variance_share"]
    assert before < 0.15  # below what a long part must move: only the grain and the tip turn
    assert fit is not None and fit.turn == "pattern" and after < 0.1 * before


def test_a_round_parts_crop_keeps_only_what_the_camera_saw_inside_the_circle_it_sweeps():
    rng = np.random.default_rng(14)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    # the crop's left 10 px columns come from left of the frame's edge (x < 0): the warp smeared the edge there
    matrix = np.array([[1.0, 0.0, -10.0], [0.0, 1.0, 5.0]])
    out = swept_circle(crop, matrix, (200, 200))
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot((xx + 0.5 - 32) / 32, (yy + 0.5 - 32) / 32)
    unseen = (r >= 1.0) | (xx < 10)
    filled = out[unseen].reshape(-1, 3)
    assert (filled == filled[0]).all()  # one level, the rim's median
    assert np.array_equal(out[~unseen], crop[~unseen])  # what the camera saw of the part, untouched
    assert np.array_equal(swept_circle(crop)[(r < 1.0)], crop[r < 1.0])  # without a matrix: the circle only


def test_a_round_part_is_found_at_registration_on_the_frame_as_training_found_it(monkeypatch):
    """On a frame shrunk to a small crop's scale the part's blurred outline reaches a pixel or two further, and a
    cast impeller that nearly fills its frame (the casting set) seemed to run off it: training stopped on a good
    frame that the choice had found the part in."""
    from station.core import registration

    rng = np.random.default_rng(15)
    frames = []
    for _ in range(8):
        image = np.full((600, 600), 150, np.float32) + rng.normal(0, 3, (600, 600))
        centre = (round(300 + rng.uniform(-12, 12)), round(300 + rng.uniform(-12, 12)))
        cv2.circle(image, centre, 250, 215.0, -1)
        cv2.circle(image, centre, 150, 40.0, -1)
        cv2.circle(image, (centre[0] + 200, centre[1]), 12, 90.0, -1)  # a mark to turn by
        frames.append(cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB))
    fit = fit_round(frames)
    grid = CellGrid(16, 16, 8)  # a 128 px crop of a 600 px frame: registration shrinks the frame first
    registrar = Registrar(fit_pose_region(frames, grid, fit), grid)
    seen = []
    found = registration.round_part_pose
    monkeypatch.setattr(registration, "round_part_pose", lambda frame: seen.append(frame.shape) or found(frame))
    result = registrar.register(frames[0])
    assert seen == [(600, 600, 3)]  # the part found once, on the frame itself
    centre = result.to_frame(np.array([[64.0, 64.0]]))[0]
    assert np.hypot(*(centre - found(frames[0]).centre)) < 2.0


def test_turning_back_gives_the_same_crops_every_time():
    """The free-form choice is measured on these crops: a crop that differs by a grey level from one run to the
    next flipped the choice between two engines on the casting set (warpAffine's per-block rounding on two
    threads; 3 of its 432 frames)."""
    rng = np.random.default_rng(16)
    goods = [cap(rng) for _ in range(24)]
    first = turned_back_goods(goods)[1]
    cv2.setNumThreads(max(2, cv2.getNumThreads()))
    for again in (turned_back_goods(goods)[1], turned_back_goods(goods)[1]):
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
