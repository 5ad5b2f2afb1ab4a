"""`station train` and `station teach`: a recipe, or a taught setup, from a dataset (the headless contract in
the README). Registered by station/cli.py, whose helpers for output and errors they share."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from station.core.errors import StationError


def add_commands(sub) -> None:
    from station.cli import COUNT, SEED, _float_in, _int_in  # noqa: PLC0415 - cli imports this module lazily

    t = sub.add_parser("train", help="fit an engine on a dataset and save a recipe")
    t.add_argument("--engine", default="auto",
                   help="rt, rt-attention, vit, patch, texture, fused, or auto (default): rt where cells are "
                   "known; with good images only, whichever of rt per 8x8 patch, rt fused with the texture model, "
                   "or patch tells synthetic defects best (all with a pixel map)")
    t.add_argument("--data", help="dataset folder (default: the bundled demo train split)")
    t.add_argument("--out", required=True, help="recipe folder to write")
    t.add_argument("--setup", help="a taught setup folder (station teach): region, grid and golden frame")
    t.add_argument("--grid", help="cell grid COLSxROWS (default: the labelled cells' span, else the features' rhythm)")
    t.add_argument("--cell-px", type=_int_in(4, 256), help="cell size in the registered crop, px (default: follows the pitch)")
    t.add_argument("--region", choices=("pattern", "blob"), default="pattern",
                   help="find the taught pattern (default) or the largest blob (recipes of earlier versions)")
    t.add_argument("--defect-images", metavar="DIR",
                   help="photographs of defective parts (any folders under DIR): with good images only and no "
                   "--engine, the engines are measured on these as one more kind of defect beside the synthetic ones")
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
    from station.cli import _report_skipped  # noqa: PLC0415 - the CLI's shared output helpers
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
    from station.cli import _emit  # noqa: PLC0415 - the CLI's shared output helpers
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


def _defect_images(folder: str, seed: int) -> tuple[list, list[str]]:
    """The readable photographs under `folder` (a seeded sample of at most MAX_TAUGHT, drawn before any is
    read), each shrunk as it is read to TAUGHT_SIDE px on its longer side (the choice's crops are smaller), and a
    line for each that cannot be read; one line if none can."""
    import numpy as np  # noqa: PLC0415 - the CLI starts without numpy

    from station.core.freeform import MAX_TAUGHT, TAUGHT_SIDE
    from station.core.imageio import is_image_file
    from station.core.training import read_readable

    paths = sorted(p for p in Path(folder).rglob("*") if is_image_file(p))  # a folder: cmd_train checked
    paths = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))[:MAX_TAUGHT]]
    images, _, skipped = read_readable(paths, max_side=TAUGHT_SIDE)
    if not images:
        raise StationError(f"--defect-images: no readable image under {folder}"
                           + (f" ({skipped[0]})" if skipped else ""))
    return images, skipped


def cmd_train(args) -> int:
    from station.cli import _emit, _json_object_arg, _report_skipped, _say  # noqa: PLC0415 - the CLI's shared output helpers
    from station.core.dataset import load_dataset
    from station.core.grid import CellGrid
    from station.core.resources import demo_dir
    from station.core.teach import Setup
    from station.core.engines import engine_class
    from station.core.freeform import JOINED
    from station.core.freeform_plan import AUTO, plan_free_form
    from station.core.outfolder import check_not_over, check_out_folder
    from station.core.teach import SETUP_FILES
    from station.core.training import (RECIPE_FILES, labelled_images, needs_cells, one_camera, read_training_images,
                                       teach_for, train_recipe, within_memory)

    if args.engine != "auto":
        engine_class(args.engine)  # an unknown engine is said before any image is read
    if args.defect_images and not Path(args.defect_images).is_dir():
        raise StationError(f"--defect-images: {args.defect_images} is not a folder")
    data_root = Path(args.data) if args.data else demo_dir()
    # nothing the station did not make is replaced: checked before the first image is read
    out = check_out_folder(args.out, RECIPE_FILES, "recipe", data_root)
    setup_out = out.with_name(out.name + ".setup")
    if args.region == "pattern" and not args.setup:
        check_out_folder(setup_out, SETUP_FILES, "setup", data_root, option="the proposed setup folder")
    config = _json_object_arg(args.config, "--config")
    data = load_dataset(data_root, "train").sample_per_class(args.max_per_class, args.seed)
    # the joined engine joins the free-form choice's candidates: measured as the choice is
    free_form = args.engine in ("auto", JOINED) and not needs_cells(data, bool(args.grid or args.setup
                                                                              or args.region == "blob"))
    data, sampled = within_memory(data, whole_frames=free_form, seed=args.seed)
    if sampled:
        _say(sampled)
    # read once: the proposal and the training share them; a free-form product's frames only as large as the crop needs
    data, images, skipped = read_training_images(data, whole_frames=free_form)
    _report_skipped(skipped)
    setup, setup_paths, region_mode, auto_config, choice, pose = None, {}, args.region, {}, {}, None
    if args.engine == "auto" and not free_form:
        args.engine = "rt"
    if args.defect_images and not free_form:
        raise StationError("--defect-images is for choosing a free-form engine: good images only in --data, "
                           "no --engine but joined, no --grid, --setup or blob region")
    if free_form:  # good images only and no cells given: the whole frame is resized to the crop
        defects = None
        if args.defect_images:
            defects, unread = _defect_images(args.defect_images, args.seed)
            _report_skipped(unread)
            skipped = skipped + unread
        goods = [im for im, s in zip(images, data.samples) if s.label == "good"]
        asked = args.engine
        plan = plan_free_form(goods, args.cell_px, args.seed, defects, AUTO if asked == "auto" else asked)
        args.engine, auto_config, grid, choice = plan.engine, plan.config, plan.grid, plan.choice
        region_mode, pose = plan.region_mode, plan.pose
        print(f"station: {'no --engine given' if asked == 'auto' else '--engine ' + asked}; good images only: "
              f"{plan.describe()}", file=sys.stderr)
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
            labelled = labelled_images(data, images=images, seed=args.seed)
            setup = teach_for(data, goods, grid, args.cell_px, labelled)
            if args.engine in ("patch", "joined") and setup.grid.cell_px % 8 and not args.cell_px:
                # its descriptors step 4 px on crops whose sides are multiples of 8: the proposal's cells rounded up
                setup = teach_for(data, goods, grid, -(-setup.grid.cell_px // 8) * 8, labelled)
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
                                 provenance={"command": command, **({"engine_choice": choice} if choice else {}),
                                             **({"sampled": sampled} if sampled else {})},
                                 refine=args.registration, setup=setup, region_mode=region_mode,
                                 cell_px=args.cell_px, images=images, pose=pose)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the first process writes the recipe
        return 0
    recipe.save(out)
    _emit({"recipe": str(args.out), "engine": args.engine, "content_hash": recipe.content_hash,
           "thresholds": {"review": recipe.thresholds[0], "ng": recipe.thresholds[1]}, **stats,
           **({"skipped_images": skipped} if skipped else {}), **({"sampled": sampled} if sampled else {}),
           **({"proposed_setup": setup_paths} if setup_paths else {})})
    return 0
