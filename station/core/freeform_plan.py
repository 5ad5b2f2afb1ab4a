"""What a free-form product (no cells taught: good images of a part or a surface) is trained with, the same from
`station train` and from the workbench: the whole frame, or the part turned back to one pose where it lies at
any angle (station.core.pose); the engine and crop the free-form choice measures best (station.core.freeform),
or the engine the engineer picked, on the crop that choice would give it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from station.core.dataset import Dataset
from station.core.engines import engine_class
from station.core.engines.base import Progress
from station.core.freeform import (CHOICE_MARGIN, JOINED, MAX_TAUGHT, candidate_configs, choose_free_form,
                                   in_colour, patch_grid, rt_grid)
from station.core.grid import CellGrid
from station.core.pose import PoseFit, turned_back_goods
from station.core.training import read_training_images, train_recipe, within_memory

AUTO = "auto"  # the engine name that asks for the measured choice


@dataclass
class FreeFormPlan:
    engine: str
    config: dict[str, Any]
    grid: CellGrid
    region_mode: str  # "full" or "pose"
    pose: PoseFit | None
    choice: dict[str, Any] = field(default_factory=dict)  # the recipe's provenance `engine_choice`

    def describe(self) -> str:
        """One line for the engineer: the engine, its crop and where it comes from, and why it was chosen."""
        where = "the whole frame"
        if self.pose is not None:
            where = ("the round part centred and turned back to one pose by its pattern (it lies at any angle)"
                     if self.pose.turn == "pattern" else "the part turned back to one pose (it lies at any angle)")
        ranking = self.choice.get("ranking", {})
        ranked = f" ({', '.join(f'{k} {v:.3f}' for k, v in ranking.items())})" if ranking else ""
        return (f"the {self.engine} engine with a pixel map on a {self.grid.size[0]}x{self.grid.size[1]} crop of "
                f"{where}, chosen by {self.choice.get('chosen_by', 'the engineer')}{ranked}")


def plan_free_form(goods: list[np.ndarray], cell_px: int | None = None, seed: int = 0,
                   defects: list[np.ndarray] | None = None, engine: str = AUTO,
                   running: Any = None) -> FreeFormPlan:
    """The plan for good RGB frames `goods` (and photographs of defective parts, `defects`, which count in the
    measured choice). `engine` JOINED asks for the choice's candidate joined with the next best; any other than
    AUTO is the engineer's pick: it keeps the `running` recipe's crop and settings where that recipe runs the same
    engine on the same kind of region, and otherwise gets the crop and settings the choice measures it with."""
    pose, views, turned = turned_back_goods(goods)
    measured = None  # the choice, where it was made on both the whole and the turned-back frames
    if pose is not None and not turned["used"]:  # turning back steadies the frames somewhat, not clearly
        pose, views, turned, measured = _measured_both_ways(goods, pose, views, turned, engine, cell_px, seed,
                                                            defects)
    region_mode = "pose" if pose is not None else "full"
    if measured is not None:
        engine, config, grid, choice = measured
    elif engine in (AUTO, JOINED):  # the joined engine joins the candidates the choice measures best
        engine, config, grid, choice = choose_free_form(views, cell_px, seed, defects, join=engine == JOINED)
    else:
        choice = {"candidate": engine, "chosen_by": "the engineer"}
        if (running is not None and running.doc.engine.name == engine and running.region.mode == region_mode
                and not cell_px):
            config = {k: v for k, v in running.doc.engine.config.items() if k != "train_dir"}
            grid = running.grid
        else:
            config = dict(candidate_configs(in_colour(views)).get(engine, {}))
            grid = patch_grid(views, cell_px) if engine == "patch" else rt_grid(views, cell_px)
    if turned:
        choice = {**choice, "pose": turned}
    return FreeFormPlan(engine, config, grid, region_mode, pose, choice)


def _measured_both_ways(goods: list[np.ndarray], pose: PoseFit, views: list[np.ndarray], turned: dict,
                        engine: str, cell_px: int | None, seed: int,
                        defects: list[np.ndarray] | None
                        ) -> tuple[PoseFit | None, list[np.ndarray], dict, tuple | None]:
    """Where turning back steadies the frames only somewhat: the free-form choice run on the whole frames and on
    the turned-back ones, and the pose kept where its chosen engine finds its worst kind of defect better by more
    than CHOICE_MARGIN (the engineer's pick of an engine keeps the whole frame, and nothing is measured). Returns
    the pose (or None), the frames, what was measured, and the choice kept, so that it is not made again. The
    joined engine is measured both ways as the choice is."""
    if engine not in (AUTO, JOINED):
        return None, goods, turned, None
    whole = choose_free_form(goods, cell_px, seed, defects, join=engine == JOINED)
    posed = choose_free_form(views, cell_px, seed, defects, join=engine == JOINED)
    found = [c[3].get("worst_kind_auroc", {}).get(c[3]["candidate"]) for c in (whole, posed)]
    turned = {**turned, "worst_kind_auroc": {"whole frame": found[0], "turned back": found[1]}}
    if found[0] is not None and found[1] is not None and found[1] > found[0] + CHOICE_MARGIN:
        return pose, views, {**turned, "used": True}, posed
    return None, goods, turned, whole


def fit_free_form(data: Dataset, engine: str, name: str, config: dict[str, Any] | None = None,
                  progress: Progress | None = None, provenance: dict[str, Any] | None = None,
                  running: Any = None, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """(recipe, stats) of a free-form product retrained from `data` (the workbench's captures): its good images
    train; its images of any other class are the engineer's photographs of defective parts, which count in the
    measured choice (`engine` AUTO) as `station train --defect-images` does, and train only an engine that names
    classes. `config` is laid over the plan's settings (a training run's folder)."""
    data, sampled = within_memory(data, whole_frames=True, seed=seed)
    data, images, skipped = read_training_images(data, whole_frames=True)
    good = [i for i, s in enumerate(data.samples) if s.label == "good"]
    others = [i for i, s in enumerate(data.samples) if s.label != "good"]
    drawn = np.random.default_rng(seed).permutation(len(others))[:MAX_TAUGHT]
    defects = [images[others[i]] for i in drawn] or None
    plan = plan_free_form([images[i] for i in good], None, seed, defects, engine, running)
    keep = good if engine_class(plan.engine).kind == "anomaly" else list(range(len(images)))
    train = Dataset(data.root, data.layout, [data.samples[i] for i in keep])
    recipe, stats = train_recipe(train, plan.engine, plan.grid, name, seed=seed,
                                 engine_config={**plan.config, **(config or {})}, progress=progress,
                                 provenance={**(provenance or {}), "engine_choice": plan.choice,
                                             **({"sampled": sampled} if sampled else {})},
                                 region_mode=plan.region_mode, images=[images[i] for i in keep], pose=plan.pose)
    stats["plan"] = plan.describe()
    if sampled:  # the training view shows the warnings
        stats["warnings"] = [sampled] + list(stats.get("warnings", []))
    if skipped:
        stats["skipped_images"] = skipped + stats.get("skipped_images", [])
    return recipe, stats
