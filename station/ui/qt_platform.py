"""Before the window opens on Linux: the system libraries Qt's xcb plugin needs, checked without loading Qt, so
a fresh PC gets one line naming the packages to install instead of Qt's abort (SIGABRT)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# what Debian and Ubuntu call the packages of the libraries the xcb plugin loads (README, docs/integrator.md)
XCB_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 "
                "libxcb-randr0 libxcb-xfixes0 libxcb-xkb1 libxcb-sync1 libxcb-xinerama0 libxkbcommon-x11-0 "
                "libxkbcommon0 libegl1 libfontconfig1 libdbus-1-3")
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


def platform_is_xcb(env: dict[str, str] | None = None) -> bool:
    """Will Qt take its xcb (X11) plugin? QT_QPA_PLATFORM decides when set; else an X display without a
    Wayland one, or a Wayland session where Qt falls back to X (no Wayland display named)."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":")[0].split(";")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the PySide6 that would be loaded (in a bundle, the bundled one)."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for plugins in (Path(folder) / "Qt" / "plugins", Path(folder) / "plugins"):
            plugin = plugins / "platforms" / "libqxcb.so"
            if plugin.is_file():
                return plugin
    return None


def missing_libraries(ldd_output: str) -> list[str]:
    """The library names `ldd` could not find, each once, in its order."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        match = _NOT_FOUND.match(line)
        if match and match.group(1) not in missing:
            missing.append(match.group(1))
    return missing


def debian_package(soname: str) -> str:
    """The Debian package of a library by Debian's naming rule: libxcb-icccm.so.4 -> libxcb-icccm4,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0."""
    match = re.match(r"^(lib[\w+.-]*?)\.so\.(\d+)", soname)
    if not match:
        return soname
    name, major = match.groups()
    return f"{name.lower()}{'-' if name[-1].isdigit() else ''}{major}"


def xcb_missing(plugin: Path | None = None) -> list[str]:
    """The libraries of the xcb plugin this PC lacks ([] when all are there, or nothing can check)."""
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []  # nothing to check with: Qt will say what it finds
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not check the libraries of %s: %s", plugin, exc)
        return []
    return missing_libraries(out)


def install_line(missing: list[str]) -> str:
    return "sudo apt-get install " + " ".join(dict.fromkeys(debian_package(m) for m in missing))


def xcb_problem(plugin: Path | None = None) -> str:
    """'' when the xcb plugin's libraries are all there (or cannot be checked); else one line naming them."""
    missing = xcb_missing(plugin)
    if not missing:
        return ""
    return (f"station: the window cannot open: this PC lacks {', '.join(missing)}, which Qt's X11 (xcb) plugin "
            f"needs; on Debian or Ubuntu: {install_line(missing)} (the full list is in docs/integrator.md); "
            "the headless commands work without them")
