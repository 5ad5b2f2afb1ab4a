"""The recipe bundle: a folder with `recipe.json` (validated with pydantic) and `arrays.safetensors`.

Nothing is unpickled. Loading checks the schema version, every field (thresholds finite and
bounded), the arrays' presence and shapes (through the engine), the content hash (damage) and the
station's seal (`recipe.seal`, an HMAC of the content hash with the station key, station/core/trust.py),
so a damaged bundle, or one edited and its SHA-256 recomputed, is refused with a message that says
what is wrong. The bundled recipes cannot carry this station's seal: they are trusted by their content
hash listed in `resources/recipes/trusted.json`, shipped with the package (SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from station import __version__
from station.core import trust
from station.core.engines import Engine, engine_class
from station.core.errors import EngineError, RecipeError, RegistrationError, StationError
from station.core.grid import CellGrid
from station.core.jsonio import loads_bounded
from station.core.registration import FREE_FORM_REGIONS, PatternSetup, Region, Registrar
from station.core.tone import check_tone

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECIPE_FILE = "recipe.json"
ARRAYS_FILE = "arrays.safetensors"
SEAL_FILE = "recipe.seal"
BUNDLE_FILES = frozenset({RECIPE_FILE, ARRAYS_FILE, SEAL_FILE})  # all a recipe folder holds
TRUSTED_FILE = "trusted.json"  # in resources/recipes: content hashes of the recipes shipped with the package
SEAL_DOMAIN = "recipe"
#: no engine scores beyond this; a threshold past it (1e300, inf) would pass every part
MAX_THRESHOLD = 1e6
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_ARRAYS_BYTES = 2 * 1024 * 1024 * 1024


class RecipeRefused(RecipeError):
    """A recipe that was read but is not used: out-of-bounds values, a content hash or seal that does not
    match. Recorded in the station's audit log (an edit without the key leaves a trace)."""


def _record_refusal(folder: Path, why: str) -> None:
    from station.core.workbench import AuditLog, default_root
    from station.core.workbench.roles import os_user

    try:
        AuditLog(default_root() / "audit.jsonl").record({"role": "station", "user": os_user()}, "recipe_refused",
                                                        f"recipe {folder}", None, why)
    except StationError as exc:
        log.warning("the refusal of recipe %s was not recorded: %s", folder, exc)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridSpec(_Strict):
    cols: int = Field(ge=1, le=64)
    rows: int = Field(ge=1, le=64)
    cell_px: int = Field(ge=4, le=256)


class PatternSpec(_Strict):
    roi: list[float] = Field(min_length=5, max_length=6)  # cx, cy, w, h, angle_deg[, shear] in golden-frame px
    frame_size: list[int] = Field(min_length=2, max_length=2)
    margin: int = Field(ge=0, le=256)
    min_match: float = Field(ge=-1, le=1)
    max_angle: float = Field(ge=0, le=180)
    max_scale: float = Field(ge=0, le=0.5)

    @field_validator("roi")
    @classmethod
    def _finite_roi(cls, roi: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in roi) or roi[2] < 4 or roi[3] < 4 or (len(roi) == 6 and abs(roi[5]) > 1):
            raise ValueError("roi must be finite, at least 4 px wide and high, its shear within 1")
        return roi

    @field_validator("frame_size")
    @classmethod
    def _frame(cls, size: list[int]) -> list[int]:
        if not all(8 <= v <= 65536 for v in size):
            raise ValueError("frame_size must be 8..65536 px per side")
        return size


class RegionSpec(_Strict):
    mode: Literal["blob", "full", "pattern", "pose"]
    polarity: Literal["dark", "bright"] = "dark"
    min_area_frac: float = Field(ge=0, le=1)
    max_area_frac: float = Field(ge=0, le=1)
    refine: Literal["ecc", "none"] = "ecc"
    shift_x: float = 0.0
    shift_y: float = 0.0
    span_x: float = 0.0  # "pose": shares of the frame's shorter side along and across the part (the Registrar checks)
    span_y: float = 0.0
    turn: Literal["axis", "pattern"] = "axis"  # "pose": by the part's long axis, or a round part's by its pattern
    pattern: PatternSpec | None = None


class EngineSpec(_Strict):
    name: str
    config: dict[str, Any] = {}


def _bounded(value: float) -> float:
    if not (math.isfinite(value) and abs(value) <= MAX_THRESHOLD):
        raise ValueError(f"a threshold must be a finite number within \u00b1{MAX_THRESHOLD:g}, not {value!r}")
    return value


class Thresholds(_Strict):
    review: float
    ng: float
    # optional per-cell thresholds, rows x cols each; when set, each cell is judged on its own
    cell_review: list[list[float]] | None = Field(None, max_length=64)
    cell_ng: list[list[float]] | None = Field(None, max_length=64)

    @field_validator("review", "ng")
    @classmethod
    def _finite(cls, value: float) -> float:
        return _bounded(value)

    @field_validator("cell_review", "cell_ng")
    @classmethod
    def _finite_cells(cls, rows: list[list[float]] | None) -> list[list[float]] | None:
        if rows is not None:
            for row in rows:
                if len(row) > 64:
                    raise ValueError("at most 64 cells per row")
                for value in row:
                    _bounded(value)
        return rows

    @field_validator("ng")
    @classmethod
    def _ordered(cls, ng: float, info) -> float:
        review = info.data.get("review")
        if review is not None and not review <= ng:
            raise ValueError("the review threshold must not exceed the NG threshold")
        return ng


class RecipeDoc(_Strict):
    schema_version: int
    name: str = Field(min_length=1, max_length=200)
    product: str = ""
    ok_class: str = "good"
    classes: list[str] = Field(min_length=1)
    grid: GridSpec
    region: RegionSpec
    engine: EngineSpec
    thresholds: Thresholds
    provenance: dict[str, Any] = {}
    content_hash: str = ""


class Recipe:
    """A loaded recipe: its document, its grid and region, and a ready engine."""

    def __init__(self, doc: RecipeDoc, region: Region, engine: Engine, path: Path | None = None) -> None:
        self.doc, self.region, self.engine, self.path = doc, region, engine, path

    @property
    def grid(self) -> CellGrid:
        return self.engine.grid

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def content_hash(self) -> str:
        return self.doc.content_hash

    @property
    def short_hash(self) -> str:
        return self.doc.content_hash.removeprefix("sha256:")[:12]

    @property
    def thresholds(self) -> tuple[float, float]:
        return self.doc.thresholds.review, self.doc.thresholds.ng

    @property
    def cell_thresholds(self) -> tuple[np.ndarray, np.ndarray] | None:
        t = self.doc.thresholds
        if t.cell_review is None or t.cell_ng is None:
            return None
        return np.array(t.cell_review, dtype=float), np.array(t.cell_ng, dtype=float)

    @classmethod
    def create(cls, name: str, region: Region, engine: Engine, thresholds: tuple[float, float],
               classes: list[str], ok_class: str = "good", product: str = "",
               provenance: dict[str, Any] | None = None) -> Recipe:
        doc = RecipeDoc(
            schema_version=SCHEMA_VERSION, name=name, product=product, ok_class=ok_class, classes=classes,
            grid=GridSpec(**engine.grid.to_dict()), region=RegionSpec(**region.to_dict()),
            engine=EngineSpec(name=engine.name, config=engine.config),
            thresholds=Thresholds(review=float(thresholds[0]), ng=float(thresholds[1])),
            provenance={"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "station_version": __version__, **(provenance or {})},
        )
        return cls(doc, region, engine)

    # -- saving ------------------------------------------------------------------------------
    def all_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"engine.{k}": np.ascontiguousarray(v) for k, v in self.engine.arrays().items()}
        if self.region.template is not None:
            arrays["region.template"] = np.ascontiguousarray(self.region.template, dtype=np.float32)
        if self.region.reference is not None:
            arrays["region.reference"] = np.ascontiguousarray(self.region.reference, dtype=np.float32)
        if self.region.tone is not None:
            arrays["region.tone"] = np.ascontiguousarray(self.region.tone.reference, dtype=np.float32)
            arrays["region.tone_limit"] = np.array([self.region.tone.limit], dtype=np.float32)
            if self.region.tone.blocks is not None:
                arrays["region.tone_blocks"] = np.ascontiguousarray(self.region.tone.blocks, dtype=np.float32)
                arrays["region.tone_block_limit"] = np.array([self.region.tone.block_limit], dtype=np.float32)
        return arrays

    def save(self, folder: str | Path) -> Path:
        """Write the bundle into `folder` (created; an existing recipe there is replaced atomically)."""
        folder = Path(folder)
        blob = save_safetensors(self.all_arrays())
        doc = self.doc.model_copy(update={"content_hash": ""})
        doc.content_hash = _content_hash(doc, blob)
        self.doc = doc
        try:
            sealed = _seal(doc.content_hash)  # before anything is written: no key, no half-made folder
        except trust.TrustError as exc:
            raise RecipeError(f"cannot save recipe to {folder}: {exc}") from None
        _check_replaceable(folder)
        tmp: Path | None = None
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            (tmp / ARRAYS_FILE).write_bytes(blob)
            (tmp / RECIPE_FILE).write_text(json.dumps(_saved(doc.model_dump()), indent=2) + "\n", encoding="utf-8")
            (tmp / SEAL_FILE).write_text(sealed + "\n", encoding="ascii")
            if folder.exists():
                # the old bundle goes aside under a name no one else uses, and only then is it removed
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
                os.replace(folder, old / folder.name)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except OSError as exc:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)  # the half-written copy this call made, nothing else
            raise RecipeError(f"cannot save recipe to {folder}: {exc.strerror or exc}") from None
        self.path = folder
        return folder

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path) -> Recipe:
        """Load, validate and authenticate a bundle; RecipeError with a one-line reason when it cannot be used."""
        try:
            return cls._load(Path(folder), authenticate=True)
        except RecipeRefused as exc:
            _record_refusal(Path(folder), str(exc))
            raise

    @classmethod
    def _load(cls, folder: Path, authenticate: bool = False) -> Recipe:
        """Load and validate a bundle; with `authenticate`, refuse it before anything is built from it unless
        this station trusts it (its seal, or a bundled recipe's content hash)."""
        if folder.is_file() and folder.name == RECIPE_FILE:
            folder = folder.parent
        json_path, arrays_path = folder / RECIPE_FILE, folder / ARRAYS_FILE
        if not folder.is_dir():
            raise RecipeError(f"recipe not found: {folder}")
        if not json_path.is_file():
            raise RecipeError(f"{folder} is not a recipe: {RECIPE_FILE} is missing")
        if not arrays_path.is_file():
            raise RecipeError(f"recipe {folder} is incomplete: {ARRAYS_FILE} is missing")
        try:
            if json_path.stat().st_size > MAX_JSON_BYTES or arrays_path.stat().st_size > MAX_ARRAYS_BYTES:
                raise RecipeError(f"recipe {folder} is too large to be a recipe")
            raw = loads_bounded(json_path.read_text(encoding="utf-8"), f"recipe {json_path}", RecipeError,
                                allow_nan=True)  # its numbers are checked by the model below
            blob = arrays_path.read_bytes()
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"cannot read recipe {folder}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RecipeError(f"recipe {json_path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe {json_path} is not a JSON object")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecipeError(f"recipe {folder} has schema version {version!r}; this station reads version "
                              f"{SCHEMA_VERSION}")
        try:
            doc = RecipeDoc.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise RecipeRefused(f"recipe {json_path} is invalid at {where}: {first['msg']}") from None
        try:
            engine_cls = engine_class(doc.engine.name)
        except EngineError as exc:
            raise RecipeError(f"recipe {folder}: {exc}") from None
        if _content_hash(doc.model_copy(update={"content_hash": ""}), blob) != doc.content_hash:
            raise RecipeRefused(f"recipe {folder} does not match its content hash: it was modified or damaged "
                              "after it was saved")
        if authenticate and (problem := authenticity_problem(folder, doc.content_hash)):
            raise RecipeRefused(problem)
        try:
            arrays = load_safetensors(blob)
        except (SafetensorError, ValueError, OSError) as exc:
            raise RecipeError(f"recipe {arrays_path} is damaged: {exc}") from None
        try:
            grid = CellGrid(**doc.grid.model_dump())
            engine = engine_cls.from_saved(grid, doc.engine.config)
            engine.load_arrays({k.removeprefix("engine."): v for k, v in arrays.items() if k.startswith("engine.")})
        except EngineError as exc:
            raise RecipeError(f"recipe {folder}: {exc}") from None
        cells = doc.thresholds
        if (cells.cell_review is None) != (cells.cell_ng is None):
            raise RecipeError(f"recipe {folder}: per-cell thresholds need both cell_review and cell_ng")
        if cells.cell_review is not None:
            review, ng = np.array(cells.cell_review, dtype=float), np.array(cells.cell_ng, dtype=float)
            if review.shape != (grid.rows, grid.cols) or ng.shape != review.shape or np.any(review > ng):
                raise RecipeError(f"recipe {folder}: per-cell thresholds must be {grid.rows} rows of {grid.cols} "
                                  "cells, each review threshold not above its NG threshold")
        template = arrays.get("region.template")
        spec = doc.region.model_dump()
        saved_pattern = spec.pop("pattern", None)
        pattern = PatternSetup.from_dict(saved_pattern) if saved_pattern is not None else None
        margin = pattern.margin if pattern is not None else 0
        w, h = grid.size
        if template is not None and template.shape != (h + 2 * margin, w + 2 * margin):
            raise RecipeError(f"recipe {folder}: region template is {template.shape}, grid needs "
                              f"{(h + 2 * margin, w + 2 * margin)}")
        reference = arrays.get("region.reference")
        if doc.region.mode == "pattern":
            if pattern is None or template is None or reference is None or reference.ndim != 2 \
                    or not 8 <= min(reference.shape) or max(reference.shape) > 1024:
                raise RecipeError(f"recipe {folder}: a pattern region needs its setup, template and golden frame")
            if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(template))):
                raise RecipeError(f"recipe {folder}: the region's arrays hold values that are not numbers")
        tone = arrays.get("region.tone")
        try:
            if tone is not None:
                if doc.region.mode not in FREE_FORM_REGIONS:
                    raise RecipeError(f"recipe {folder}: only a free-form region (full, pose) matches tones")
                tone = check_tone(tone, arrays.get("region.tone_limit"), arrays.get("region.tone_blocks"),
                                  arrays.get("region.tone_block_limit"))
            region = Region(**spec, template=template, pattern=pattern, reference=reference, tone=tone)
            Registrar(region, grid)
        except EngineError as exc:
            raise RecipeError(f"recipe {folder}: {exc}") from None
        except RegistrationError as exc:
            raise RecipeError(f"recipe {folder}: {exc}") from None
        return cls(doc, region, engine, folder)


def _seal(content_hash: str) -> str:
    return trust.seal(SEAL_DOMAIN, content_hash.encode("utf-8"))


def bundled_hashes() -> dict[str, str]:
    """{content hash: recipe name} of the recipes shipped in resources/recipes (empty when none are listed)."""
    from station.core.resources import resources_dir

    try:
        path = resources_dir() / "recipes" / TRUSTED_FILE
        if not path.is_file() or path.stat().st_size > 64 * 1024:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (StationError, OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        log.warning("the list of bundled recipes cannot be read: %s", exc)
        return {}
    recipes = doc.get("recipes") if isinstance(doc, dict) else None
    if not isinstance(recipes, dict):
        return {}
    return {str(h): str(name) for name, h in recipes.items() if isinstance(h, str)}


def authenticity_problem(folder: Path, content_hash: str) -> str:
    """'' when this station trusts the recipe in `folder` (its seal, or a bundled recipe's hash), else why not."""
    if content_hash in bundled_hashes():
        return ""
    seal_path = folder / SEAL_FILE
    try:
        sealed = seal_path.read_text(encoding="ascii").strip() if seal_path.is_file() and \
            seal_path.stat().st_size <= 1024 else ""
        why = trust.seal_problem(SEAL_DOMAIN, content_hash.encode("utf-8"), sealed)
    except (OSError, UnicodeDecodeError) as exc:
        why = f"its seal cannot be read ({exc})"
    except trust.TrustError as exc:
        return f"recipe {folder} cannot be checked: {exc}"
    if not why:
        return ""
    return (f"recipe {folder} is refused: {why}. Only recipes saved on this station, or accepted on it with "
            f"`station trust-recipe {folder}`, are used")


def seal_recipe(folder: str | Path) -> Recipe:
    """Accept a recipe made elsewhere (or before seals existed): validate it fully, then seal it with this
    station's key. The caller is the key holder (SECURITY.md) and records the act in the audit log."""
    recipe = Recipe._load(Path(folder))
    target = recipe.path / SEAL_FILE
    tmp = target.with_name(f".{SEAL_FILE}.tmp")
    try:
        tmp.write_text(_seal(recipe.content_hash) + "\n", encoding="ascii")
        os.replace(tmp, target)
    except (OSError, trust.TrustError) as exc:
        raise RecipeError(f"cannot seal recipe {recipe.path}: {exc}") from None
    return recipe


def _check_replaceable(folder: Path) -> None:
    """A folder a recipe may be written into: new, empty, or holding only a recipe's own files."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RecipeError(f"cannot save recipe to {folder}: it is a file, not a folder")
    try:
        others = sorted(p.name for p in folder.iterdir() if p.name not in BUNDLE_FILES)
    except OSError as exc:
        raise RecipeError(f"cannot save recipe to {folder}: {exc.strerror or exc}") from None
    if others:
        raise RecipeError(f"cannot save recipe to {folder}: it holds files that are not the recipe's "
                          f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); nothing was replaced")


def _saved(dumped: dict) -> dict:
    """A recipe document as written: the pose region's keys (added later) only in a pose region's, so every
    other recipe's file is as it was."""
    if dumped["region"]["mode"] != "pose":
        dumped["region"].pop("span_x", None)
        dumped["region"].pop("span_y", None)
    if dumped["region"].get("turn", "axis") == "axis":  # a key added later: other recipes' files are as they were
        dumped["region"].pop("turn", None)
    return dumped


def _content_hash(doc: RecipeDoc, blob: bytes) -> str:
    dumped = _saved(doc.model_dump())
    if dumped["region"].get("pattern") is None:  # a key added later: recipes without it keep their hash
        dumped["region"].pop("pattern", None)
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(hashlib.sha256(blob).digest())
    return "sha256:" + digest.hexdigest()
