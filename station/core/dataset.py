"""Labelled image sets on disk: the ImageFolder layout (`DIR/<class>/*`) and the MVTec AD layout (MVTec AD 2's
`validation/good` and `test_public/` too).

`good` is the OK class. A `manifest.json` written by `station synth` (or by hand) beside the class
folders gives the defective cell of each image; MVTec `ground_truth` masks give it after
registration.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from station.core.engines.base import ok_first
from station.core.errors import DatasetError
from station.core.imageio import is_image_file
from station.core.masks import find_mask

OK_CLASS = "good"
# Names given to good folders: MVTec AD, VisA and MPDD say `good`, BTAD and many plants `ok` (or `OK`).
# Images in any of them are labelled OK_CLASS, in either layout.
GOOD_FOLDER_NAMES = (OK_CLASS, "ok")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
TEST_FOLDER_NAMES = ("test", "test_public")  # MVTec AD (and BTAD, MPDD, VisA as converted), MVTec AD 2


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    cell: tuple[int, int] | None = None  # (col, row) of the defective cell, where known
    mask: Path | None = None  # ground-truth mask (a file, or a folder of them: station.core.masks), frame coordinates


@dataclass
class Dataset:
    root: Path
    layout: str  # "imagefolder" or "mvtec"
    samples: list[Sample] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class names, `good` first, the rest sorted."""
        names = {s.label for s in self.samples}
        return ok_first(names, OK_CLASS)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            out[s.label] = out.get(s.label, 0) + 1
        return {name: out[name] for name in self.classes}

    def sample_per_class(self, max_per_class: int | None, seed: int = 0) -> Dataset:
        """A seeded sample of at most `max_per_class` images of each class (all of them if None)."""
        if max_per_class is None:
            return self
        if max_per_class < 1:
            raise DatasetError("--max-per-class must be at least 1")
        rng = random.Random(seed)
        picked: list[Sample] = []
        for name in self.classes:
            members = [s for s in self.samples if s.label == name]
            if len(members) > max_per_class:
                members = sorted(rng.sample(members, max_per_class), key=lambda s: s.path)
            picked.extend(members)
        return Dataset(self.root, self.layout, picked)


def _class_folder(folder: Path, label: str, cells: dict[str, tuple[int, int]], manifest_root: Path) -> list[Sample]:
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise DatasetError(f"class folder {folder} has no images")
    out = []
    for p in files:
        key = p.relative_to(manifest_root).as_posix()
        out.append(Sample(p, label, cells.get(key)))
    return out


def read_manifest_cells(folder: Path) -> dict[str, tuple[int, int]]:
    """Defective cells from `folder/manifest.json`, keyed by the image path relative to `folder`."""
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"manifest is too large: {path}")
        doc = json.loads(path.read_text(encoding="utf-8"))
        cells = {}
        for item in doc["images"]:
            cell = item.get("cell")
            if cell is None:
                continue
            col, row = (int(v) for v in cell)
            cells[str(item["file"])] = (col, row)
        return cells
    except DatasetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"manifest {path} is not valid: {exc}") from None


def class_label(folder_name: str) -> str:
    """A class folder's label: OK_CLASS for any of the good folders' names (`good`, `ok`, `OK`, `Good`), else
    the folder's name."""
    return OK_CLASS if folder_name.lower() in GOOD_FOLDER_NAMES else folder_name


def _imagefolder(root: Path, layout: str = "imagefolder", skip: Path | None = None) -> Dataset:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p != skip)
    if not class_dirs:
        raise DatasetError(f"{root} has no class folders (expected {root}/good/*.png and one folder per defect class)")
    cells = read_manifest_cells(root)
    samples: list[Sample] = []
    for d in class_dirs:
        samples.extend(_class_folder(d, class_label(d.name), cells, root))
    return Dataset(root, layout, samples)


def _good_folder(train: Path) -> Path | None:
    """The MVTec-family train folder's only class folder, where it is named as a good one (`good`, `ok`)."""
    if not train.is_dir():
        return None
    folders = [p for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(folders) == 1 and folders[0].name.lower() in GOOD_FOLDER_NAMES:
        return folders[0]
    return None


def _test_folder(root: Path) -> Path | None:
    """The MVTec-family test folder: `test`, else MVTec AD 2's `test_public` (its labelled public test split;
    `test_private` has no labels)."""
    return next((root / name for name in TEST_FOLDER_NAMES if (root / name).is_dir()), None)


def _mvtec(root: Path, split: str) -> Dataset:
    good = _good_folder(root / "train")
    if good is None:
        raise DatasetError(f"{root} has no train/good (or train/ok) folder")
    if split == "train":  # MVTec AD 2's validation/good are good images too: the engines hold out their own
        extra = _good_folder(root / "validation")
        return Dataset(root, "mvtec", _class_folder(good, OK_CLASS, {}, root)
                       + (_class_folder(extra, OK_CLASS, {}, root) if extra is not None else []))
    test = _test_folder(root)
    # MVTec AD keeps the masks beside test/, MVTec AD 2 inside test_public/: that folder is not a class
    truth = root / "ground_truth" if (root / "ground_truth").is_dir() else test / "ground_truth"
    data = _imagefolder(test, "mvtec", skip=truth)
    samples = []
    for s in data.samples:  # the good folder may be `ok` (BTAD): its images are OK_CLASS, with no mask
        mask = None if s.label == OK_CLASS else find_mask(truth / s.label, s.path.stem)
        samples.append(Sample(s.path, s.label, s.cell, mask))
    return Dataset(root, "mvtec", samples)


def is_mvtec(root: Path) -> bool:
    """Whether `root` holds a set in the MVTec AD family's layout (train/good and a test split beside it)."""
    return _good_folder(root / "train") is not None and _test_folder(root) is not None


def load_dataset(root: str | Path, split: str = "train") -> Dataset:
    """Load a dataset for `split` ("train" or "test").

    `root/train` and `root/test` as ImageFolders (our demo set), the MVTec AD layout, or a plain
    ImageFolder used as it is for either split.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}")
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}")
    if is_mvtec(root):
        return _mvtec(root, split)
    if (root / split).is_dir():
        return _imagefolder(root / split)
    if (root / "train").is_dir() or (root / "test").is_dir():
        raise DatasetError(f"{root} has no {split} folder")
    return _imagefolder(root)
