"""The engineer's workbench as the panels see it: the live line, the role, the audit log, the recipe
versions, the capture dataset and the candidate recipe, with Qt signals for what changes.

Every panel takes this object in its constructor; it owns no widget. Changes of recipe go through
`VersionStore` (which writes the audit entry before the change) and then the live service's
`set_recipe`, so the line runs the active version.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from station.core.dataset import Dataset, Sample, load_dataset
from station.core.errors import StationError
from station.core.recipe import Recipe
from station.core.workbench import AuditLog, DatasetFolder, PinStore, Role, Session, VersionStore, default_root
from station.core.workbench.audit import AuditCheck
from station.core.workbench.errors import AccessError, AuditError, VersionStoreError, WorkbenchError
from station.core.workbench.versions import VersionInfo
from station.ui.live_service import LiveService

log = logging.getLogger(__name__)


#: classes of auto-captured NG / REVIEW frames: shown in the browser to be relabelled, never trained on
AUTO_PREFIX = "auto_"


class Workbench(QObject):
    role_changed = Signal(str)  # "operator" or "engineer"
    candidate_changed = Signal()  # a new unsaved recipe from training (or None)
    versions_changed = Signal()
    dataset_changed = Signal()
    message = Signal(str, str)  # level ("info", "error"), text for the engineer

    _role_from_any_thread = Signal(str)

    def __init__(self, service: LiveService, root: str | Path | None = None, dataset_root: str | Path | None = None,
                 idle_seconds: float = 300.0, pin_cost: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.root = Path(root) if root is not None else default_root()
        self.audit = AuditLog(self.root / "audit.jsonl")
        self.audit_check = self.check_audit()
        self.pins = PinStore(self.root / "engineer_pin.json", audit=self.audit, **({"n": pin_cost} if pin_cost else {}))
        self.session = Session(self.pins, idle_seconds=idle_seconds, audit=self.audit)
        self.store_root = self.root / "recipes"
        self._versions: VersionStore | None = None
        recipe_name = service.recipe.name if service.recipe is not None else "recipe"
        self.dataset = DatasetFolder(Path(dataset_root) if dataset_root else self.root / "datasets" / recipe_name,
                                     audit=self.audit, actor=self._actor)
        try:  # the capture folder is made once here; one that vanishes later is reported, not re-made
            self.dataset.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # DatasetFolder says why on the first capture
            log.warning("the capture folder %s cannot be made: %s", self.dataset.root, exc)
        self.candidate: Recipe | None = None
        self.candidate_info: dict[str, Any] = {}
        # Session listeners run in the thread that changed the role: hand the change over as a signal
        self._role_from_any_thread.connect(self.role_changed)
        self.session.subscribe(self._on_role)
        self._idle = QTimer(self)
        self._idle.setInterval(1000)
        self._idle.timeout.connect(self._check_idle)
        self._idle.start()

    # -- role -----------------------------------------------------------------------------------
    def _on_role(self, role: Role) -> None:
        self._role_from_any_thread.emit(role.value)

    def _check_idle(self) -> None:
        self.session.role  # noqa: B018 - reading applies the idle lock (and notifies)

    @property
    def is_engineer(self) -> bool:
        return self.session.is_engineer

    def unlock(self, pin: str) -> None:
        """Raises AccessError with a message for the person at the station."""
        self.session.unlock(pin)

    def lock(self) -> None:
        self.session.lock()

    def touch(self) -> None:
        self.session.touch()

    def require_engineer(self, action: str) -> None:
        self.session.require_engineer(action)

    def shutdown(self) -> None:
        self._idle.stop()

    def _actor(self) -> dict[str, str]:
        return self.session.actor

    # -- trust ----------------------------------------------------------------------------------
    def check_audit(self) -> AuditCheck:
        """Verify the audit chain; a break found for the first time is recorded in the log itself."""
        check = self.audit.verify()
        if check.unrecorded:
            try:
                self.audit.ensure_recorded(check)
            except AuditError as exc:
                log.error("a broken audit log could not be recorded: %s", exc)
        if not check.ok:
            log.error("audit log: %s", check.problem)
        self.audit_check = check
        return check

    def trust_problems(self) -> list[str]:
        """What the station must show in red: a broken audit log, a locked PIN file ([] when all is well)."""
        out = []
        if not self.audit_check.ok:
            out.append(f"Audit log: {self.audit_check.problem}")
        if self.pins.problem:
            out.append(f"Engineer mode: {self.pins.problem}")
        return out

    def acknowledge_audit(self, note: str = "") -> None:
        """An engineer has looked into the audit problems: record it; the red message goes."""
        self.require_engineer("acknowledging audit problems")
        self.audit.acknowledge(self.session.actor, self.audit_check, note)
        self.check_audit()
        self.versions_changed.emit()

    # -- versions -------------------------------------------------------------------------------
    @property
    def versions(self) -> VersionStore:
        """The recipe store (created on first use); raises VersionStoreError when it is gone."""
        if self._versions is None:
            self._versions = VersionStore(self.store_root, self.audit, create=True)
        else:
            self._versions._check()
        return self._versions

    def version_list(self) -> list[VersionInfo]:
        return self.versions.versions()

    def _ensure_running_recipe_stored(self) -> None:
        """Before the first publish, the recipe the line runs becomes a version, so a rollback can return to it."""
        store = self.versions
        if store.active_version() is not None or self.service.recipe is None:
            return
        running = self.service.recipe
        copy = Recipe(running.doc, running.region, running.engine, running.path)
        store.save(copy, self.session.actor, note=f"the recipe the line ran before the first publish "
                   f"({running.path or 'unsaved'})", activate=True)

    def publish(self, recipe: Recipe, note: str = "", metrics: dict[str, Any] | None = None) -> VersionInfo:
        """Save `recipe` as a new version, make it active and switch the live line to it."""
        self.require_engineer("publishing a recipe")
        self._ensure_running_recipe_stored()
        info = self.versions.save(recipe, self.session.actor, note=note, metrics=metrics, activate=True)
        self.service.replace_recipe(self.versions.load(info.name))
        self.versions_changed.emit()
        self.message.emit("info", f"published {info.name} ({info.content_hash.removeprefix('sha256:')[:12]}); "
                                  "the line runs it now")
        return info

    def activate(self, version: str) -> Recipe:
        self.require_engineer("switching the recipe version")
        self._ensure_running_recipe_stored()
        recipe = self.versions.activate(version, self.session.actor)
        self.service.replace_recipe(recipe)
        self.versions_changed.emit()
        self.message.emit("info", f"the line runs {version} now")
        return recipe

    def rollback(self) -> Recipe:
        self.require_engineer("rolling back the recipe")
        recipe = self.versions.rollback(self.session.actor)
        self.service.replace_recipe(recipe)
        self.versions_changed.emit()
        self.message.emit("info", f"rolled back: the line runs {recipe.path.name} now")
        return recipe

    def apply_active_version(self) -> str:
        """At start: run the store's active version if it is not what the line runs; '' or a message."""
        try:
            if not self.store_root.is_dir():
                return ""
            store = self.versions
            version = store.active_version()
            if version is None:
                return ""
            recipe = store.load_active()
        except StationError as exc:
            return f"The active recipe version could not be loaded ({exc}); the line keeps its recipe."
        current = self.service.recipe_of(recipe.doc.engine.name)
        if current is None or current.content_hash != recipe.content_hash:
            self.service.replace_recipe(recipe)
            return f"The line runs the active recipe version {version}."
        return ""

    # -- candidate (trained, not yet published) -------------------------------------------------
    def set_candidate(self, recipe: Recipe | None, info: dict[str, Any] | None = None) -> None:
        self.candidate, self.candidate_info = recipe, dict(info or {})
        self.candidate_changed.emit()

    @property
    def tuning_recipe(self) -> Recipe | None:
        """What the tuner works on: the candidate if there is one, else the recipe the line runs."""
        return self.candidate if self.candidate is not None else self.service.recipe

    # -- data -----------------------------------------------------------------------------------
    def training_data(self, include_original: bool = False) -> Dataset:
        """The capture dataset (without the auto-captured frames still to be labelled), optionally with the
        images the running recipe was trained on. Safe to call from a worker thread."""
        samples = [Sample(item.path, item.label, item.cell) for item in self.dataset.items()
                   if not item.label.startswith(AUTO_PREFIX)]
        if include_original:
            original = self.original_data_path()
            if original is not None:
                samples += load_dataset(original, "train").samples
        if not samples:
            raise WorkbenchError(f"no training images: capture some into {self.dataset.root} first")
        return Dataset(self.dataset.root, "imagefolder", samples)

    def original_data_path(self) -> Path | None:
        recipe = self.service.recipe
        data = recipe.doc.provenance.get("data") if recipe is not None else None
        return Path(data) if data and Path(data).is_dir() else None

    def report(self, level: str, text: str) -> None:
        self.message.emit(level, text)


__all__ = ["AccessError", "VersionStoreError", "Workbench", "WorkbenchError", "default_root"]
