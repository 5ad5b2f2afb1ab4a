"""The `station` command: the GUI by default, and the headless commands scripts rely on.

Every error a person can cause (a missing folder, a corrupt image, a bad recipe) ends in one line
on stderr and a non-zero exit, never a traceback; STATION_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from station.core.errors import StationError
from station.core.jsonio import loads_bounded

log = logging.getLogger("station.cli")

EXIT_ERROR = 2
EXIT_INTERNAL = 3
SEED_MAX = 2**32 - 1


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _say(message: str) -> None:
    """One line on stderr: what a person should know that is not an error."""
    print("station: " + " ".join(message.split()), file=sys.stderr)


def _report_skipped(skipped: list[str]) -> None:
    if skipped:
        more = f" (and {len(skipped) - 1} more, listed in the output)" if len(skipped) > 1 else ""
        _say(f"left out {len(skipped)} image(s) that cannot be used: {skipped[0]}{more}")


def _json_object_arg(text: str | None, option: str) -> dict:
    """A command-line option holding a JSON object, read with the same bounds as any JSON file."""
    if not text:
        return {}
    value = loads_bounded(text, option)
    if not isinstance(value, dict):
        raise StationError(f"{option} must be a JSON object such as '{{\"metrics\": \"rt\"}}', not {text[:40]!r}")
    return value


def _load_recipe(args):
    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe

    return Recipe.load(args.recipe if args.recipe else bundled_recipe(getattr(args, "engine", None)))


def _load_line(args):
    """The inspector of `--recipe` (given once or more, combined by `--combine`), else of the bundled recipe."""
    from station.core.multi import load_line
    from station.core.resources import bundled_recipe

    paths = args.recipe or [bundled_recipe(getattr(args, "engine", None))]
    return load_line([str(p) for p in paths], args.combine)


def cmd_inspect(args) -> int:
    from station.core.inspector import bad_frame_result
    from station.core.sources import SourceState, make_source
    from station.core.watchdog import FrameReader

    def notice(state: SourceState, message: str) -> None:
        if state is SourceState.LOST:
            print(f"station: {message}", file=sys.stderr)

    inspector = _load_line(args)
    source = make_source(args.source, fps=args.fps)
    # the source is read in a thread of its own: a camera that never delivers ends the run after the timeout
    reader = FrameReader(source, args.frame_timeout, notice)
    source.open()
    failures, count = 0, 0
    with reader:
        while args.max_frames is None or count < args.max_frames:
            frame = reader.next()
            if frame is None:
                break
            count += 1
            if frame.image is None:
                failures += 1
                # a live source's bad frame stood for a part that was not judged: NG, never a pass
                verdict = bad_frame_result(frame.error, inspector.content_hash).to_dict() if source.live \
                    else {"verdict": None}
                _emit({"frame": frame.name, "index": frame.index, **verdict, "error": frame.error})
                continue
            result = inspector.inspect(frame.image)
            _emit({"frame": frame.name, "index": frame.index, **result.to_dict()})
    if failures:
        print(f"station: error: {failures} of {count} images could not be read or inspected (see the 'error' lines)",
              file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_eval(args) -> int:
    from station.core.dataset import load_dataset
    from station.core.evaluate import evaluate
    from station.core.resources import demo_dir

    from station.core.multi import MultiInspector
    from station.core.multi_eval import evaluate_line

    line = _load_line(args)
    data = load_dataset(Path(args.data) if args.data else demo_dir(), "test")
    result = evaluate_line(line, data) if isinstance(line, MultiInspector) else evaluate(line.recipe, data)
    if args.json:
        _emit(result)
    else:
        keys = ["engine", "n_images", "auroc", "accuracy", "escape_rate", "false_reject_rate", "review_rate",
                "cell_localization", "fit_seconds", "ms_per_image_median"]
        for key in keys + ["disagreement_rate"] * ("disagreement_rate" in result):
            print(f"{key:>20}: {result[key]}")
        print(f"{'per_class_recall':>20}: {result['per_class_recall']}")
        for name, own in result.get("engines", {}).items():
            print(f"{name:>20}: " + ", ".join(f"{k} {own[k]}" for k in ("accuracy", "escape_rate", "review_rate")))
    return 0


def cmd_explain(args) -> int:
    from station.core.explain import plus_minus_table, write_explanation
    from station.core.imageio import read_image

    recipe = _load_recipe(args)
    image = Path(args.image)
    table = plus_minus_table(recipe, read_image(image), image.name)
    paths = write_explanation(table, args.out, image.stem)
    _emit({"image": str(image), **paths, "verdict": table.verdict, "class": table.label,
           "top_cell": list(table.top_cell) if table.top_cell else None})
    return 0


def cmd_synth(args) -> int:
    from station.synth import SynthError, render_dataset

    def progress(done: int, total: int) -> None:
        print(f"rendered {done}/{total}", file=sys.stderr)

    try:
        manifest = render_dataset(Path(args.out), args.count, args.seed, size=args.size, workers=args.workers,
                                  python=args.blender_python, progress=progress, keep_existing=args.keep_existing,
                                  product=args.product)
    except SynthError as exc:
        raise StationError(str(exc)) from None
    product = json.loads(manifest.read_text()).get("product", {}).get("name")
    _emit({"out": str(args.out), "manifest": str(manifest), "count": args.count, "seed": args.seed,
           "product": product})
    return 0


def cmd_doctor(args) -> int:
    from station.doctor import format_report, report

    rows = report()
    if args.json:
        _emit([{"section": s, "what": w, "found": f} for s, w, f in rows])
    else:
        print(format_report(rows))
    return 0


def cmd_gui(args) -> int:
    from station.ui.app import run_gui

    return run_gui(args)


def cmd_bench(args) -> int:
    """Measure the live line (headless, or the full window with --gui) and print one JSON object."""
    if args.gui:
        from station.ui.bench import run_gui_bench

        _emit(run_gui_bench(args.source, args.recipe, args.seconds, args.fps, combine=args.combine))
        return 0
    from station.core.live import LivePipeline
    from station.core.live_measure import run_bench
    from station.core.sources import make_source

    pipeline = LivePipeline(make_source(args.source, fps=args.fps), _load_line(args))
    _emit(run_bench(pipeline, args.seconds))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose errors keep the command line's contract: one line, `station: error: ...`, exit 2."""

    def error(self, message: str):
        _say(f"error: {message} (see `{self.prog} --help`)")
        raise SystemExit(EXIT_ERROR)


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    return parse


def _float_in(low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value
    return parse


SEED = _int_in(0, SEED_MAX)
COUNT = _int_in(1, 10**9)
FPS = _float_in(0.0, 1000.0)


def _line_args(parser, help_text: str = "recipe folder; give it more than once to run several recipes on "
               "every frame (default: the bundled recipe)") -> None:
    from station.core.combine import DEFAULT_RULE, rule_help

    parser.add_argument("--recipe", action="append", help=help_text)
    parser.add_argument("--combine", default=DEFAULT_RULE, metavar="RULE",
                        help=f"how several recipes' verdicts combine: {rule_help()} (default {DEFAULT_RULE})")


def build_parser() -> argparse.ArgumentParser:
    from station import __version__

    p = _Parser(prog="station", description="Visual inspection station (OK / NG / REVIEW).")
    p.add_argument("--version", action="version", version=f"station {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("gui", help="open the station window (the default)")
    g.add_argument("--source", help="demo, camera:N, a video file or an image folder")
    g.add_argument("--recipe", help="recipe folder (default: the bundled recipe)")
    g.set_defaults(func=cmd_gui)

    b = sub.add_parser("bench", help="measure the live line; one JSON object (fps, latency per stage, memory)")
    b.add_argument("--source", default="demo", help="demo, camera:N, a video file or an image folder")
    _line_args(b, "recipe folder, once or more (default: with --gui the window's line, else the bundled recipe)")
    b.add_argument("--seconds", type=_float_in(0.1, 86400.0), default=20.0, help="how long to measure, after a short warm-up")
    b.add_argument("--fps", type=FPS, default=30.0, help="frame rate of the demo line")
    b.add_argument("--gui", action="store_true", help="run the full window (offscreen without a display)")
    b.set_defaults(func=cmd_bench)

    from station.train_cli import add_commands as add_train  # noqa: PLC0415 - `train` and `teach`
    add_train(sub)

    i = sub.add_parser("inspect", help="inspect a source; one JSON line per frame")
    _line_args(i)
    i.add_argument("--engine", help="use the bundled recipe of this engine")
    i.add_argument("--source", required=True, help="demo, camera:N, a video file, an image folder or an image")
    i.add_argument("--max-frames", type=_int_in(0, 10**12))
    i.add_argument("--fps", type=FPS, default=30.0, help="frame rate of the demo line")
    i.add_argument("--frame-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="end with an error when the source delivers no frame for this long (default 10)")
    i.set_defaults(func=cmd_inspect)

    e = sub.add_parser("eval", help="evaluate a recipe on a labelled test set")
    _line_args(e)
    e.add_argument("--engine", help="use the bundled recipe of this engine")
    e.add_argument("--data", help="dataset folder (default: the bundled demo test split)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("explain", help="plus-minus analysis of one image (rt-attention): PNG and JSON")
    x.add_argument("--recipe")
    x.add_argument("--engine", default="rt-attention", help="use the bundled recipe of this engine")
    x.add_argument("image")
    x.add_argument("--out", required=True, help="folder for IMAGE_plusminus.png and .json")
    x.set_defaults(func=cmd_explain)

    s = sub.add_parser("synth", help="render a product (the reference connector by default) with Blender")
    s.add_argument("--out", required=True)
    s.add_argument("--count", type=_int_in(0, 10**7), required=True)
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--size", type=_int_in(16, 8192), default=256)
    s.add_argument("--workers", type=_int_in(1, 256), default=max(1, min(4, os.cpu_count() or 1)))
    s.add_argument("--blender-python", help="a Python with bpy (default: $STATION_BLENDER_PYTHON)")
    s.add_argument("--keep-existing", action="store_true",
                   help="keep images already rendered (same seed): grow a set or resume an interrupted render")
    s.add_argument("--product", metavar="FILE_OR_NAME",
                   help="a JSON file of product settings (omitted keys keep the connector's), 'demo', or a product "
                        "of scripts/product_suite.json ($STATION_PRODUCTS)")
    s.set_defaults(func=cmd_synth)

    d = sub.add_parser("doctor", help="for a support call: versions, cameras, GPU, folders, database, disk, log file")
    d.add_argument("--json", action="store_true", help="one JSON list of {section, what, found}")
    d.set_defaults(func=cmd_doctor)
    from station.trust_cli import add_commands  # noqa: PLC0415 - `pin` and `trust-recipe` (SECURITY.md)
    add_commands(sub)
    from station.report_cli import add_commands as add_report  # noqa: PLC0415 - `report`
    add_report(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(argv if argv is not None else sys.argv[1:])])
    from station.core.logs import setup_logging

    _, no_log = setup_logging()  # the rotating log file in the user data folder (docs/integrator.md)
    if no_log:
        _say(no_log)
    try:
        return args.func(args)
    except StationError as exc:
        # one line, always: scripts read the last line of stderr
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        log.warning("station %s: %s", args.command, message)
        print(f"station: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        log.exception("station %s: internal error", args.command)
        if os.environ.get("STATION_DEBUG"):
            raise
        message = " ".join(str(exc).split())[:300]  # OpenCV's messages span lines
        print(f"station: internal error: {type(exc).__name__}: {message} (the log file has the traceback; "
              "`station doctor` says where it is)",
              file=sys.stderr)
        return EXIT_INTERNAL


