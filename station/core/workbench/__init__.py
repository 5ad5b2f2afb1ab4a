"""The engineer's workbench without Qt: roles, audit log, recipe versions, capture, tuner, shadow mode.

Each concern lives in its own module; the GUI (station/ui) takes these objects in its constructors.
"""

import os
from pathlib import Path

from station.core.workbench.audit import AuditLog
from station.core.workbench.capture import DatasetFolder
from station.core.workbench.errors import AccessError, AuditError, CaptureError, VersionStoreError, WorkbenchError
from station.core.workbench.roles import PinStore, Role, Session
from station.core.workbench.shadow import ShadowRun
from station.core.workbench.tuner import ScoredSet, clopper_pearson_upper, score_dataset
from station.core.workbench.versions import VersionStore



def default_root() -> Path:
    """`STATION_WORKBENCH_DIR`, else `<config folder>/workbench` (PIN, audit log, recipe store, datasets)."""
    from station.core.settings import config_dir

    env = os.environ.get("STATION_WORKBENCH_DIR")
    return Path(env) if env else config_dir() / "workbench"


__all__ = [
    "AccessError", "AuditError", "AuditLog", "CaptureError", "DatasetFolder", "PinStore", "Role", "ScoredSet",
    "Session", "ShadowRun", "VersionStore", "VersionStoreError", "WorkbenchError", "clopper_pearson_upper",
    "default_root", "score_dataset",
]
