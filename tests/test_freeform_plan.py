"""A free-form product is trained the same way from `station train` and from the workbench
(station.core.freeform_plan): whole frame or pose, the engine measured or the engineer's, the captured defects
counting in the choice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from station.core.dataset import load_dataset
from station.core.freeform_plan import AUTO, fit_free_form, plan_free_form
from station.core.inspector import Inspector

from test_pose import screw


def _captures(root, rng, goods: int, notched: int) -> None:
    """The workbench's capture folder: class folders of frames (good screws at any angle, and screws with a bite)."""
    for cls, n, notch in (("good", goods, False), ("notch", notched, True)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / cls / f"{i:03d}.png"), screw(rng, notch=notch))


def test_a_retrained_part_that_lies_at_any_angle_keeps_its_pose_and_its_captured_defects_choose(tmp_path):
    rng = np.random.default_rng(7)
    _captures(tmp_path / "captures", rng, goods=40, notched=8)
    data = load_dataset(tmp_path / "captures", "train")
    recipe, stats = fit_free_form(data, AUTO, "retrained", provenance={"trained_with": "workbench"})
    assert recipe.region.mode == "pose"
    choice = recipe.doc.provenance["engine_choice"]
    assert choice["pose"]["used"] and choice["defect_images"] == 8 and "taught_auroc" in choice
    assert "photographs of defective parts" in choice["chosen_by"]
    assert stats["n_train"] == {"good": 40}  # the defects chose the engine; the anomaly engine fits good parts
    assert "turned back to one pose" in stats["plan"]
    inspector = Inspector(recipe)
    good = [inspector.inspect(screw(rng)).score for _ in range(6)]
    bitten = [inspector.inspect(screw(rng, notch=True)).score for _ in range(6)]
    assert min(bitten) > np.median(good)


def test_the_engineers_engine_keeps_the_running_recipes_crop_and_settings_or_gets_the_choices():
    rng = np.random.default_rng(8)
    goods = [screw(rng) for _ in range(16)]
    auto = plan_free_form(goods, seed=0)
    assert auto.region_mode == "pose" and auto.choice["chosen_by"].startswith("synthetic defects")

    class Running:  # what the plan reads of a running recipe
        class doc:
            class engine:
                name = "patch"
                config = {"memory": 1024, "train_dir": "/elsewhere"}

        class region:
            mode = "pose"

        grid = auto.grid

    same = plan_free_form(goods, engine="patch", running=Running)
    assert same.grid == auto.grid and same.config == {"memory": 1024}
    assert same.choice["chosen_by"] == "the engineer" and same.choice["pose"]["used"]
    other = plan_free_form(goods, engine="rt", running=Running)
    assert other.config["pixel_map"] and other.config["calibration"] == "robust"  # as the choice measures RT
    assert other.grid.cell_px == 8 and other.region_mode == "pose"


def test_the_workbench_retrains_a_whole_frame_recipe_on_the_whole_frame(tmp_path):
    """Before, the workbench proposed a pin pattern for every recipe that was not a blob one, so a free-form
    product lost its whole-frame crop and its measured engine on retraining."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from station.ui.workbench.training_view import fit_candidate

    rng = np.random.default_rng(9)
    root = tmp_path / "captures" / "good"
    root.mkdir(parents=True)
    base = cv2.GaussianBlur(rng.normal(128, 40, (96, 128)).astype(np.float32), (0, 0), 2)
    for i in range(20):  # a grained surface seen whole, the same in every frame but for the camera's noise
        frame = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))

    class Captures:  # the workbench, as the training job uses it
        def training_data(self, include_original):
            return load_dataset(tmp_path / "captures", "train")

        root = tmp_path / "workbench"

    recipe, stats, strip = fit_candidate(Captures(), AUTO, False, None, "surface", None, tmp_path / "run",
                                         lambda message, fraction: None, lambda: False, lambda data: None,
                                         region_kind="full")
    assert recipe.region.mode == "full" and strip == ""
    assert recipe.doc.provenance["trained_with"] == "workbench"
    assert recipe.doc.provenance["engine_choice"]["chosen_by"].startswith("synthetic defects")
    assert recipe.grid.size[0] / recipe.grid.size[1] == pytest.approx(128 / 96, rel=0.1)


@pytest.mark.parametrize("turned_worst, kept", [(0.80, "pose"), (0.565, "full")])
def test_a_pose_that_steadies_the_frames_only_somewhat_is_kept_where_the_choice_finds_defects_better(
        monkeypatch, turned_worst, kept):
    from station.core import freeform_plan
    from station.core.grid import CellGrid
    from station.core.pose import PoseFit

    goods = [np.zeros((64, 64, 3), np.uint8) for _ in range(4)]
    views = [np.ones((48, 48, 3), np.uint8) for _ in range(4)]
    fit = PoseFit(span=(0.9, 0.9), area=(0.1, 0.9), elongation=1.0, found=4, turn="pattern")
    measured = {"position_variance_share": [0.41, 0.21], "used": False, "steadier": "somewhat"}
    monkeypatch.setattr(freeform_plan, "turned_back_goods", lambda frames: (fit, views, dict(measured)))
    asked = []

    def choose(frames, cell_px, seed, defects, join=False):
        asked.append("turned" if frames is views else "whole")
        worst = turned_worst if frames is views else 0.56
        return "patch", {}, CellGrid(8, 8, 32), {"candidate": "patch", "worst_kind_auroc": {"patch": worst}}

    monkeypatch.setattr(freeform_plan, "choose_free_form", choose)
    plan = plan_free_form(goods)
    assert sorted(asked) == ["turned", "whole"]  # each measured once; the winner's choice is not made again
    assert plan.region_mode == kept and (plan.pose is fit) == (kept == "pose")
    assert plan.choice["pose"]["used"] == (kept == "pose")
    assert plan.choice["pose"]["worst_kind_auroc"] == {"whole frame": 0.56, "turned back": turned_worst}
    # the engineer's own pick of an engine keeps the whole frame: nothing is measured for it
    asked.clear()
    assert plan_free_form(goods, engine="rt").region_mode == "full" and not asked


def test_turning_back_that_steadies_the_frames_somewhat_is_offered_for_measuring(monkeypatch):
    from station.core import pose as pose_module
    from test_pose import cap

    rng = np.random.default_rng(13)
    goods = [cap(rng) for _ in range(8)]
    shares = iter([0.40, 0.26])  # the whole frames', then the turned-back ones': 0.65 of it
    monkeypatch.setattr(pose_module, "position_variance_share", lambda images: next(shares))
    fit, views, info = pose_module.turned_back_goods(goods)
    assert fit is not None and views is not goods and not info["used"] and info["steadier"] == "somewhat"
