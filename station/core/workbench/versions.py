"""Recipes as numbered versions: a store folder of full bundles `v0001/`, `v0002/`, ... and an `active` pointer.

Saving always adds a version and never touches an existing one. Switching and rolling back only
rewrite the small `active` pointer (atomically), after the target bundle has been loaded and its
content hash checked. If the store folder disappears, every call says so and changes nothing: the
recipe the line runs stays loaded in memory.

Every bundle is sealed by the station key (Recipe.load refuses one that is not), and so is the
`active` pointer; loading the active version also compares the bundle's content hash with the one
the pointer recorded, so neither an edited version nor an edited pointer is run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from station.core import trust
from station.core.errors import StationError
from station.core.recipe import RECIPE_FILE, Recipe, authenticity_problem
from station.core.workbench._fs import describe, fsync_dir, read_json, write_json_atomic
from station.core.workbench.audit import AuditLog, utc_now
from station.core.workbench.errors import AccessError, VersionStoreError

log = logging.getLogger(__name__)

ACTIVE_FILE = "active"
METRICS_FILE = "metrics.json"
VERSION_FILE = "version.json"
VERSION_NAME = re.compile(r"^v(\d{4,6})$")
MAX_SMALL_JSON = 4 * 1024 * 1024
MAX_HISTORY = 100
POINTER_DOMAIN = "active-version"


class _ActivePointer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(ge=1, le=1)
    version: str = Field(pattern=VERSION_NAME.pattern)
    content_hash: str = Field(max_length=200)
    since: str = Field(max_length=64)
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY)  # previously active, oldest first
    seal: str = Field(default="", max_length=200)

    def body(self, root: Path) -> bytes:
        """What the seal covers: the pointer and the store it points in (no copying it into another store)."""
        return trust.canonical({"store": str(root.resolve()), **self.model_dump(exclude={"seal"})})


@dataclass
class VersionInfo:
    """One version as the version list shows it; `error` says why a damaged one cannot be used."""

    name: str
    number: int
    path: Path
    active: bool = False
    recipe_name: str = ""
    engine: str = ""
    content_hash: str = ""
    thresholds: tuple[float, float] | None = None
    saved: str = ""
    saved_by: dict[str, str] = field(default_factory=dict)
    note: str = ""
    metrics: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def version_name(number: int) -> str:
    return f"v{number:04d}"


class VersionStore:
    def __init__(self, root: str | Path, audit: AuditLog | None = None, create: bool = False) -> None:
        self.root = Path(root)
        self.audit = audit
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise VersionStoreError(f"cannot create the recipe store {self.root}: {describe(exc)}") from None
        self._check()

    # -- reading -------------------------------------------------------------------------------
    def _check(self) -> None:
        if not self.root.is_dir():
            raise VersionStoreError(f"the recipe store {self.root} is gone (deleted, or its drive unplugged?); "
                                    "nothing was changed and the running recipe stays loaded")

    def _numbers(self) -> list[int]:
        try:
            names = [p.name for p in self.root.iterdir() if p.is_dir()]
        except OSError as exc:
            raise VersionStoreError(f"cannot read the recipe store {self.root}: {describe(exc)}") from None
        return sorted(int(m.group(1)) for n in names if (m := VERSION_NAME.match(n)))

    def path_of(self, version: str | int) -> Path:
        name = version_name(version) if isinstance(version, int) else str(version)
        if not VERSION_NAME.match(name):
            raise VersionStoreError(f"{name!r} is not a version name (v0001, v0002, ...)")
        return self.root / name

    def _pointer(self) -> _ActivePointer | None:
        path = self.root / ACTIVE_FILE
        if not path.exists():
            return None
        try:
            pointer = _ActivePointer.model_validate(read_json(path, MAX_SMALL_JSON))
        except OSError as exc:
            raise VersionStoreError(f"cannot read {path}: {describe(exc)}") from None
        except (ValueError, ValidationError, RecursionError):
            raise VersionStoreError(f"the active-version pointer {path} is damaged; activate a version "
                                    "to repair it") from None
        try:
            why = trust.seal_problem(POINTER_DOMAIN, pointer.body(self.root), pointer.seal)
        except trust.TrustError as exc:
            raise VersionStoreError(f"the active-version pointer cannot be checked: {exc}") from None
        if why:
            raise VersionStoreError(f"the active-version pointer {path} is refused: {why}; an engineer "
                                    "activates a version to repair it")
        return pointer

    def active_version(self) -> str | None:
        self._check()
        pointer = self._pointer()
        return pointer.version if pointer else None

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first, with its thresholds, provenance and stored metrics."""
        self._check()
        active = self.active_version()
        return [self._info(n, active) for n in self._numbers()]

    def info(self, version: str | int) -> VersionInfo:
        self._check()
        path = self.path_of(version)
        if not path.is_dir():
            raise VersionStoreError(f"version {path.name} is not in the recipe store {self.root}")
        return self._info(int(VERSION_NAME.match(path.name).group(1)), self.active_version())

    def _info(self, number: int, active: str | None) -> VersionInfo:
        path = self.path_of(number)
        info = VersionInfo(path.name, number, path, active=path.name == active)
        try:
            doc = read_json(path / RECIPE_FILE, MAX_SMALL_JSON)
            info.recipe_name = str(doc["name"])
            info.engine = str(doc["engine"]["name"])
            info.content_hash = str(doc["content_hash"])
            info.thresholds = (float(doc["thresholds"]["review"]), float(doc["thresholds"]["ng"]))
            info.provenance = dict(doc.get("provenance") or {})
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            info.error = f"damaged: {RECIPE_FILE} cannot be read ({exc.__class__.__name__})"
            return info
        if authenticity_problem(path, info.content_hash):
            info.error = "refused: not sealed by this station (edited, or made elsewhere)"
        for name, apply in ((VERSION_FILE, self._apply_version_meta), (METRICS_FILE, self._apply_metrics)):
            p = path / name
            if p.exists():
                try:
                    apply(info, read_json(p, MAX_SMALL_JSON))
                except (OSError, ValueError, KeyError, TypeError):
                    info.error = f"{name} is damaged"
        return info

    @staticmethod
    def _apply_version_meta(info: VersionInfo, doc: Any) -> None:
        info.saved = str(doc["saved"])
        info.saved_by = {k: str(v) for k, v in dict(doc["saved_by"]).items()}
        info.note = str(doc.get("note", ""))

    @staticmethod
    def _apply_metrics(info: VersionInfo, doc: Any) -> None:
        if not isinstance(doc, dict):
            raise TypeError("metrics must be an object")
        info.metrics = doc

    def load(self, version: str | int) -> Recipe:
        """Load a version's bundle (validated and hash-checked by Recipe.load)."""
        self._check()
        path = self.path_of(version)
        if not path.is_dir():
            raise VersionStoreError(f"version {path.name} is not in the recipe store {self.root}")
        try:
            return Recipe.load(path)
        except StationError as exc:  # a refused bundle is recorded by Recipe.load in the station's audit log
            raise VersionStoreError(f"version {path.name} cannot be used: {exc}") from None

    def _refused(self, what: str, why: str) -> None:
        """A version or pointer the station would not run is recorded (an edit without the key leaves a trace)."""
        try:
            self._audit({"role": "station", "user": "station"}, "recipe_refused", f"{what} in {self.root}", None, why)
        except StationError as exc:
            log.error("the refusal of %s was not recorded: %s", what, exc)

    def load_active(self) -> Recipe:
        """The active version, loaded and checked, and its content hash compared with the pointer's."""
        self._check()
        try:
            pointer = self._pointer()
        except VersionStoreError as exc:
            if self.root.is_dir():
                self._refused("the active-version pointer", str(exc))
            raise
        if pointer is None:
            raise VersionStoreError(f"the recipe store {self.root} has no active version yet")
        recipe = self.load(pointer.version)
        if recipe.content_hash != pointer.content_hash:
            why = (f"version {pointer.version} is not the recipe that was activated (its content hash differs from "
                   "the one the active pointer recorded): refused")
            self._refused(f"version {pointer.version}", why)
            raise VersionStoreError(why)
        return recipe

    # -- changing ------------------------------------------------------------------------------
    @staticmethod
    def _require_engineer(actor: dict[str, str] | None, action: str) -> None:
        """A defence behind the GUI's own check: an operator's actor never changes the store."""
        if actor is not None and actor.get("role") != "engineer":
            raise AccessError(f"{action} needs engineer mode: unlock with the engineer PIN")

    def _audit(self, actor: dict[str, str] | None, action: str, what: str, old: Any, new: Any, **details) -> None:
        if self.audit is not None:
            self.audit.record(actor or {"role": "?", "user": "?"}, action, what, old, new, **details)

    def _summary(self, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        try:
            info = self._info(int(VERSION_NAME.match(version).group(1)), None)
        except (AttributeError, VersionStoreError):
            return {"version": version}
        return {"version": version, "content_hash": info.content_hash,
                "thresholds": list(info.thresholds) if info.thresholds else None}

    def save(self, recipe: Recipe, actor: dict[str, str] | None = None, note: str = "",
             metrics: dict[str, Any] | None = None, activate: bool = False) -> VersionInfo:
        """Store `recipe` as a new version (never over an old one); optionally make it the active one.

        On any failure the store is as before and the recipe object is still usable for a retry.
        """
        self._require_engineer(actor, "saving a recipe version")
        self._check()
        staging = self.root / f".staging-{uuid.uuid4().hex[:12]}"
        old_path = recipe.path
        try:
            try:
                recipe.save(staging)
                write_json_atomic(staging / VERSION_FILE, {"saved": utc_now(), "saved_by": dict(actor or {}),
                                                           "note": str(note)[:2000]})
                if metrics is not None:
                    write_json_atomic(staging / METRICS_FILE, json.loads(json.dumps(metrics, default=str)))
            except StationError as exc:
                raise VersionStoreError(f"cannot save a new version into {self.root}: {exc}") from None
            except OSError as exc:
                raise VersionStoreError(f"cannot save a new version into {self.root}: {describe(exc)}") from None
            active = self.active_version()
            for _ in range(20):
                numbers = self._numbers()
                target = self.path_of((numbers[-1] if numbers else 0) + 1)
                if target.exists():
                    continue
                self._audit(actor, "save_version", f"recipe store {self.root}", self._summary(active),
                            {"version": target.name, "content_hash": recipe.content_hash,
                             "thresholds": list(recipe.thresholds)}, note=note, recipe=recipe.name)
                try:
                    os.rename(staging, target)
                except FileExistsError:
                    continue
                except OSError as exc:
                    if target.exists():
                        continue
                    raise VersionStoreError(f"cannot save a new version into {self.root}: {describe(exc)}") from None
                fsync_dir(self.root)
                recipe.path = target
                break
            else:
                raise VersionStoreError(f"cannot find a free version number in {self.root}")
        except BaseException:
            recipe.path = old_path
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if activate:
            self.activate(target.name, actor)
        return self.info(target.name)

    def attach_metrics(self, version: str | int, metrics: dict[str, Any]) -> None:
        """Store an evaluation summary beside a version (the bundle itself is not touched)."""
        self._check()
        path = self.path_of(version)
        if not path.is_dir():
            raise VersionStoreError(f"version {path.name} is not in the recipe store {self.root}")
        try:
            write_json_atomic(path / METRICS_FILE, json.loads(json.dumps(metrics, default=str)))
        except OSError as exc:
            raise VersionStoreError(f"cannot store metrics for {path.name}: {describe(exc)}") from None

    def activate(self, version: str | int, actor: dict[str, str] | None = None, _rollback: bool = False) -> Recipe:
        """Make `version` the active recipe and return it loaded; the pointer moves only if it loads cleanly."""
        self._require_engineer(actor, "switching the recipe version")
        recipe = self.load(version)
        name = recipe.path.name
        current = self._pointer_or_none()
        history = list(current.history) if current else []
        if _rollback:
            history = history[:-1]
        elif current is not None and current.version != name:
            history = (history + [current.version])[-MAX_HISTORY:]
        pointer = _ActivePointer(schema_version=1, version=name, content_hash=recipe.content_hash, since=utc_now(),
                                 history=history)
        try:
            pointer.seal = trust.seal(POINTER_DOMAIN, pointer.body(self.root))
        except trust.TrustError as exc:
            raise VersionStoreError(f"cannot switch to {name}: {exc}; the active version is unchanged") from None
        self._audit(actor, "rollback" if _rollback else "activate_version", f"recipe store {self.root}",
                    self._summary(current.version if current else None), self._summary(name))
        try:
            write_json_atomic(self.root / ACTIVE_FILE, pointer.model_dump())
        except OSError as exc:
            raise VersionStoreError(f"cannot switch to {name}: {describe(exc)}; "
                                    "the active version is unchanged") from None
        return recipe

    def _pointer_or_none(self) -> _ActivePointer | None:
        try:
            return self._pointer()
        except VersionStoreError:
            if not self.root.is_dir():
                raise
            return None  # a damaged pointer is repaired by the next activation

    def rollback(self, actor: dict[str, str] | None = None) -> Recipe:
        """Return to the version that was active before the current one."""
        self._require_engineer(actor, "rolling back the recipe")
        self._check()
        pointer = self._pointer()
        if pointer is None or not pointer.history:
            raise VersionStoreError("there is no earlier active version to roll back to")
        return self.activate(pointer.history[-1], actor, _rollback=True)
