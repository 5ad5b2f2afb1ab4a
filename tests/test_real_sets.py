"""Tests of scripts/real_sets.py's new builders on tiny git repositories made here (no data fetched)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("real_sets", REPO / "scripts" / "real_sets.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


rs = _script()


def _commit(root: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "t"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return root / ".git", head


def _png(value: int, shape=(30, 20)) -> bytes:
    return cv2.imencode(".png", np.full(shape, value, np.uint8))[1].tobytes()


def test_polygon_mask_fills_the_polygon_in_frame_pixels():
    mask = rs.polygon_mask("0 0.25 0.1 0.75 0.1 0.75 0.5 0.25 0.5\n", (100, 40), "t")
    assert mask[30, 20] == 255 and mask[80, 20] == 0 and mask[30, 2] == 0
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 30, 10, 50)


@pytest.mark.parametrize("line", ["0 0.1 0.1 0.2 0.2", "0 0.1 0.1 0.2 0.2 0.3", "0 0.1 0.1 0.2 1.5 0.3 0.3",
                                  "0 0.1 0.1 0.2 x 0.3 0.3"])
def test_polygon_mask_refuses_a_bad_line(line):
    with pytest.raises(SystemExit, match="real_sets: t:"):
        rs.polygon_mask(line, (10, 10), "t")


def test_elpv_keeps_its_kind_and_leaves_out_uncertain_cells(tmp_path):
    rows = [("a", "0.0", "poly"), ("b", "0.0", "poly"), ("c", "0.0", "poly"), ("d", "1.0", "poly"),
            ("e", "0.3333333333333333", "poly"), ("f", "0.0", "mono"), ("g", "1.0", "mono")]
    files = {f"src/elpv_dataset/data/images/{n}.png": _png(i * 20) for i, (n, _, _) in enumerate(rows)}
    files["src/elpv_dataset/data/labels.csv"] = "".join(f"images/{n}.png {p} {k}\n" for n, p, k in rows).encode()
    git_dir, head = _commit(tmp_path / "src", files)
    out = rs.Writer(tmp_path / "out")
    rs.BUILDERS["elpv-poly"](rs.Repo(git_dir, head), out, n_train=2, n_test=5)
    found = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")}
    stems = {Path(p).stem for p in found}
    assert stems == {"a", "b", "c", "d"}  # no mono cell, no uncertain one
    assert sum(p.startswith("dev/train/good/") for p in found) == 2
    assert any(p.endswith("/test/defect/d.png") for p in found)
    assert cv2.imread(str(next((tmp_path / "out").rglob("d.png"))), cv2.IMREAD_UNCHANGED).ndim == 2  # grey kept


def test_elpv_refuses_a_bad_label_line(tmp_path):
    files = {"src/elpv_dataset/data/labels.csv": b"images/a.png maybe poly\n"}
    git_dir, head = _commit(tmp_path / "src", files)
    with pytest.raises(SystemExit, match="unexpected line"):
        rs.BUILDERS["elpv-mono"](rs.Repo(git_dir, head), rs.Writer(tmp_path / "out"))


def test_kolektorsdd_masks_the_defect_and_keeps_a_parts_good_views_together(tmp_path):
    files = {}
    for n in range(24):  # three parts of 8 views; view 5 of part 0 is defective
        split = "train" if n < 12 else "val"
        image = cv2.imencode(".jpg", np.full((40, 16), 128, np.uint8))[1].tobytes()
        files[f"Datasets/images/{split}/{n:03}.jpg"] = image
        files[f"Datasets/labels/{split}/{n:03}.txt"] = b"0 0.25 0.25 0.75 0.25 0.75 0.5 0.25 0.5" if n == 5 else b""
    git_dir, head = _commit(tmp_path / "src", files)
    rs.build_kolektorsdd(rs.Repo(git_dir, head), rs.Writer(tmp_path / "out"))
    out = tmp_path / "out"
    mask = cv2.imread(str(next(out.glob("*/ground_truth/defect/005_mask.png"))), cv2.IMREAD_GRAYSCALE)
    assert mask[15, 8] == 255 and mask[35, 8] == 0
    for part in range(3):
        goods = [f"{n:03}" for n in range(part * 8, part * 8 + 8) if n != 5]
        in_train = [(out / "dev/train/good" / f"{s}.png").is_file() for s in goods]
        assert all(in_train) or not any(in_train)
    assert not list(out.glob("*/train/good/005.png"))


def test_magnetic_tile_keeps_a_tiles_six_lightings_on_one_side_of_every_split(tmp_path):
    assert rs.tile_of(["exp1_num_100", "exp2_num_150", "exp3_num_240", "exp1_num_400"]) == {
        "exp1_num_100": "tile100", "exp2_num_150": "tile100", "exp3_num_240": "tile100", "exp1_num_400": "tile400"}
    files = {}
    for tile in range(12):  # twelve tiles, each photographed under six lightings, numbered in a run
        for light in range(6):
            stem = f"exp{light + 1}_num_{10_000 * (tile + 1) + 15 * light}"
            files[f"MT_Free/Imgs/{stem}.jpg"] = cv2.imencode(".jpg", np.full((20, 30), 100 + tile, np.uint8))[1].tobytes()
            if tile < 3:
                files[f"MT_Crack/Imgs/{stem}.jpg"] = files[f"MT_Free/Imgs/{stem}.jpg"]
                files[f"MT_Crack/Imgs/{stem}.png"] = _png(255, (20, 30))
    git_dir, head = _commit(tmp_path / "src", files)
    rs.build_magnetic_tile(rs.Repo(git_dir, head), rs.Writer(tmp_path / "out"))
    out = tmp_path / "out"
    for cls in ("good", "crack"):
        for tile in range(12 if cls == "good" else 3):
            stems = [f"exp{light + 1}_num_{10_000 * (tile + 1) + 15 * light}" for light in range(6)]
            where = {tuple(sorted(p.relative_to(out).parts[:2] for p in out.glob(f"*/*/{cls}/{s}.png")))
                     for s in stems}
            assert len(where) == 1 and () not in where  # all six lightings in train, or all in one test half
    trained = {p.stem for p in out.glob("dev/train/good/*.png")}
    tested = {p.stem for p in out.glob("*/test/good/*.png")}
    assert trained and tested and not trained & tested


def test_a_turned_photograph_and_its_mask_turn_alike_and_each_name_its_own_way():
    photo = np.zeros((120, 120, 3), np.uint8)
    photo[20:50, 70:100] = 255
    mask = np.where(photo[:, :, 0] > 0, 255, 0).astype(np.uint8)
    a, m = rs.turned(photo, "broken/003"), rs.turned(mask, "broken/003", mask=True)
    assert set(np.unique(m)) <= {0, 255}
    bright = a[:, :, 0] > 127
    inside = (m > 0) & bright
    assert inside.sum() > 0.9 * (m > 0).sum() and inside.sum() > 0.8 * bright[10:110, 10:110].sum()
    assert not np.array_equal(rs.turned(photo, "broken/004"), a)  # another name, another angle
    assert np.array_equal(rs.turned(photo, "broken/003"), a)  # rebuilt the same


def test_metal_plate_reads_each_image_once_and_calls_it_good_where_its_mask_is_empty(tmp_path):
    base = "data_supervised/metal_plate"
    empty, marked = np.zeros((30, 20), np.uint8), np.zeros((30, 20), np.uint8)
    marked[5:10, 5:10] = 255
    files = {}
    for split, stem, value, mask in (("train", "a", 10, empty), ("train", "b", 20, marked), ("val", "c", 30, empty),
                                     ("test", "d", 20, marked), ("test", "e", 40, empty)):  # d repeats b
        files[f"{base}/{split}/images/{stem}.png"] = _png(value)
        files[f"{base}/{split}/masks/{stem}.png"] = cv2.imencode(".png", mask)[1].tobytes()
    git_dir, head = _commit(tmp_path / "src", files)
    rs.BUILDERS["metal-plate"](rs.Repo(git_dir, head), rs.Writer(tmp_path / "out"))
    found = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    defects = [p for p in found if "/test/defect/" in p]
    assert [Path(p).name for p in defects] == ["test_d.png"]  # listed first; train/b, the same bytes, is not read
    assert any(p.endswith("ground_truth/defect/test_d_mask.png") for p in found)
    goods = {Path(p).name for p in found if "/good/" in p}
    assert goods == {"train_a.png", "val_c.png", "test_e.png"}  # every good one, in training or test


def test_screw_names_lose_their_brackets_and_its_test_folders_become_classes(tmp_path):
    files = {"data/screw/train/good/000.png": _png(10), "data/screw/test/0/000.png": _png(20),
             "data/screw/test/1/000(1).png": _png(30)}
    git_dir, head = _commit(tmp_path / "src", files)
    rs.BUILDERS["screw"](rs.Repo(git_dir, head), rs.Writer(tmp_path / "out"))
    names = {p.relative_to(tmp_path / "out").as_posix().split("/", 1)[1] for p in (tmp_path / "out").rglob("*.png")}
    assert "train/good/000.png" in names and "test/good/000.png" in names and "test/defect/000_1.png" in names


def test_an_mvtec_layout_set_keeps_its_classes_and_masks_and_refuses_a_defect_without_one(tmp_path):
    files = {"data/part/train/good/000.png": _png(10), "data/part/train/good/001.png": _png(20),
             "data/part/test/good/000.png": _png(30), "data/part/test/cut/000.png": _png(40),
             "data/part/ground_truth/cut/000_mask.png": _png(255)}
    git_dir, head = _commit(tmp_path / "src", files)
    out = rs.Writer(tmp_path / "out")
    rs.build_mvtec(rs.Repo(git_dir, head), out, base="data/part")
    found = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")}
    assert {p for p in found if "/train/" in p} == {f"{s}/train/good/00{i}.png" for s in ("dev", "final") for i in (0, 1)}
    cut = [p for p in found if p.endswith("test/cut/000.png")]
    assert len(cut) == 1 and cut[0].replace("test/cut/000.png", "ground_truth/cut/000_mask.png") in found
    # a JPEG mask (the wood copy's) is read and cut at 127 like a PNG one
    jpeg = cv2.imencode(".jpg", np.where(np.arange(20)[None, :] < 10, 250, 5).repeat(30, 0).astype(np.uint8))[1]
    git_dir, head = _commit(tmp_path / "src", {"data/part/test/cut/001.png": _png(50),
                                                "data/part/ground_truth/cut/001_mask.jpg": jpeg.tobytes()})
    rs.build_mvtec(rs.Repo(git_dir, head), rs.Writer(tmp_path / "out_jpeg"), base="data/part")
    masks = list((tmp_path / "out_jpeg").rglob("001_mask.png"))
    assert len(masks) == 1 and set(np.unique(cv2.imread(str(masks[0]), 0))) == {0, 255}
    assert (cv2.imread(str(masks[0]), 0)[:, :10] == 255).all() and (cv2.imread(str(masks[0]), 0)[:, 10:] == 0).all()
    (tmp_path / "src" / "data/part/ground_truth/cut/000_mask.png").unlink()
    git_dir, head = _commit(tmp_path / "src", {})
    with pytest.raises(SystemExit, match="has no mask"):
        rs.build_mvtec(rs.Repo(git_dir, head), rs.Writer(tmp_path / "out2"), base="data/part")


def test_a_partial_snapshot_is_read_without_the_files_it_lacks(tmp_path):
    files = {"train/good/000.png": _png(10), "train/good/001.png": _png(11), "test/good/000.png": _png(12),
             "test/defect/000.png": _png(13), "test/defect/001.png": _png(14),
             "ground_truth/defect/000_mask.png": _png(255), "ground_truth/defect/001_mask.png": _png(0)}
    git_dir, head = _commit(tmp_path / "src", files)
    for rel in ("train/good/001.png", "test/defect/001.png"):  # blobs a snapshot left out (too large)
        sha = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", f"{head}:{rel}"], check=True,
                             capture_output=True, text=True).stdout.strip()
        (git_dir / "objects" / sha[:2] / sha[2:]).unlink()
    repo = rs.Repo(git_dir, head)
    assert set(repo.present()) == set(files) - {"train/good/001.png", "test/defect/001.png"}
    rs.build_lenses(repo, rs.Writer(tmp_path / "out"))
    found = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")}
    assert {Path(p).name for p in found if "/train/" in p} == {"000.png"}
    assert sum("/test/" in p for p in found) == 2  # the good one and the defect the snapshot holds


def _strip(rng: np.random.Generator, width: int = 1400, padding: int = 300) -> np.ndarray:
    strip = rng.integers(90, 160, (256, width)).astype(np.uint8)
    strip[:, :padding] = 255  # the scanner's white padding at the strip's start
    return strip


def _png_of(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_fabric_strips_become_tiles_past_their_padding_and_a_defect_tile_is_one_its_mask_marks(tmp_path):
    rng = np.random.default_rng(0)
    files = {f"dataset/NoDefect_images/fabric-a/{i:04d}_000_03.png": _png_of(_strip(rng)) for i in range(1, 11)}
    files["dataset/NoDefect_images/fabric-b/0001_000_02.png"] = _png_of(_strip(rng))  # another fabric: not read
    mask_a, mask_b = np.zeros((256, 1400), np.uint8), np.zeros((256, 1400), np.uint8)
    mask_a[100:110, 500:520] = 255  # 200 px in the first tile (from 300 + 64 = 364)
    mask_b[10:14, 1000:1010] = 255  # a second defect on the same strip, in the third tile (876 to 1132)
    mask_a[200:203, 1200:1205] = 255  # 15 px in the fourth: fewer than FABRIC_MIN_DEFECT_PX
    files.update({"dataset/Defect_images/0007_010_03.png": _png_of(_strip(rng)),
                  "dataset/Mask_images/0007_010_03_mask1.png": _png_of(mask_a),
                  "dataset/Mask_images/0007_010_03_mask2.png": _png_of(mask_b),
                  "dataset/Defect_images/0008_010_02.png": _png_of(_strip(rng)),
                  "dataset/Mask_images/0008_010_02_mask.png": _png_of(mask_a)})
    git_dir, head = _commit(tmp_path / "src", files)
    out = tmp_path / "out"
    rs.build_fabric(rs.Repo(git_dir, head), rs.Writer(out))
    tiles = sorted(out.rglob("*.png"))
    names = {p.relative_to(out).as_posix() for p in tiles}
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (256, 256) for p in tiles)
    assert not any("0001_000_02" in n or "0008_010_02" in n for n in names)
    assert all((cv2.imread(str(p), 0) < 250).all() for p in tiles if "/ground_truth/" not in str(p))  # no padding
    defects = sorted(n for n in names if "/test/defect/" in n)
    assert [Path(n).stem for n in defects] == ["0007_010_03_x364", "0007_010_03_x876"]
    assert len({n.split("/")[0] for n in defects}) == 1  # a strip's tiles stay on one side of the split
    good_strips = {Path(n).stem.rsplit("_x", 1)[0] for n in names if "/test/good/" in n}
    train_strips = {Path(n).stem.rsplit("_x", 1)[0] for n in names if "/train/good/" in n}
    assert good_strips and train_strips and not good_strips & train_strips
    assert len([n for n in names if n.startswith("dev/train/")]) == 4 * len(train_strips)  # 4 tiles a strip
