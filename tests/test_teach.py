"""Teaching a product: the proposal follows the good images (and the labelled defects), the setup is saved
and read back, and `station teach` / `station train --setup` use it."""

import json

import numpy as np
import pytest

from station.cli import main
from station.core.dataset import load_dataset
from station.core.errors import RegistrationError
from station.core.evaluate import evaluate
from station.core.imageio import read_image
from station.core.pattern import Roi
from station.core.recipe import Recipe
from station.core.teach import Setup, cell_size, fit_lattice, propose, propose_setup
from station.core.training import labelled_grid, train_recipe
from synthetic import draw_blocks, draw_part, write_dataset


def _goods(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [draw_part(rng, "good", **kw) for _ in range(n)]


def test_the_proposal_lays_the_grid_on_the_pins():
    """The drawn connector's pins sit at 24 px pitch round the frame's middle: 72 x 216 px."""
    p = propose(_goods(20, jitter=0.3), (3, 9))
    assert (p.cols, p.rows, p.cell_px) == (3, 9, 24)
    assert p.roi.cx == pytest.approx(128, abs=4) and p.roi.cy == pytest.approx(128, abs=4)
    assert p.roi.w == pytest.approx(72, rel=0.1) and p.roi.h == pytest.approx(216, rel=0.1)
    assert abs(p.roi.angle) <= 3


def test_without_a_grid_the_rhythm_of_the_features_is_counted():
    p = propose(_goods(20, jitter=0.3))
    assert p.lattice and p.cols == 3 and 8 <= p.rows <= 10


def test_a_part_without_a_rhythm_gets_square_cells_over_it():
    images = draw_blocks(10, frame=(200, 240), block=(100, 120), at=(60, 40))
    p = propose(images, cell_px=24)
    assert not p.lattice and p.cell_px == 24
    assert p.roi.w == pytest.approx(120, rel=0.25) and p.roi.h == pytest.approx(100, rel=0.25)
    assert p.cols * p.rows >= 4


def test_cell_size_keeps_the_detail_with_a_cap():
    assert cell_size(24.4) == 24 and cell_size(31) == 30 and cell_size(400) == 48 and cell_size(3) == 12
    assert cell_size(400, 40 * 40) == 12 and cell_size(400, 16 * 16) == 30  # the whole crop is capped too


def test_labelled_defects_place_the_grid_where_the_pins_are(tmp_path):
    """Pins drawn half a cell off the housing's middle: the labelled defects move the grid onto them."""
    root = write_dataset(tmp_path / "d", {"good": 20, "missing": 40}, seed=3, pin_offset=-12)
    data = load_dataset(root, "train")
    goods = [read_image(s.path) for s in data.samples if s.label == "good"]
    labelled = [(read_image(s.path), s.cell) for s in data.samples if s.cell is not None]
    assert labelled_grid(data) == (3, 9)
    setup = propose_setup(goods, (3, 9), labelled=labelled)
    assert any("labelled defects" in n for n in setup.notes)
    # the pins' middles: 24 px pitch, 12 px above the frame's middle (jitter moves parts by a few px)
    assert setup.roi.cy == pytest.approx(128 - 12, abs=5)
    assert setup.roi.h == pytest.approx(216, rel=0.08)


def test_fit_lattice_drops_points_that_disagree():
    cells = [(c, r) for c in range(3) for r in range(9)]
    truth = np.array([[20.0, 1.0, 50.0], [-1.0, 22.0, 30.0]])
    points = [truth @ [c + 0.5, r + 0.5, 1.0] for c, r in cells]
    points[4] = points[4] + 40  # one wrong peak
    lattice, residual = fit_lattice(points, cells)
    np.testing.assert_allclose(lattice, truth, atol=1e-6)
    assert residual < 1e-6


def test_a_setup_is_saved_and_read_back(tmp_path):
    setup = propose_setup(_goods(10), (3, 9), max_angle=20, max_scale=0.05)
    paths = setup.save(tmp_path / "s", _goods(4, seed=1))
    assert {"setup", "golden", "preview"} <= paths.keys()
    back = Setup.load(tmp_path / "s")
    assert back.grid == setup.grid and back.max_angle == 20 and back.max_scale == 0.05
    np.testing.assert_allclose(back.roi.to_list(), setup.roi.to_list(), atol=1e-3)
    np.testing.assert_array_equal(back.golden, setup.golden)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(schema=9), "schema"),
    (lambda d: d.update(roi=[1, 2, 3]), "not valid"),
    (lambda d: d["grid"].update(cols=0), "out of range"),
    (lambda d: d.update(max_angle=500), "max_angle"),
    (lambda d: d.update(frame_size=[10, 10]), "not the frame"),
])
def test_a_bad_setup_is_refused_with_one_line(tmp_path, damage, message):
    propose_setup(_goods(6), (3, 9)).save(tmp_path / "s")
    path = tmp_path / "s" / "setup.json"
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match=message) as info:
        Setup.load(tmp_path / "s")
    assert "\n" not in str(info.value)


def test_a_missing_or_garbled_setup_is_refused(tmp_path):
    with pytest.raises(RegistrationError, match="no taught setup"):
        Setup.load(tmp_path)
    (tmp_path / "setup.json").write_text("{not json")
    with pytest.raises(RegistrationError, match="cannot read setup"):
        Setup.load(tmp_path)


def test_images_of_another_camera_are_refused():
    setup = propose_setup(_goods(6), (3, 9))
    rng = np.random.default_rng(0)
    with pytest.raises(RegistrationError, match="one camera"):
        from station.core.teach import fit_pattern_region
        fit_pattern_region([draw_part(rng, "good", size=300)], setup)


def test_teach_then_train_with_the_setup(synthetic_data, tmp_path, capsys):
    code = main(["teach", "--data", str(synthetic_data), "--out", str(tmp_path / "setup"), "--grid", "3x9"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["grid"] == {"cols": 3, "rows": 9, "cell_px": 24}
    for key in ("setup", "golden", "preview"):
        assert (tmp_path / "setup" / f"{key}.{'json' if key == 'setup' else 'png'}").is_file()
    code = main(["train", "--data", str(synthetic_data), "--setup", str(tmp_path / "setup"), "--out",
                 str(tmp_path / "r"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    recipe = Recipe.load(tmp_path / "r")
    assert recipe.region.mode == "pattern" and (recipe.grid.cols, recipe.grid.rows) == (3, 9)
    assert recipe.doc.provenance["setup"]["roi"] == doc["roi"]
    result = evaluate(recipe, load_dataset(synthetic_data, "test"))
    assert result["auroc"] > 0.95 and result["cell_localization"] >= 0.9
    assert result["registration"]["residual_px_p95"] <= 1.0


def test_train_without_a_setup_proposes_one_and_says_where(synthetic_data, tmp_path, capsys):
    code = main(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "r"), "--max-per-class", "10"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "proposed grid 3x9" in err and str(tmp_path / "r.setup" / "preview.png") in err
    assert (tmp_path / "r.setup" / "preview.png").is_file()
    assert json.loads(out)["proposed_setup"]["setup"].endswith("setup.json")


def test_a_taught_region_on_the_command_line(synthetic_data, tmp_path, capsys):
    code = main(["teach", "--data", str(synthetic_data), "--out", str(tmp_path / "s"), "--grid", "3x9",
                 "--roi", "92,20,72,216,0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["roi"] == [128.0, 128.0, 72.0, 216.0, 0.0]


@pytest.mark.parametrize("argv, needle", [
    (["--roi", "1,2,3"], "--roi must be"), (["--roi", "a,b,c,d"], "--roi must be"),
    (["--roi", "0,0,2,2"], "too small"), (["--grid", "3by9"], "COLSxROWS"),
])
def test_bad_teach_arguments_are_one_line(synthetic_data, tmp_path, capsys, argv, needle):
    code = main(["teach", "--data", str(synthetic_data), "--out", str(tmp_path / "s"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_setup_and_grid_together_are_refused(synthetic_data, tmp_path, capsys):
    main(["teach", "--data", str(synthetic_data), "--out", str(tmp_path / "s")])
    capsys.readouterr()
    code = main(["train", "--data", str(synthetic_data), "--setup", str(tmp_path / "s"), "--grid", "3x9",
                 "--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 2 and "come from the setup" in err


def test_a_pattern_recipe_with_a_damaged_golden_frame_is_refused(synthetic_data, tmp_path):
    recipe, _ = train_recipe(load_dataset(synthetic_data, "train"), "rt", (3, 9), "p")
    recipe.region.reference = np.zeros((4, 4), np.float32)
    recipe.save(tmp_path / "r")
    from station.core.errors import RecipeError

    with pytest.raises(RecipeError, match="golden frame"):
        Recipe.load(tmp_path / "r")


def test_a_roi_from_four_corners():
    roi = Roi.from_corners(np.array([[10, 10], [110, 10], [110, 60], [10, 60]]))
    assert roi.to_list() == [60.0, 35.0, 100.0, 50.0, 0.0]


def test_aligning_leaves_the_images_as_they_were():
    """OpenCV 5.0's phaseCorrelate windows its inputs in place; the golden frame once came out dimmed."""
    from station.core.teach import align_to

    a = np.full((120, 160), 0.8, np.float32)
    a[30:90, 40:120] = 0.2
    b = np.roll(a, 3, axis=1)
    a0, b0 = a.copy(), b.copy()
    aligned = align_to(a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    assert np.abs(aligned - a)[10:-10, 10:-10].mean() < 0.01


def test_cell_offsets_do_not_change_the_template():
    from station.core.grid import CellGrid
    from station.core.registration import cell_offsets

    rng = np.random.default_rng(0)
    template = rng.random((48, 48)).astype(np.float32)
    kept = template.copy()
    crop = (np.dstack([template] * 3) * 255).astype(np.uint8)
    offsets = cell_offsets(crop, template, CellGrid(2, 2, 24))
    np.testing.assert_array_equal(template, kept)
    assert np.abs(offsets).max() < 0.5


def test_the_golden_image_is_the_one_the_region_was_found_on():
    """More good images than the proposal looks at: the golden index still points into the caller's list."""
    rng = np.random.default_rng(4)
    goods = [np.roll(draw_part(rng, "good", jitter=0.0), 2 * i - 50, axis=1) for i in range(50)]
    p = propose(goods, (3, 9))
    shift = 2 * p.golden_index - 50
    assert p.roi.cx == pytest.approx(128 + shift, abs=4)


def test_an_mvtec_set_without_grid_or_labels_is_taught_and_trained(tmp_path, capsys):
    """Good images only, no grid, masks for the test: the station chooses a free-form engine itself (the whole
    frame, a pixel map) and inspects; eval reports the pixel AUROC from the masks."""
    import cv2

    rng = np.random.default_rng(7)
    root = tmp_path / "mv"
    for sub in ("train/good", "test/good", "test/missing", "ground_truth/missing"):
        (root / sub).mkdir(parents=True)
    for i in range(25):
        cv2.imwrite(str(root / "train/good" / f"{i:03d}.png"), draw_part(rng, "good")[..., ::-1])
    for i in range(6):
        cv2.imwrite(str(root / "test/good" / f"{i:03d}.png"), draw_part(rng, "good")[..., ::-1])
        cv2.imwrite(str(root / "test/missing" / f"{i:03d}.png"), draw_part(rng, "missing", (1, 4))[..., ::-1])
        mask = np.zeros((256, 256), np.uint8)
        mask[110:146, 110:146] = 255
        cv2.imwrite(str(root / "ground_truth/missing" / f"{i:03d}_mask.png"), mask)
    code = main(["train", "--data", str(root), "--out", str(tmp_path / "r"), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    code = main(["eval", "--recipe", str(tmp_path / "r"), "--data", str(root), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["auroc"] > 0.9 and result["registration"]["part_not_found"] == 0
    assert result["pixel_auroc"] is not None and result["n_pixel_maps"] == 12


def test_tiles_of_different_sizes_are_resized_not_registered(tmp_path, capsys):
    """A texture cut into tiles of varying size has no golden frame: each frame is resized to the crop."""
    import cv2

    rng = np.random.default_rng(2)
    root = tmp_path / "tiles"
    for split, n in (("train/good", 12), ("test/good", 4), ("test/stain", 4)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            h, w = (int(v) for v in rng.integers(150, 260, 2))
            tile = (120 + rng.normal(0, 12, (h, w))).clip(0, 255).astype(np.uint8)
            if "stain" in split:
                cv2.circle(tile, (w // 2, h // 2), 18, 30, -1)
            cv2.imwrite(str(root / split / f"{i:03d}.png"), tile)
    # the RT engine named: its grid over the resized frames (with no engine named, good images only make a
    # free-form product: test_patch.py)
    code = main(["train", "--engine", "rt", "--data", str(root), "--out", str(tmp_path / "r"), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "differ in size" in err
    recipe = Recipe.load(tmp_path / "r")
    assert recipe.region.mode == "full" and (recipe.grid.cols, recipe.grid.rows) == (8, 8)
    code = main(["eval", "--recipe", str(tmp_path / "r"), "--data", str(root), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["auroc"] > 0.9


def test_the_latest_setup_is_the_newest_one_saved(tmp_path):
    import os
    import time

    from station.core.teach import latest_setup

    assert latest_setup(tmp_path / "none") is None
    setup = propose_setup(_goods(6), (3, 9))
    setup.save(tmp_path / "a")
    setup.save(tmp_path / "b")
    (tmp_path / "junk").mkdir()
    old = time.time() - 100
    os.utime(tmp_path / "b" / "setup.json", (old, old))
    assert latest_setup(tmp_path) == tmp_path / "a"
