"""The line without a window, driven by the PLC: the settings' source, recipe and result log, the
settings' trigger mode, and the Modbus (and OPC UA) server. Runs until Ctrl-C, SIGTERM or --seconds.

    python -m station.plc.serve [--seconds N] [--source demo] [--recipe FOLDER]

Prints one JSON line at the end (parts told, late results, refused writes, the result log's state).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from station.core.errors import StationError
from station.core.settings import StationSettings, data_dir, load_settings

logger = logging.getLogger(__name__)


def open_line(settings: StationSettings):
    """(pipeline, store, service or None) as the settings say; StationError when a part cannot be made."""
    from station.core.inspector import Inspector
    from station.core.live import LivePipeline
    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe
    from station.core.results import ResultStore
    from station.core.retention import RetentionPolicy
    from station.core.sources import make_source
    from station.core.trigger import gate_from_settings
    from station.core.watchdog import CameraWatch
    from station.plc.service import PlcService

    if settings.plc_enabled and settings.trigger_mode != "plc":
        raise StationError(f"plc_enabled needs trigger_mode plc, not {settings.trigger_mode}")
    recipe = Recipe.load(settings.recipe or bundled_recipe())
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultStore(settings.results_db or f"sqlite:///{folder / 'results.db'}",
                        archive_dir=settings.archive_dir or folder / "archive", archive=settings.archive,
                        spool_path=folder / "results-spool.jsonl", on_failure=settings.on_log_failure,
                        retention=RetentionPolicy.from_settings(settings))
    pipeline = LivePipeline(make_source(settings.source, fps=settings.demo_fps), Inspector(recipe),
                            watch=CameraWatch.from_settings(settings), store=store, gate=gate_from_settings(settings))
    service = PlcService.from_settings(settings, pipeline) if settings.plc_enabled else None
    return pipeline, store, service


def serve(settings: StationSettings, seconds: float | None = None, stop: threading.Event | None = None) -> dict:
    stop = stop or threading.Event()
    pipeline, store, service = open_line(settings)
    try:
        if service is not None:
            service.start()
        pipeline.start()
        stop.wait(seconds)
    finally:
        pipeline.stop()
        if service is not None:
            service.stop()
        closed = store.close()
    summary = {"results": pipeline.tally.snapshot()["total"], "log_closed_clean": closed,
               "log_message": store.close_message}
    if service is not None and service.link is not None:
        summary.update(told=service.link.told, late=service.link.late, refused_writes=service.handshake.refused)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m station.plc.serve", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C or SIGTERM)")
    ap.add_argument("--source", help="overrides the settings' source")
    ap.add_argument("--recipe", help="overrides the settings' recipe")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings, message = load_settings()
        if message:
            logger.warning("%s", message)
        if args.source:
            settings.source = args.source
        if args.recipe:
            settings.recipe = args.recipe
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(json.dumps(serve(settings, args.seconds, stop)))
    except StationError as exc:
        print(f"station: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
