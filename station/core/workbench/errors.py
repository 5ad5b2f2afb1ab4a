"""Errors of the workbench, each a StationError whose one-line message the GUI shows as it is."""

from station.core.errors import StationError


class WorkbenchError(StationError):
    """Base of the workbench's errors."""


class AccessError(WorkbenchError):
    """A wrong PIN, a locked-out PIN entry, or an engineer action tried in operator mode."""


class AuditError(WorkbenchError):
    """The audit log cannot be written or read; the change it was meant to record is not made."""


class VersionStoreError(WorkbenchError):
    """The recipe store is missing, unreadable or full, or a version in it is not usable."""


class CaptureError(WorkbenchError):
    """A frame cannot be saved into, moved within or restored to a dataset folder."""
