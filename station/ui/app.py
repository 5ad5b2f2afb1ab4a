"""Starting the station window: settings, recipe and source, with every failure shown in the window
rather than stopping the start. On a machine with no display it says so in one line."""

from __future__ import annotations

import logging
import os
import sys

from station.core.errors import StationError
from station.core.settings import StationSettings, load_settings, make_settings

log = logging.getLogger(__name__)

HEADLESS_HINT = ("station: no display found (DISPLAY/WAYLAND_DISPLAY unset); the headless commands are "
                 "`station inspect`, `station eval`, `station bench` and `station train` "
                 "(or set QT_QPA_PLATFORM=offscreen)")


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if not sys.platform.startswith("linux"):
        return True  # Windows and macOS always have their window system
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


DEFAULT_LINE = ("vit", "rt-attention")  # out of the box both bundled engines run on every frame, cross-checked


def line_paths(recipe: str | list[str] | None, settings: StationSettings) -> list[str]:
    """The recipe folders of the line: those given, else the settings' (one recipe or several), else the
    bundled ViT and RT-attention recipes."""
    from station.core.resources import resources_dir

    if recipe:
        return [recipe] if isinstance(recipe, str) else list(recipe)
    if settings.recipe:
        return [settings.recipe]
    if settings.recipes:
        return list(settings.recipes)
    return [str(resources_dir() / "recipes" / name) for name in DEFAULT_LINE]


def load_line_recipes(paths: list[str]):
    """(the recipes that loaded, message): a recipe that does not load is left out and the banner says why."""
    from station.core.recipe import Recipe

    recipes, problems = [], []
    for path in paths:
        try:
            recipes.append(Recipe.load(path))
        except StationError as exc:
            problems.append(str(exc))
    if not problems:
        return recipes, ""
    what = "No recipe loaded" if not recipes else f"{len(problems)} of {len(paths)} recipes not loaded"
    return recipes, f"{what}: " + "; ".join(problems)


def open_results(settings: StationSettings):
    """(result store or None, message): the window runs without one, saying loudly that nothing is logged."""
    from station.core.results import ResultStore
    from station.core.retention import RetentionPolicy
    from station.core.settings import data_dir

    try:
        folder = data_dir()
        folder.mkdir(parents=True, exist_ok=True)  # the spool lives here whatever the database is
        url = settings.results_db or f"sqlite:///{folder / 'results.db'}"
        archive_dir = settings.archive_dir or folder / "archive"
        return ResultStore(url, archive_dir=archive_dir, archive=settings.archive,
                           spool_path=folder / "results-spool.jsonl", on_failure=settings.on_log_failure,
                           retention=RetentionPolicy.from_settings(settings)), ""
    except (StationError, OSError) as exc:
        return None, f"Results are NOT being logged: {exc}"


def start_plc(service, settings: StationSettings) -> str:
    """Start the PLC link the settings enable on the window's line; the reason when it cannot be started."""
    if not settings.plc_enabled:
        return ""
    if settings.trigger_mode != "plc":
        return f"PLC link NOT started: plc_enabled needs trigger_mode plc, not {settings.trigger_mode}."
    from station.plc.service import PlcService

    try:
        plc = PlcService.from_settings(settings, service.pipeline)
        plc.start()
    except StationError as exc:
        return f"PLC link NOT started: {exc}"
    service.plc = plc
    return ""


def create_window(source: str | None = None, recipe: str | list[str] | None = None,
                  settings: StationSettings | None = None, save_settings: bool = True, start: bool = True,
                  combine: str | None = None):
    """The main window on a line built from `source` and `recipe` (one folder or several; settings fill what
    is not given: by default the bundled ViT and RT-attention recipes, cross-checked)."""
    import torch  # noqa: F401 - imported by the GUI thread before the line's threads start, never by two at once
    from station.core.sources import make_source
    from station.core.trigger import gate_from_settings
    from station.core.watchdog import CameraWatch
    from station.ui.live_service import LiveService
    from station.ui.main_window import MainWindow

    settings = settings or make_settings()
    messages = []
    if combine:
        settings.combine = combine
    recipe_obj, recipe_error = load_line_recipes(line_paths(recipe, settings))
    if recipe_error:
        messages.append(recipe_error)
    spec = source or settings.source
    try:
        line_source = make_source(spec, fps=settings.demo_fps)
    except StationError as exc:
        messages.append(f"Cannot use source {spec!r} ({exc}); the demo line is used instead.")
        line_source = make_source("demo", fps=settings.demo_fps)
        spec = "demo"
    settings.source = spec
    results, results_error = open_results(settings)
    if results_error:
        messages.append(results_error)
    service = LiveService(line_source, recipe_obj, recipe_error, results=results, results_error=results_error,
                          watch=CameraWatch.from_settings(settings), combine=settings.combine,
                          gate=gate_from_settings(settings), parallel=settings.parallel_engines,
                          engine_threads=settings.engine_threads)
    plc_error = start_plc(service, settings)
    if plc_error:
        messages.append(plc_error)
    window = MainWindow(service, settings, save=save_settings)
    service.setParent(window)
    if messages:
        window.show_banner("  ".join(messages))
    if start:
        service.start()
    return window


DEMO_BANNER = ("This is the demo line: no camera is chosen. To inspect real parts, plug in a camera and choose it "
               "in Source > Choose source\u2026 (Ctrl+O).")


def first_run_source(settings_file_exists: bool, cameras=None) -> str | None:
    """On a PC's first start (no settings file yet) the first camera found, so its picture shows at once; None:
    the settings' source (the demo line on a PC with no camera)."""
    if settings_file_exists:
        return None
    from station.core.camera_probe import probe_cameras

    try:
        found = probe_cameras() if cameras is None else cameras
    except Exception as exc:  # noqa: BLE001 - a camera driver that fails to probe leaves the demo line
        log.warning("looking for cameras failed: %s: %s", type(exc).__name__, exc)
        return None
    return f"camera:{found[0]}" if found else None


def run_gui(args) -> int:
    if not has_display():
        print(HEADLESS_HINT, file=sys.stderr)
        return 2
    from station.ui.qt_platform import platform_is_xcb, xcb_problem

    if platform_is_xcb():  # Qt aborts the process when its xcb plugin's libraries are missing: say it first
        problem = xcb_problem()
        if problem:
            log.info("%s", problem)  # the file keeps it; stderr gets it once, below
            print(problem, file=sys.stderr)
            return 2
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Inspection station")
    app.setStyle("Fusion")
    window = open_station(getattr(args, "source", None), getattr(args, "recipe", None))
    window.show()
    return app.exec()


def open_station(source: str | None = None, recipe: str | None = None):
    """The window as `station` opens it: saved settings (a broken file is set aside and the operator
    told in the window's banner), then the command line's source and recipe over them."""
    from station.core.settings import SETTINGS_FILE, config_dir

    settings, message = load_settings()
    source = source or first_run_source((config_dir() / SETTINGS_FILE).exists())
    window = create_window(source, recipe, settings)
    if message:
        window.add_to_banner(message, first=True)
    if settings.source == "demo" and source != "demo":  # the demo line by default, not by choice: say how to choose
        window.add_to_banner(DEMO_BANNER)
    window.workbench = add_workbench(window)
    return window


def add_workbench(window):
    """The engineer's menu and workbench on the station window; if its folder cannot be used, the line
    still runs and the banner says why (operator mode needs none of it)."""
    from station.ui.workbench import install_workbench

    try:
        return install_workbench(window)
    except (StationError, OSError) as exc:
        window.add_to_banner(f"Engineer tools unavailable: {exc}")
        return None
