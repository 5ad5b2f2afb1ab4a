"""The station's Qt user interface (the only package that imports Qt); one widget per module."""

from station.ui._none_guard import NONE_GUARD_APPLIED  # noqa: F401 - must run before any widget is made
