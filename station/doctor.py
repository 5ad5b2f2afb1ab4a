"""`station doctor`: what a support call needs to know about this PC, in one report: versions, cameras,
GPU, folders, the result database, free disk space and where the log is. Each check that fails says why
in its own line; the report itself never fails."""

from __future__ import annotations

import logging
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Row = tuple[str, str, str]  # section, what, what was found

PACKAGES = ("numpy", "cv2", "torch", "timm", "PySide6", "sqlalchemy", "pydantic", "safetensors")


def _versions() -> list[Row]:
    from station import __version__

    frozen = getattr(sys, "frozen", False)
    rows = [("station", "version", __version__),
            ("station", "installed as", f"bundle at {Path(sys.executable).parent}" if frozen
             else f"source, Python at {sys.executable}"),
            ("station", "python", sys.version.split()[0]),
            ("station", "system", f"{platform.system()} {platform.release()} ({platform.machine()})")]
    import importlib

    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
            rows.append(("versions", name, str(getattr(module, "__version__", "present"))))
        except Exception as exc:  # noqa: BLE001 - a package that will not import is the finding, not a crash
            rows.append(("versions", name, f"cannot import: {type(exc).__name__}: {exc}"))
    return rows


def _gpu() -> list[Row]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reported, the rest of the report goes on
        return [("gpu", "torch", f"cannot import: {type(exc).__name__}: {exc}")]
    rows = [("gpu", "torch build", f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append(("gpu", f"cuda:{i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    else:
        rows.append(("gpu", "cuda", "no usable GPU: the engines run on the CPU"))
    rows.append(("gpu", "cpu threads", str(torch.get_num_threads())))
    return rows


def _cameras() -> list[Row]:
    from station.core.camera_probe import probe_cameras

    found = probe_cameras()
    if not found:
        return [("cameras", "found", "none (the demo line runs; plug a USB camera in and choose it in "
                                     "Source > Choose source)")]
    return [("cameras", f"camera:{i}", "opens") for i in found]


def _folder_row(section: str, what: str, path: Path) -> Row:
    if path.is_dir():
        import os

        state = "writable" if os.access(path, os.W_OK) else "NOT writable"
    else:
        state = "not made yet"
    return section, what, f"{path} ({state})"


def _folders() -> list[Row]:
    from station.core.logs import current_log_file, log_path
    from station.core.resources import resources_dir
    from station.core.settings import config_dir, data_dir

    logged = current_log_file()
    rows = [_folder_row("folders", "settings", config_dir()), _folder_row("folders", "data", data_dir()),
            ("folders", "log file", str(logged or log_path()) + ("" if logged else " (not open in this process)"))]
    try:
        rows.append(("folders", "resources", str(resources_dir())))
    except Exception as exc:  # noqa: BLE001 - a missing resources folder is a finding
        rows.append(("folders", "resources", str(exc)))
    return rows


def _database(settings) -> list[Row]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from station.core.results import shown_url
    from station.core.settings import data_dir

    url = settings.results_db or f"sqlite:///{data_dir() / 'results.db'}"
    rows = [("database", "url", shown_url(url))]
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return [*rows, ("database", "state", "no result log yet (made when the line first runs)")]
        rows.append(("database", "size", f"{path.stat().st_size / 2**20:.1f} MiB"))
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
        rows.append(("database", "state", "reachable"))
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        rows.append(("database", "state", "NOT reachable: " + " ".join(str(exc).split())[:200]))
    return rows


def _disk(settings) -> list[Row]:
    from station.core.settings import data_dir

    folder = data_dir()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    free_mb = usage.free / 2**20
    low = free_mb < settings.min_free_disk_mb
    return [("disk", "free", f"{usage.free / 2**30:.1f} GiB of {usage.total / 2**30:.1f} GiB at {folder}"
             + (f" (LOW: under min_free_disk_mb = {settings.min_free_disk_mb:g})" if low else ""))]


def _display() -> list[Row]:
    from station.ui.qt_platform import install_line, platform_is_xcb, xcb_missing

    if not sys.platform.startswith("linux"):
        return [("display", "window system", platform.system())]
    import os

    shown = os.environ.get("QT_QPA_PLATFORM") or ("x11" if os.environ.get("DISPLAY") else
                                                  "wayland" if os.environ.get("WAYLAND_DISPLAY") else "none")
    rows = [("display", "platform", shown)]
    missing = xcb_missing()
    rows.append(("display", "xcb libraries", f"missing {', '.join(missing)} (an X11 desktop needs them: "
                 f"{install_line(missing)})" if missing else "all found"))
    if not platform_is_xcb() and shown == "none":
        rows.append(("display", "window", "no display: only the headless commands run here"))
    return rows


def report() -> list[Row]:
    """Every row of the report; a section that fails becomes one row saying why."""
    from station.core.settings import load_settings

    settings, settings_message = load_settings()
    rows: list[Row] = [("settings", "file", settings_message)] if settings_message else []
    checks: list[tuple[str, Callable[[], list[Row]]]] = [
        ("station", _versions), ("gpu", _gpu), ("cameras", _cameras), ("folders", _folders),
        ("database", lambda: _database(settings)), ("disk", lambda: _disk(settings)), ("display", _display)]
    for section, check in checks:
        try:
            rows.extend(check())
        except Exception as exc:  # noqa: BLE001 - one failed check never hides the others
            log.exception("station doctor: the %s check failed", section)
            rows.append((section, "check failed", f"{type(exc).__name__}: {exc}"))
    return rows


def format_report(rows: list[Row]) -> str:
    lines, last = [], None
    for section, what, found in rows:
        if section != last:
            lines.append(f"[{section}]")
            last = section
        lines.append(f"  {what:<14} {found}")
    return "\n".join(lines)
