"""Rebuild the photographed inspection sets used for development, in the MVTec AD layout.

Each set is read from a public GitHub repository at a pinned commit (a snapshot fetched into
/work/.mirror, or any clone given with --mirror NAME=PATH) and written to
~/.cache/station/real-sets/<set>/{dev,final}/: train/good, test/<class>, ground_truth/<class>/*_mask.png.
The test images are split in two halves by a hash of their name: `dev` for development, `final` to be
evaluated once at the end. Both halves share the same training images. Nothing here is committed.

    python scripts/real_sets.py            # every set
    python scripts/real_sets.py bottle     # one set

Sets (licences as their sources state them):
  bottle         MVTec AD "bottle" (object, 900 x 900, masks), CC BY-NC-SA 4.0 (research use),
                 as committed in doanthai161/Bottle-Anomaly-Detection.
  magnetic-tile  Magnetic tile surface defects (texture: tiles of varying size, masks), Huang et al. 2018,
                 abin24/Magnetic-tile-defect-datasets. ("use welcomed, cite the paper"; no licence file).
                 Every tile is photographed under six lightings; train and test, dev and final, are split by
                 tile, so no test tile has a near-duplicate among the training images.
  deeppcb        DeepPCB (printed circuit board, repeating tracks; 640 x 640 binarised), MIT licence,
                 tangsanli5201/DeepPCB. Defect boxes are drawn as filled rectangles for masks (coarse).
  kolektorsdd    KolektorSDD, Tabernik et al. 2019 (surface: electrical commutators, grey, 500 wide, 1235-1285 high,
                 masks), CC BY-NC-SA 4.0 (as the original states; the copy has no licence file), as committed
                 in stoy95536/KolektorSDD_Yolov8_Datasets. Masks are filled from its polygons, which are the
                 outer contours of the original label masks. 50 parts of about 8 views each, numbered in turn;
                 the good views are split by part (number // 8), so a part's views stay together.
  elpv-poly      ELPV solar cells, Buerhop-Lutz, Deitsch et al. 2018 (texture: polycrystalline cells in
                 electroluminescence, grey, 300 x 300, no masks), CC BY-NC-SA 4.0, zae-bayern/elpv-dataset.
                 Good is a defect probability of 0, defect one of 1; the uncertain 1/3 and 2/3 are left out.
  elpv-mono      The same, monocrystalline cells (aligned pattern: busbars, fingers, rounded corners).
  bottle-turned  The bottle set, every photograph turned by its own angle (0 to 360 degrees, drawn from a hash
                 of its name) and shifted by up to 5 % of its side, the corners filled by reflection; a mask
                 turns with its photograph. An object the camera does not see in one pose: what a part
                 tumbling on a conveyor, or a round part in any orientation, gives.
  tire           MVTec 3D-AD "tire", its colour photographs only (object: a tyre's tread photographed from above,
                 800 x 600, masks), CC BY-NC-SA 4.0 (license.txt beside it), the review subset as committed in
                 yagamieren09/Automated-Defect-Detection-System-using-AI-vision (removed from its newest commit;
                 pinned to one that holds it). Its train and validation good images are both training images.
  screw          MVTec AD "screw" (object that turns and shifts: a screw lying at any angle, grey, 1024 x 1024),
                 CC BY-NC-SA 4.0 (license.txt beside it), as committed in dungdao1995/SkipGanomaly-MVTECAD. The
                 copy renamed its defective test images to one folder (test/1), so their kinds are lost and its
                 masks cannot be paired with them: one class `defect`, no masks.
  metal-plate    MPDD "metal_plate" (metal plates photographed on a bench, 512 x 512 as the copy resized them,
                 masks), Jezek et al. 2021, CC BY-NC-SA 4.0 (as the original states; the copy has no licence
                 file), as committed in BupeshKumarR/defect-segmentation-for-mpdd, which split it for supervised
                 training: an image is good where its mask is empty. Byte-identical copies are read once; half
                 of the good images (by a hash of their name) are training images, the rest test images.
  casting        Submersible pump impellers, cast, photographed from above (a round part at any angle and a
                 little shifted, grey on a grey table, 300 x 300, no masks), Dabhi 2020 ("casting product image
                 data for quality inspection", Kaggle, CC BY-NC-ND 4.0 as it states), as committed in
                 Ritamkarmakar2105/Submersible-pump-impeller-defect-Detection-and-Analysis. A seventh of its 2875
                 good training images (by a hash of their name, 400 or so) train; its test images (262 good, 453
                 defective) are the test images.
  transistor     MVTec AD "transistor" (object: a transistor on a board, seen from above, colour, 1024 x 1024,
                 masks; its defects include a transistor missing or misplaced), CC BY-NC-SA 4.0 (license.txt
                 beside it), as committed in LinirZamir/AnomalyDetection.
  lenses         MTOC micro-transparent optical components (lenses on a grey stage, colour, 2448 x 2048 and
                 some 2048 x 1713, masks), as committed in HumbleBean001/MTOC-Dataset (no licence stated: used
                 for development only, never shipped). The snapshot holds only its files under 4 MiB: 60 of 114
                 good training images, 27 of 72 good and 100 of 256 defective test images; a file the snapshot
                 lacks is left out.
  wood           Wood boards (texture in colour: planed boards with grain, knots and cracks, 256 x 256 as the
                 copy resized them from 2800 x 1024, JPEG masks), as committed in cemlevent54/wood-anomaly-detection
                 (its MVTec-layout copy for SimpleNet; removed from its newest commit, pinned to one that holds
                 it; no licence stated: development only). 70 good training images, 70 good and 71 defective
                 test images.
  fabric         AITEX fabric database, Silvestre-Blanes et al. 2019 (texture: woven fabric, grey line-scan strips
                 4096 x 256, masks; published for research use), as committed in
                 sadanalog/defect-detection-using-cnn. Fabric 03 only (its 31 defective strips all match its 20
                 defect-free ones in weave, unlike fabric 02's), cut into 256 px tiles past each strip's white
                 padding and selvedge (`fabric_tiles`). 70 % of the defect-free strips train; the rest give good
                 test tiles; a defective strip's tiles its mask marks are the defective test tiles.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("real_sets")
CACHE = Path.home() / ".cache" / "station" / "real-sets"
MIRRORS = Path("/work/.mirror")
MAX_BLOB_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str

    def git_dir(self, overrides: dict[str, Path]) -> Path:
        if self.repo in overrides:
            return overrides[self.repo]
        snapshot = MIRRORS / self.repo.replace("/", "+") / "repo"
        return snapshot / ".git" if (snapshot / ".git").is_dir() else snapshot  # bare, or a clone's git folder


SOURCES = {
    "bottle": Source("doanthai161/Bottle-Anomaly-Detection", "ff4e8f31ed4dfbdb522fa9e50f32787510054c74"),
    "magnetic-tile": Source("abin24/Magnetic-tile-defect-datasets.", "cc4eb530b57b9cb7225bf76023873043ffd50655"),
    "deeppcb": Source("tangsanli5201/DeepPCB", "08e98c4db5922613fb97176eb3d6497d48260cb1"),
    "kolektorsdd": Source("stoy95536/KolektorSDD_Yolov8_Datasets", "81e5cf333010730a05f11d1c0357bc0f24ecf502"),
    "elpv-poly": Source("zae-bayern/elpv-dataset", "411fd729dad19511883306aa85e52f1962cba581"),
    "elpv-mono": Source("zae-bayern/elpv-dataset", "411fd729dad19511883306aa85e52f1962cba581"),
    "bottle-turned": Source("doanthai161/Bottle-Anomaly-Detection", "ff4e8f31ed4dfbdb522fa9e50f32787510054c74"),
    "screw": Source("dungdao1995/SkipGanomaly-MVTECAD", "4bb4ee6f77e374413bd3d499225e7057692c740e"),
    "metal-plate": Source("BupeshKumarR/defect-segmentation-for-mpdd", "5d8b9cddfa7af2f145bafaaf6eca53294f5aa7b0"),
    "tire": Source("yagamieren09/Automated-Defect-Detection-System-using-AI-vision",
                   "ab9674c2882da1aa3423d38b2090c85527910b96"),
    "transistor": Source("LinirZamir/AnomalyDetection", "9a1e44f67e7bd5a374e8760208f4d8a178b80ac4"),
    "lenses": Source("HumbleBean001/MTOC-Dataset", "a5a6d8ab4e1ecca058dfc332940f246a98cbf33e"),
    "casting": Source("Ritamkarmakar2105/Submersible-pump-impeller-defect-Detection-and-Analysis",
                      "fdd84ad8b07d436a6240f1c8c063189e223f0b37"),
    "wood": Source("cemlevent54/wood-anomaly-detection", "8810261464af703206237fb08bfb4978a236506a"),
    "fabric": Source("sadanalog/defect-detection-using-cnn", "2dc12b16fdd1447bf8d2b5db1c46e8abe9a531bb"),
}


class Repo:
    """Files of one pinned commit, read straight from the git objects (no work tree)."""

    def __init__(self, git_dir: Path, commit: str) -> None:
        if not git_dir.is_dir():
            raise SystemExit(f"real_sets: no snapshot at {git_dir}; fetch github:{git_dir.parent.name.replace('+', '/')}")
        self.git_dir, self.commit = git_dir, commit
        subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}"], check=True)

    def ls(self, prefix: str) -> list[str]:
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "ls-tree", "-r", "--name-only", self.commit,
                              prefix], check=True, capture_output=True, text=True).stdout
        return sorted(line for line in out.splitlines() if line)

    def present(self) -> list[str]:
        """The paths whose contents the snapshot holds (a partial snapshot lists some files it lacks)."""
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "ls-tree", "-r", self.commit],
                             check=True, capture_output=True, text=True).stdout
        entries = [(line.split()[2], line.split("\t", 1)[1]) for line in out.splitlines() if line]
        shas = sorted({sha for sha, _ in entries})
        batch = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch-check"],
                               input="\n".join(shas), check=True, capture_output=True, text=True).stdout
        missing = {line.split()[0] for line in batch.splitlines() if line.endswith("missing")}
        return sorted(path for sha, path in entries if sha not in missing)

    def read(self, path: str) -> bytes:
        data = subprocess.run(["git", "--git-dir", str(self.git_dir), "show", f"{self.commit}:{path}"],
                              check=True, capture_output=True).stdout
        if len(data) > MAX_BLOB_BYTES:
            raise SystemExit(f"real_sets: {path} is larger than {MAX_BLOB_BYTES} bytes")
        return data

    def image(self, path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(self.read(path), np.uint8), flags)
        if img is None:
            raise SystemExit(f"real_sets: {path} is not a readable image")
        return img


def is_dev(name: str) -> bool:
    """The deterministic half of the test images used for development."""
    return hashlib.sha1(name.encode()).digest()[0] % 2 == 0


def in_train(name: str, fraction: float) -> bool:
    return hashlib.sha1(b"train:" + name.encode()).digest()[1] < fraction * 256


class Writer:
    def __init__(self, root: Path) -> None:
        if root.exists():
            shutil.rmtree(root)  # our own cache folder, rebuilt from the pinned commit
        self.root = root
        self.counts: dict[str, int] = {}

    def put(self, rel: str, image: np.ndarray) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), image):
            raise SystemExit(f"real_sets: cannot write {path}")
        key = "/".join(rel.split("/")[:2])
        self.counts[key] = self.counts.get(key, 0) + 1

    def train(self, name: str, image: np.ndarray) -> None:
        for split in ("dev", "final"):
            self.put(f"{split}/train/good/{name}.png", image)

    def test(self, cls: str, name: str, image: np.ndarray, mask: np.ndarray | None = None,
             split_key: str | None = None) -> None:
        """A test image, in the dev or the final half by a hash of `split_key` (default: its class and name)."""
        split = "dev" if is_dev(split_key or f"{cls}/{name}") else "final"
        self.put(f"{split}/test/{cls}/{name}.png", image)
        if mask is not None:
            self.put(f"{split}/ground_truth/{cls}/{name}_mask.png", np.where(mask > 127, 255, 0).astype(np.uint8))


def turned(image: np.ndarray, key: str, mask: bool = False) -> np.ndarray:
    """`image` turned about its centre by an angle drawn from a hash of `key` and shifted by up to 5 % of its side;
    a mask (nearest neighbour, zeros outside) with the same key turns as its photograph does."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha1(b"turn:" + key.encode()).digest()[:8], "little"))
    angle, dx, dy = rng.uniform(0, 360), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (dx * w, dy * h)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_NEAREST if mask else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT if mask else cv2.BORDER_REFLECT)


def build_bottle(repo: Repo, out: Writer, turn: bool = False) -> None:
    """The bottle set; with `turn`, every photograph and its mask turned alike (`turned`)."""
    base = "data/bottle/bottle"
    pose = turned if turn else (lambda image, key, mask=False: image)
    for path in repo.ls(f"{base}/train/good"):
        stem = Path(path).stem
        out.train(stem, pose(repo.image(path), f"train/{stem}"))
    for path in repo.ls(f"{base}/test"):
        cls, stem = path.split("/")[-2], Path(path).stem
        mask = None if cls == "good" else pose(
            repo.image(f"{base}/ground_truth/{cls}/{stem}_mask.png", cv2.IMREAD_GRAYSCALE), f"{cls}/{stem}", mask=True)
        out.test(cls, stem, pose(repo.image(path), f"{cls}/{stem}"), mask)


TILE_GAP = 100  # photographs of one tile are numbered within this of each other (six lightings, exp1-exp6)


def tile_of(stems: list[str]) -> dict[str, str]:
    """Each photograph's tile: the set photographs every tile under six lightings (exp1_num_11276,
    exp2_num_11292, ...), numbered in runs; a gap of more than TILE_GAP starts the next tile. Splitting by
    tile keeps a test tile's other lightings out of the training images (they are near-duplicates: with them,
    telling a new tile from a known one would pass for finding defects)."""
    numbers = sorted((int(s.rsplit("_", 1)[1]), s) for s in stems)
    out, start, last = {}, None, None
    for n, stem in numbers:
        if last is None or n - last > TILE_GAP:
            start = n
        out[stem], last = f"tile{start}", n
    return out


def build_magnetic_tile(repo: Repo, out: Writer) -> None:
    free = [p for p in repo.ls("MT_Free/Imgs") if p.endswith(".jpg")]
    tiles = tile_of([Path(p).stem for p in free])
    for path in free:
        stem = Path(path).stem
        if in_train(tiles[stem], 0.8):
            out.train(stem, repo.image(path))
        else:
            out.test("good", stem, repo.image(path), split_key=f"good/{tiles[stem]}")
    for folder in ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"):
        cls = folder[3:].lower()
        paths = [p for p in repo.ls(f"{folder}/Imgs") if p.endswith(".jpg")]
        tiles = tile_of([Path(p).stem for p in paths])
        for path in paths:
            mask = repo.image(path[:-4] + ".png", cv2.IMREAD_GRAYSCALE)
            stem = Path(path).stem
            out.test(cls, stem, repo.image(path), mask, split_key=f"{cls}/{tiles[stem]}")


def build_deeppcb(repo: Repo, out: Writer, n_train: int = 400, n_test: int = 120) -> None:
    """Templates are defect-free boards, test images carry boxed defects. Pairs are split, so no test board
    region has its template among the training images."""
    pairs = [p[: -len("_temp.jpg")] for p in repo.ls("PCBData") if p.endswith("_temp.jpg")]
    order = sorted(pairs, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    train, test_good, test_bad = order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:][:n_test]
    for p in train:
        out.train(Path(p).name, repo.image(p + "_temp.jpg"))
    for p in test_good:
        out.test("good", Path(p).name, repo.image(p + "_temp.jpg"))
    for p in test_bad:
        image = repo.image(p + "_test.jpg")
        folder, stem = Path(p).parent, Path(p).name
        boxes = repo.read(f"{folder.as_posix()}_not/{stem}.txt").decode().split("\n")
        mask = np.zeros(image.shape[:2], np.uint8)
        for line in boxes:
            vals = line.replace(",", " ").split()
            if len(vals) >= 4:
                x1, y1, x2, y2 = (int(float(v)) for v in vals[:4])
                cv2.rectangle(mask, (x1, y1), (x2, y2), 255, -1)
        out.test("defect", stem, image, mask)


def polygon_mask(text: str, shape: tuple[int, int], where: str) -> np.ndarray:
    """A mask filled from YOLO segmentation lines: a class, then x y pairs as fractions of the frame."""
    mask = np.zeros(shape, np.uint8)
    h, w = shape
    for line in text.splitlines():
        vals = line.split()
        if not vals:
            continue
        try:
            xy = np.array([float(v) for v in vals[1:]], np.float64)
        except ValueError:
            raise SystemExit(f"real_sets: {where}: a polygon has a value that is not a number") from None
        if xy.size < 6 or xy.size % 2 or not np.all((xy >= 0.0) & (xy <= 1.0)):
            raise SystemExit(f"real_sets: {where}: a polygon needs 3 or more x y pairs within the frame")
        pts = np.minimum(np.rint(xy.reshape(-1, 2) * (w, h)), (w - 1, h - 1)).astype(np.int32)  # x / w as written
        cv2.fillPoly(mask, [pts], 255)
    return mask


def build_kolektorsdd(repo: Repo, out: Writer) -> None:
    base = "Datasets"
    for path in repo.ls(f"{base}/images"):
        if not path.endswith(".jpg"):
            continue
        split, stem = path.split("/")[-2], Path(path).stem
        label = repo.read(f"{base}/labels/{split}/{stem}.txt").decode()
        image = repo.image(path, cv2.IMREAD_GRAYSCALE)  # grey as taken: one channel, as the station reads it
        if label.strip():
            out.test("defect", stem, image, polygon_mask(label, image.shape[:2], path))
        elif in_train(f"part{int(stem) // 8}", 0.8):
            out.train(stem, image)
        else:
            out.test("good", stem, image)


def build_elpv(repo: Repo, out: Writer, kind: str, n_train: int = 300, n_test: int = 75) -> None:
    base = "src/elpv_dataset/data"
    good, bad = [], []
    for line in repo.read(f"{base}/labels.csv").decode().splitlines():
        vals = line.split()
        try:
            proba = float(vals[1]) if len(vals) == 3 else -1.0
        except ValueError:
            proba = -1.0
        if not 0.0 <= proba <= 1.0 or vals[2] not in ("mono", "poly") or not vals[0].startswith("images/"):
            raise SystemExit(f"real_sets: {base}/labels.csv: unexpected line {line[:80]!r}")
        if vals[2] == kind and proba in (0.0, 1.0):
            (good if proba == 0.0 else bad).append(vals[0])
    order = sorted(good, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    for p in order[:n_train]:
        out.train(Path(p).stem, repo.image(f"{base}/{p}", cv2.IMREAD_GRAYSCALE))
    for p in order[n_train:n_train + n_test]:
        out.test("good", Path(p).stem, repo.image(f"{base}/{p}", cv2.IMREAD_GRAYSCALE))
    for p in sorted(bad, key=lambda p: hashlib.sha1(p.encode()).hexdigest())[:n_test]:
        out.test("defect", Path(p).stem, repo.image(f"{base}/{p}", cv2.IMREAD_GRAYSCALE))


def build_tire(repo: Repo, out: Writer) -> None:
    base = "dataset/mvtec_3d/tire"
    for split in ("train", "validation"):
        for path in repo.ls(f"{base}/{split}/good/rgb"):
            out.train(f"{split}_{Path(path).stem}", repo.image(path))
    for path in repo.ls(f"{base}/test"):
        parts = path.split("/")
        if parts[-2] != "rgb" or not path.endswith(".png"):
            continue  # the depth images (xyz) and the masks (gt) are read with their colour image
        cls, stem = parts[-3], Path(path).stem
        mask = None if cls == "good" else repo.image(f"{base}/test/{cls}/gt/{stem}.png", cv2.IMREAD_GRAYSCALE)
        out.test(cls, stem, repo.image(path), mask)


def build_screw(repo: Repo, out: Writer) -> None:
    base = "data/screw"
    for path in repo.ls(f"{base}/train/good"):
        out.train(Path(path).stem, repo.image(path, cv2.IMREAD_GRAYSCALE))
    for folder, cls in (("0", "good"), ("1", "defect")):
        for path in repo.ls(f"{base}/test/{folder}"):
            stem = Path(path).stem.replace("(", "_").replace(")", "")  # 000(1) -> 000_1
            out.test(cls, stem, repo.image(path, cv2.IMREAD_GRAYSCALE))


def build_metal_plate(repo: Repo, out: Writer) -> None:
    base = "data_supervised/metal_plate"
    seen: set[str] = set()
    for path in repo.ls(base):
        parts = path.split("/")
        if parts[-2] != "images":
            continue  # masks are read with their image
        data = repo.read(path)
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            continue  # the copy repeats some defective images byte for byte
        seen.add(digest)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"real_sets: {path} is not a readable image")
        mask = repo.image(f"{base}/{parts[-3]}/masks/{parts[-1]}", cv2.IMREAD_GRAYSCALE)
        name = f"{parts[-3]}_{Path(path).stem}"
        if not (mask > 127).any():
            if in_train(name, 0.5):
                out.train(name, image)
            else:
                out.test("good", name, image)
        else:
            out.test("defect", name, image, mask)


def build_casting(repo: Repo, out: Writer) -> None:
    base = "casting_data/casting_data"
    for path in repo.ls(f"{base}/train/ok_front"):
        if in_train(Path(path).stem, 1 / 7):
            out.train(Path(path).stem, repo.image(path, cv2.IMREAD_GRAYSCALE))
    for folder, cls in (("ok_front", "good"), ("def_front", "defect")):
        for path in repo.ls(f"{base}/test/{folder}"):
            out.test(cls, Path(path).stem, repo.image(path, cv2.IMREAD_GRAYSCALE))


def build_mvtec(repo: Repo, out: Writer, base: str = "", partial_snapshot: bool = False) -> None:
    """A set already in the MVTec AD layout under `base` (the repository's root where empty): train/good,
    test/<class>, ground_truth/<class>/<name>_mask.png. A defect without its mask is refused. With
    `partial_snapshot`, files the snapshot lacks (MTOC's over 4 MiB) are left out."""
    prefix = f"{base}/" if base else ""
    listed = (set(repo.present()) if partial_snapshot else
              {path for part in ("train", "test", "ground_truth") for path in repo.ls(f"{prefix}{part}")})
    for path in repo.ls(f"{prefix}train/good"):
        if path in listed:
            out.train(Path(path).stem, repo.image(path))
    for path in repo.ls(f"{prefix}test"):
        if path not in listed:
            continue
        cls, stem = path.split("/")[-2], Path(path).stem
        mask_paths = [f"{prefix}ground_truth/{cls}/{stem}_mask{ext}" for ext in (".png", ".jpg")]
        mask_path = next((m for m in mask_paths if m in listed), None)
        mask = repo.image(mask_path, cv2.IMREAD_GRAYSCALE) if mask_path else None  # a JPEG mask: cut at 127
        if cls != "good" and mask is None:
            raise SystemExit(f"real_sets: {path} has no mask at {mask_paths[0]}")
        out.test(cls, stem, repo.image(path), mask)


build_lenses = partial(build_mvtec, partial_snapshot=True)  # MTOC: the MVTec layout at the repository's root

FABRIC_CODE = "03"  # AITEX's fabric 03: every one of its defective strips has its defect-free strips' weave
FABRIC_TILE = 256
FABRIC_EDGE = 64  # px of the selvedge past the padding's last white column, left out
FABRIC_MIN_DEFECT_PX = 32  # a tile is defective where its mask marks this many pixels


def fabric_tiles(strip: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(left column, tile) of a 256-row line-scan strip cut into squares, from past its white padding and selvedge
    to its end."""
    white = np.nonzero((strip >= 250).mean(axis=0) > 0.5)[0]
    start = (int(white.max()) + 1 if white.size else 0) + FABRIC_EDGE
    side = FABRIC_TILE
    return [(x, strip[:side, x:x + side]) for x in range(start, strip.shape[1] - side + 1, side)]


def build_fabric(repo: Repo, out: Writer, train_share: float = 0.7) -> None:
    """AITEX fabric 03 (4096 x 256 line-scan strips) as 256 px tiles: the defect-free strips split into training
    and test strips by a hash of their name; a defective strip's tiles that its mask marks are defective test
    tiles (its other tiles are left out: a defect's neighbourhood is not known to be good). A strip's tiles stay
    together in the dev or the final half."""
    for path in repo.ls("dataset/NoDefect_images"):
        if not path.endswith(f"_{FABRIC_CODE}.png"):
            continue
        stem = Path(path).stem
        training = in_train(stem, train_share)
        for x, tile in fabric_tiles(repo.image(path, cv2.IMREAD_GRAYSCALE)):
            if training:
                out.train(f"{stem}_x{x}", tile)
            else:
                out.test("good", f"{stem}_x{x}", tile, split_key=stem)
    masks = repo.ls("dataset/Mask_images")
    for path in repo.ls("dataset/Defect_images"):
        stem = Path(path).stem
        if "/unused/" in path or not stem.endswith(f"_{FABRIC_CODE}"):
            continue
        strip = repo.image(path, cv2.IMREAD_GRAYSCALE)
        its = [m for m in masks if Path(m).stem in (f"{stem}_mask", f"{stem}_mask1", f"{stem}_mask2")]
        if not its:
            raise SystemExit(f"real_sets: {path} has no mask in dataset/Mask_images")
        mask = np.max([repo.image(m, cv2.IMREAD_GRAYSCALE) for m in its], axis=0)  # two defects: two masks
        for x, tile in fabric_tiles(strip):
            marked = mask[:FABRIC_TILE, x:x + FABRIC_TILE]
            if int((marked > 127).sum()) >= FABRIC_MIN_DEFECT_PX:
                out.test("defect", f"{stem}_x{x}", tile, marked, split_key=stem)


BUILDERS = {"bottle": build_bottle, "magnetic-tile": build_magnetic_tile, "deeppcb": build_deeppcb,
            "kolektorsdd": build_kolektorsdd,
            "elpv-poly": partial(build_elpv, kind="poly"), "elpv-mono": partial(build_elpv, kind="mono"),
            "tire": build_tire, "bottle-turned": partial(build_bottle, turn=True),
            "screw": build_screw, "metal-plate": build_metal_plate, "casting": build_casting,
            "transistor": partial(build_mvtec, base="data/transistor"), "lenses": build_lenses,
            "wood": partial(build_mvtec, base="simplenet_model/SimpleNet/datasets/mvtec/wood"), "fabric": build_fabric}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=list(BUILDERS), help=f"which sets ({', '.join(BUILDERS)})")
    ap.add_argument("--out", type=Path, default=CACHE)
    ap.add_argument("--mirror", action="append", default=[], help="OWNER/NAME=GIT_DIR, a clone to read instead")
    args = ap.parse_args(argv)
    overrides = dict((k, Path(v)) for k, _, v in (m.partition("=") for m in args.mirror))
    for name in args.sets:
        if name not in BUILDERS:
            ap.error(f"unknown set {name!r}")
        src = SOURCES[name]
        writer = Writer(args.out / name)
        BUILDERS[name](Repo(src.git_dir(overrides), src.commit), writer)
        log.info("%s (%s@%s): %s", name, src.repo, src.commit[:10], writer.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
