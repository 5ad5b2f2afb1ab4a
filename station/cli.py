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
import shlex
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


def _grid_arg(args):
    """(cols, rows) from --grid, or None to let the data say."""
    from station.core.grid import CellGrid

    if not args.grid:
        return None
    grid = CellGrid.parse(args.grid)
    return grid.cols, grid.rows


GOODS_TO_TEACH = 200  # good images a proposal is made from (it samples MAX_PROPOSAL_IMAGES of them)


def _good_images(data, limit: int = GOODS_TO_TEACH):
    """The good images to teach from: unreadable files and images of another size than the camera's are left
    out and named on stderr."""
    from station.core.training import odd_sizes, read_readable

    paths = [s.path for s in data.samples if s.label == "good"][:limit]
    if not paths:
        raise StationError(f"{data.root} has no 'good' images to teach the part from")
    goods, kept, skipped = read_readable(paths)
    size, odd = odd_sizes([im.shape[:2] for im in goods])
    if odd:
        skipped += [f"{paths[kept[i]]}: {goods[i].shape[1]} x {goods[i].shape[0]} px, the other good images "
                    f"{size[1]} x {size[0]} px" for i in odd]
        goods = [im for i, im in enumerate(goods) if i not in set(odd)]
    _report_skipped(skipped)
    if not goods:
        raise StationError(f"{data.root} has no readable 'good' images to teach the part from ({skipped[0]})")
    return goods


def _roi_arg(text: str | None):
    from station.core.pattern import Roi

    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise StationError(f"--roi must be x,y,w,h[,angle_deg] in frame px, not {text!r}") from None
    if len(values) not in (4, 5):
        raise StationError(f"--roi must be x,y,w,h[,angle_deg] in frame px, not {text!r}")
    x, y, w, h, *angle = values
    return Roi(x + w / 2, y + h / 2, w, h, angle[0] if angle else 0.0)


def cmd_teach(args) -> int:
    from station.core.dataset import load_dataset
    from station.core.outfolder import check_out_folder
    from station.core.teach import SETUP_FILES, propose_setup
    from station.core.training import labelled_grid, labelled_images

    check_out_folder(args.out, SETUP_FILES, "setup", args.data)
    data = load_dataset(Path(args.data), "train")
    goods = _good_images(data)
    grid = _grid_arg(args) or (None if args.cell_px else labelled_grid(data))
    # labelled cells name cells of a known grid; propose_setup keeps those inside it
    labelled = labelled_images(data) if grid is not None else None
    setup = propose_setup(goods, grid, args.cell_px, _roi_arg(args.roi), args.max_angle, args.max_scale,
                          labelled=labelled)
    paths = setup.save(args.out, goods[:8])
    _emit({**paths, **setup.to_dict()})
    return 0


def cmd_train(args) -> int:
    from station.core.dataset import load_dataset
    from station.core.grid import CellGrid
    from station.core.resources import demo_dir
    from station.core.teach import Setup
    from station.core.engines import engine_class
    from station.core.freeform import choose_free_form
    from station.core.outfolder import check_not_over, check_out_folder
    from station.core.teach import SETUP_FILES
    from station.core.training import (RECIPE_FILES, labelled_images, needs_cells, one_camera, read_training_images,
                                       teach_for, train_recipe)

    if args.engine != "auto":
        engine_class(args.engine)  # an unknown engine is said before any image is read
    data_root = Path(args.data) if args.data else demo_dir()
    # nothing the station did not make is replaced: checked before the first image is read
    out = check_out_folder(args.out, RECIPE_FILES, "recipe", data_root)
    setup_out = out.with_name(out.name + ".setup")
    if args.region == "pattern" and not args.setup:
        check_out_folder(setup_out, SETUP_FILES, "setup", data_root, option="the proposed setup folder")
    config = _json_object_arg(args.config, "--config")
    data = load_dataset(data_root, "train").sample_per_class(args.max_per_class, args.seed)
    data, images, skipped = read_training_images(data)  # read once: the proposal and the training share them
    _report_skipped(skipped)
    setup, setup_paths, region_mode, auto_config, choice = None, {}, args.region, {}, {}
    free_form = args.engine == "auto" and not needs_cells(data, bool(args.grid or args.setup or args.region == "blob"))
    if args.engine == "auto" and not free_form:
        args.engine = "rt"
    if free_form:  # good images only and no cells given: the whole frame is resized to the crop
        args.engine, auto_config, grid, choice = choose_free_form(
            [im for im, s in zip(images, data.samples) if s.label == "good"], args.cell_px, args.seed)
        region_mode = "full"
        print(f"station: no --engine given; good images only: the {args.engine} engine with a pixel map on a "
              f"{grid.size[0]}x{grid.size[1]} crop of the whole frame, chosen by {choice['chosen_by']} "
              f"{choice.get('synthetic_auroc', '')}", file=sys.stderr)
    elif args.region == "blob":
        grid = CellGrid.parse(args.grid or "3x9", args.cell_px or 24)
    elif args.setup:
        if args.grid or args.cell_px:
            raise StationError("--grid and --cell-px come from the setup when --setup is given")
        setup = Setup.load(args.setup)
        grid = setup.grid
    else:  # no taught setup: propose one, and show the engineer what was assumed
        goods = [im for im, s in zip(images, data.samples) if s.label == "good"][:GOODS_TO_TEACH]
        if not goods:
            raise StationError(f"{data.root} has no 'good' images to teach the part from")
        grid = _grid_arg(args)
        if not one_camera(goods):
            print("station: the good images differ in size: each frame is resized to the crop, not registered",
                  file=sys.stderr)
        else:
            setup = teach_for(data, goods, grid, args.cell_px, labelled_images(data, images=images, seed=args.seed))
            grid = setup.grid
            if int(os.environ.get("RANK", "0")) == 0:
                setup_paths = setup.save(setup_out, goods[:8])
                print(f"station: no --setup given; proposed grid {grid.cols}x{grid.rows} of {grid.cell_px} px "
                      f"cells, see {setup_paths.get('preview', setup_paths['setup'])}", file=sys.stderr)
    config = {**auto_config, **config}
    if engine_class(args.engine).capabilities.trainable:  # a training run: checkpoints and curves beside the recipe
        if args.epochs is not None:
            config["epochs"] = args.epochs
        if args.pretrained:
            config["pretrained"] = args.pretrained
        config.setdefault("train_dir", args.train_dir or str(out.with_name(out.name + ".train")))
        if not isinstance(config["train_dir"], str):
            raise StationError("--config: train_dir must be a folder name")
        check_not_over(config["train_dir"], data_root, "the training folder")
        if args.quiet and isinstance(config.get("train", {}), dict):  # no progress bar either
            config["train"] = {"progress_bar": False, **config.get("train", {})}
    elif args.epochs is not None or args.pretrained or args.train_dir:
        raise StationError("--epochs, --pretrained and --train-dir apply to engines that train by epochs "
                           f"(not {args.engine})")
    command = "station " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    def progress(message: str, fraction: float) -> None:
        if not args.quiet:
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr)

    recipe, stats = train_recipe(data, args.engine, grid, args.name or Path(args.out).name, seed=args.seed,
                                 engine_config=config, progress=progress,
                                 provenance={"command": command, **({"engine_choice": choice} if choice else {})},
                                 refine=args.registration, setup=setup, region_mode=region_mode,
                                 cell_px=args.cell_px, images=images)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the first process writes the recipe
        return 0
    recipe.save(out)
    _emit({"recipe": str(args.out), "engine": args.engine, "content_hash": recipe.content_hash,
           "thresholds": {"review": recipe.thresholds[0], "ng": recipe.thresholds[1]}, **stats,
           **({"skipped_images": skipped} if skipped else {}),
           **({"proposed_setup": setup_paths} if setup_paths else {})})
    return 0


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

    t = sub.add_parser("train", help="fit an engine on a dataset and save a recipe")
    t.add_argument("--engine", default="auto",
                   help="rt, rt-attention, vit, patch, or auto (default): rt where cells are known; with good "
                   "images only, rt per 8x8 patch for aligned parts, else patch (both with a pixel map)")
    t.add_argument("--data", help="dataset folder (default: the bundled demo train split)")
    t.add_argument("--out", required=True, help="recipe folder to write")
    t.add_argument("--setup", help="a taught setup folder (station teach): region, grid and golden frame")
    t.add_argument("--grid", help="cell grid COLSxROWS (default: the labelled cells' span, else the features' rhythm)")
    t.add_argument("--cell-px", type=_int_in(4, 256), help="cell size in the registered crop, px (default: follows the pitch)")
    t.add_argument("--region", choices=("pattern", "blob"), default="pattern",
                   help="find the taught pattern (default) or the largest blob (recipes of earlier versions)")
    t.add_argument("--max-per-class", type=COUNT, help="a seeded sample of at most N images per class")
    t.add_argument("--seed", type=SEED, default=0)
    t.add_argument("--name", help="recipe name (default: the folder name)")
    t.add_argument("--config", help="engine settings as a JSON object, e.g. '{\"metrics\": \"rt\"}'")
    t.add_argument("--registration", choices=("ecc", "none"), default="ecc",
                   help="refine the part's position against the template with ECC (default) or not")
    t.add_argument("--epochs", type=_int_in(1, 100000), help="vit: maximum training epochs (early stop may end sooner)")
    t.add_argument("--pretrained", help="vit: start from a local timm .safetensors weight file")
    t.add_argument("--train-dir", help="vit: checkpoints, curves and attention strip (default: OUT.train); "
                   "a run with the same data and settings resumes from it")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    te = sub.add_parser("teach", help="propose a product's region and grid from good images; write the setup")
    te.add_argument("--data", required=True, help="dataset folder with good images (DIR/good or DIR/train/good)")
    te.add_argument("--out", required=True, help="setup folder to write (setup.json, golden.png, preview.png)")
    te.add_argument("--grid", help="COLSxROWS: one cell per feature (default: labelled cells, else the rhythm)")
    te.add_argument("--cell-px", type=_int_in(4, 256), help="canonical cell size, px; alone: square cells over the part")
    te.add_argument("--roi", help="x,y,w,h[,angle_deg]: the region in the golden frame, px (default: proposed)")
    te.add_argument("--max-angle", type=_float_in(0.0, 180.0), default=15.0, help="how far a part may turn, degrees (180: any)")
    te.add_argument("--max-scale", type=_float_in(0.0, 0.5), default=0.1, help="how far its scale may change (0.1 = 10%%)")
    te.set_defaults(func=cmd_teach)

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


