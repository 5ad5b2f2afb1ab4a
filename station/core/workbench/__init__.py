"""The engineer's workbench without Qt: roles, audit log, recipe versions, capture, tuner, shadow mode.

Each concern lives in its own module; the GUI (station/ui) takes these objects in its constructors.
"""

from station.core.workbench.audit import AuditLog
from station.core.workbench.capture import DatasetFolder
from station.core.workbench.errors import AccessError, AuditError, CaptureError, VersionStoreError, WorkbenchError
from station.core.workbench.roles import PinStore, Role, Session
from station.core.workbench.shadow import ShadowRun
from station.core.workbench.tuner import ScoredSet, clopper_pearson_upper, score_dataset
from station.core.workbench.versions import VersionStore

__all__ = [
    "AccessError", "AuditError", "AuditLog", "CaptureError", "DatasetFolder", "PinStore", "Role", "ScoredSet",
    "Session", "ShadowRun", "VersionStore", "VersionStoreError", "WorkbenchError", "clopper_pearson_upper",
    "score_dataset",
]
