"""Dataset layouts: ImageFolder with a manifest, MVTec AD, and clear errors for bad folders."""

import cv2
import numpy as np
import pytest

from station.core.dataset import load_dataset
from station.core.errors import DatasetError, ImageError
from station.core.imageio import read_image


def test_imagefolder_with_manifest_cells(synthetic_data):
    data = load_dataset(synthetic_data, "train")
    assert data.classes[0] == "good"
    assert set(data.classes) == {"good", "pushed", "tilted", "missing"}
    defects = [s for s in data.samples if s.label != "good"]
    assert defects and all(s.cell is not None for s in defects)
    assert all(s.cell is None for s in data.samples if s.label == "good")


def test_sample_per_class_is_seeded_and_bounded(synthetic_data):
    data = load_dataset(synthetic_data, "train")
    a = data.sample_per_class(5, seed=3)
    b = data.sample_per_class(5, seed=3)
    assert [s.path for s in a.samples] == [s.path for s in b.samples]
    assert max(a.counts().values()) == 5


def _images(root, rels, side=64):
    """A flat grey image at each of `rels` under `root`."""
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((side, side, 3), 128, np.uint8))


def test_mvtec_layout_with_masks(tmp_path):
    root = tmp_path / "mvtec"
    _images(root, ("train/good/000.png", "test/good/000.png", "test/scratch/000.png"))
    (root / "ground_truth/scratch").mkdir(parents=True)
    cv2.imwrite(str(root / "ground_truth/scratch/000_mask.png"), np.zeros((64, 64), np.uint8))
    train = load_dataset(root, "train")
    assert train.layout == "mvtec" and train.classes == ["good"]
    test = load_dataset(root, "test")
    assert test.classes == ["good", "scratch"]
    assert [s.mask is not None for s in test.samples] == [False, True]


def test_btad_layout_reads_ok_as_good_and_ko_masks_by_stem(tmp_path):
    # BTAD names its good folders `ok` and its defects `ko`, with masks of the image's stem in another format
    root = tmp_path / "btad" / "01"
    _images(root, ("train/ok/0000.bmp", "train/ok/0001.bmp", "test/ok/0000.bmp", "test/ko/0000.bmp"))
    (root / "ground_truth/ko").mkdir(parents=True)
    cv2.imwrite(str(root / "ground_truth/ko/0000.png"), np.zeros((64, 64), np.uint8))
    train = load_dataset(root, "train")
    assert train.layout == "mvtec" and train.classes == ["good"] and len(train.samples) == 2
    test = load_dataset(root, "test")
    assert test.classes == ["good", "ko"]
    assert [(s.label, s.mask is not None) for s in test.samples] == [("ko", True), ("good", False)]
    assert test.samples[0].mask.name == "0000.png"


def test_mvtec_ad_2_layout_reads_validation_goods_and_the_public_test_with_its_masks(tmp_path):
    # MVTec AD 2: validation/good beside train/good, the labelled test in test_public/ with its ground truth
    # inside it, and test_private/ (no labels) left alone
    root = tmp_path / "mvtec_ad_2" / "can"
    _images(root, ("train/good/000_regular.png", "train/good/001_regular.png", "validation/good/000_regular.png",
                   "test_public/good/000_regular.png", "test_public/bad/000_overexposed.png",
                   "test_private/000_regular.png"))
    (root / "test_public/ground_truth/bad").mkdir(parents=True)
    cv2.imwrite(str(root / "test_public/ground_truth/bad/000_overexposed_mask.png"), np.zeros((64, 64), np.uint8))
    train = load_dataset(root, "train")
    assert train.layout == "mvtec" and train.counts() == {"good": 3}
    test = load_dataset(root, "test")
    assert test.classes == ["good", "bad"]  # ground_truth is not a class
    assert [(s.label, s.mask.name if s.mask else None) for s in test.samples] == [
        ("bad", "000_overexposed_mask.png"), ("good", None)]


def test_a_train_folder_with_a_defect_class_beside_ok_is_an_imagefolder(tmp_path):
    root = tmp_path / "set"
    _images(root, ("train/ok/0.png", "train/ko/0.png", "test/ok/0.png"), side=32)
    data = load_dataset(root, "train")
    assert data.layout == "imagefolder" and data.classes == ["good", "ko"]  # a plant's OK folder is the good class


def test_an_imagefolder_with_ok_and_ng_folders_trains_without_renaming(tmp_path):
    _images(tmp_path, ("OK/0.png", "OK/1.png", "NG/0.png"), side=32)
    data = load_dataset(tmp_path, "train")
    assert data.classes == ["good", "NG"] and data.counts() == {"good": 2, "NG": 1}


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_images_of_any_channel_count_read_as_rgb(tmp_path, channels):
    shape = (30, 50) if channels == 1 else (30, 50, channels)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.full(shape, 77, np.uint8))
    img = read_image(path)
    assert img.shape == (30, 50, 3) and img.dtype == np.uint8


def test_sixteen_bit_images_read(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.full((20, 20), 40000, np.uint16))
    assert read_image(path)[0, 0, 0] == 40000 >> 8


def test_bad_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "d" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no images"):
        load_dataset(tmp_path / "d")


def test_corrupt_and_empty_images_raise_image_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(ImageError, match="corrupt"):
        read_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(empty)
