"""Ground-truth masks as the public sets in the MVTec layout name and draw them (station/core/masks.py)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from station.cli import main
from station.core.dataset import load_dataset
from station.core.errors import ImageError
from station.core.masks import find_mask, read_mask

from test_patch import write_mvtec


def test_a_mask_is_found_by_the_names_the_sets_give_it_and_read_at_its_images_size(tmp_path):
    folder = tmp_path / "crack"
    folder.mkdir()
    drawn = np.zeros((40, 60), np.uint8)
    drawn[10:20, 30:50] = 255
    cv2.imwrite(str(folder / "000_mask.png"), drawn)  # MVTec AD
    cv2.imwrite(str(folder / "001.png"), (drawn > 0).astype(np.uint8))  # BTAD: the image's name, drawn 0 and 1
    cv2.imwrite(str(folder / "002.bmp"), cv2.resize(drawn, (30, 20), interpolation=cv2.INTER_NEAREST))  # half size
    (folder / "003").mkdir()  # MVTec LOCO: a folder of masks, their union the defect
    left, right = np.zeros_like(drawn), np.zeros_like(drawn)
    left[10:20, 30:40], right[10:20, 40:50] = 255, 255
    cv2.imwrite(str(folder / "003" / "000.png"), left)
    cv2.imwrite(str(folder / "003" / "001.png"), right)
    (folder / "004").mkdir()  # a folder with no mask in it is not a mask
    expected = drawn > 0
    for stem in ("000", "001", "002", "003"):
        path = find_mask(folder, stem)
        assert path is not None, stem
        np.testing.assert_array_equal(read_mask(path, (40, 60)), expected)
    assert find_mask(folder, "004") is None and find_mask(folder, "005") is None
    assert read_mask(find_mask(folder, "002")).shape == (20, 30)  # no shape given: the mask's own
    (folder / "006_mask.png").write_bytes(b"not a png")
    with pytest.raises(ImageError):
        read_mask(find_mask(folder, "006"), (40, 60))


def test_eval_reads_masks_named_after_their_image_drawn_0_and_1_at_half_size_and_leaves_out_a_broken_one(
        tmp_path, capsys):
    data = write_mvtec(tmp_path / "mvtec", np.random.default_rng(3))
    recipe = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(recipe), "--quiet",
                 "--config", json.dumps({"memory": 512, "candidates": 4000})]) == 0
    capsys.readouterr()
    assert main(["eval", "--recipe", str(recipe), "--data", str(data), "--json"]) == 0
    as_mvtec = json.loads(capsys.readouterr().out)

    other = tmp_path / "other"  # the same images, each mask as another set would give it
    shutil.copytree(data, other)
    truth = other / "ground_truth" / "spot"
    for path in sorted(truth.glob("*_mask.png")):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        half = cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2), interpolation=cv2.INTER_NEAREST)
        path.unlink()
        cv2.imwrite(str(truth / path.name.replace("_mask", "")), (half > 127).astype(np.uint8))
    assert all(s.mask is not None for s in load_dataset(other, "test").samples if s.label != "good")
    assert main(["eval", "--recipe", str(recipe), "--data", str(other), "--json"]) == 0
    renamed = json.loads(capsys.readouterr().out)
    assert renamed["n_pixel_maps"] == as_mvtec["n_pixel_maps"] == 12
    assert renamed["pixel_auroc"] == pytest.approx(as_mvtec["pixel_auroc"], abs=0.03)

    (truth / "000.png").write_bytes(b"broken")  # one unreadable mask: that image's pixels are left out, no more
    assert main(["eval", "--recipe", str(recipe), "--data", str(other), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_pixel_maps"] == 11 and "mask left out" in out.err
