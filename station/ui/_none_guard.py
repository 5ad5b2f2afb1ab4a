"""A guard against PySide6 6.12.0 on Python 3.11, whose bindings drop a reference to None on every call
of a method that returns nothing (setText, update, addItem, ...), and likewise to True and False from
methods returning bool: after some thousands of calls Python aborts with "none_dealloc: deallocating
None" (or bool_dealloc). PySide6 6.11.2 does not, and on Python 3.12+ these singletons are immortal,
so there it is harmless. Where the leak is seen, the singletons are given a reference count no
application can use up, which is what Python 3.12 does for every interpreter (PEP 683).
"""

from __future__ import annotations

import sys

_IMMORTAL = 1 << 60


def none_refcount_leaks() -> bool:
    """True when a void Qt call takes a reference to None away (the PySide6 6.12.0 bug)."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        probe.setObjectName("probe")
    leaked = before - sys.getrefcount(None)
    del probe
    return leaked >= 16


def guard_none_refcount() -> bool:
    """Make None effectively immortal if this PySide6 leaks its references; True when it was needed."""
    if sys.version_info >= (3, 12) or not none_refcount_leaks():
        return False
    import ctypes

    # None and True leak hundreds of references a second on a running line; the other shared singletons
    # (small ints, empty str/tuple/bytes) are covered as cheap insurance
    for singleton in (None, True, False, NotImplemented, Ellipsis, (), "", b"", *range(-5, 257)):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt, the first field of every object
        if refcount.value < _IMMORTAL:
            refcount.value += _IMMORTAL
    return True


NONE_GUARD_APPLIED = guard_none_refcount()
