"""The integrator's settings (PLC, OPC UA, trigger mode): changed only in engineer mode, each change
recorded in the audit log before it is made. A change that cannot be audited is not made."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from station.core.settings import StationSettings
from station.core.workbench.errors import AccessError
from station.core.workbench.roles import Session

INTEGRATOR_PREFIXES = ("plc_", "opcua_", "hold_", "trigger_mode")


def is_integrator_setting(name: str) -> bool:
    return name.startswith(INTEGRATOR_PREFIXES)


def change_integrator_settings(session: Session, settings: StationSettings, changes: dict[str, Any]) -> StationSettings:
    """A copy of `settings` with `changes` made: AccessError without engineer mode, for a setting that is
    not the integrator's, for a value the setting does not take, or when the audit log cannot record it."""
    unknown = [name for name in changes if not is_integrator_setting(name) or name not in StationSettings.model_fields]
    if unknown:
        raise AccessError(f"not an integrator setting: {', '.join(sorted(unknown))[:200]}")
    session.require_engineer("changing the PLC and trigger settings")
    new = settings.model_copy(deep=True)
    try:
        for name, value in changes.items():
            setattr(new, name, value)  # validate_assignment: the field's own checks
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AccessError(f"{'.'.join(str(p) for p in first['loc']) or name}: {first['msg']}") from None
    changed = {n: (getattr(settings, n), getattr(new, n)) for n in changes if getattr(settings, n) != getattr(new, n)}
    if changed and session.audit is None:
        raise AccessError("integrator settings are changed only with an audit log")
    for name, (old, value) in changed.items():
        session.audit.record(session.actor, "settings_change", name, old, value)  # AuditError: not made
    return new
