"""The ViT engine: model registry, attention maps, training (determinism, resume, DDP with gloo),
the recipe round trip and the refusal of bad weights. Tiny models and the drawn data set, so fast."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from station.cli import main
from station.core.dataset import load_dataset
from station.core.engines import TrainingSet, engine_class
from station.core.errors import EngineError, RecipeError
from station.core.grid import CellGrid
from station.core.inspector import Inspector
from station.core.recipe import ARRAYS_FILE, Recipe
from station.core.vit.attention import AttentionRecorder, attention_modules, cls_attention, rollout, to_cells
from station.core.vit.model import build_model, patch_grid
from station.core.vit.train import TrainConfig, augment, token_targets, train_model

GRID = CellGrid(3, 9)
TINY = {"arch": {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}, "val_frac": 0.2,
        "train": {"progress_bar": False, "batch_size": 16, "checkpoint_every": 1, "threads": 1,
                  "keep_checkpoints": 2}}


@pytest.fixture(scope="module")
def crops(synthetic_data) -> TrainingSet:
    from station.core.imageio import read_image
    from station.core.registration import Registrar, fit_region
    from station.core.training import register_samples

    data = load_dataset(synthetic_data, "train")
    images = [read_image(s.path) for s in data.samples]
    region = fit_region([im for im, s in zip(images, data.samples) if s.label == "good"], GRID)
    full = register_samples(Registrar(region, GRID), data.samples, images)
    keep = [i for lab in full.classes for i in full.indices(lab)[:6]]  # 24 crops keep the fits short
    return TrainingSet(full.crops[keep], [full.labels[i] for i in keep], [full.cells[i] for i in keep], GRID)


@pytest.fixture(scope="module")
def vit_recipe(synthetic_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vit") / "vit"
    argv = ["train", "--engine", "vit", "--data", str(synthetic_data), "--out", str(out), "--epochs", "3",
            "--config", json.dumps(TINY), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["station", *argv])  # the provenance records the command line
        assert main(argv) == 0
    return out


def _fit(crops: TrainingSet, seed: int = 0, **config) -> dict[str, np.ndarray]:
    engine = engine_class("vit")(GRID, {**TINY, "epochs": 2, **config})
    engine.fit(crops, seed=seed)
    return engine.arrays()


# -- model and attention -----------------------------------------------------------------------
def test_models_by_name_align_tokens_with_cells():
    assert patch_grid(build_model("vit_grid", GRID, 4, arch=TINY["arch"])) == (9, 3)  # one token per pin
    assert patch_grid(build_model("vit_square", GRID, 4, arch={**TINY["arch"], "patches_per_cell": 2})) == (18, 6)
    assert build_model("vit_grid", GRID, 4, in_chans=6, arch=TINY["arch"]).patch_embed.proj.in_channels == 6
    with pytest.raises(EngineError, match="unknown ViT model"):
        build_model("resnet", GRID, 4)


@pytest.mark.parametrize("name", ["vit_grid", "vit_square"])
def test_attention_maps_are_cell_distributions_and_fused_path_is_restored(name):
    torch.manual_seed(0)
    model = build_model(name, GRID, 4, arch=TINY["arch"]).eval()
    x = torch.randn(2, 3, 216, 72)
    with torch.no_grad():
        fused = model(x)
        with AttentionRecorder(model) as rec:
            explicit = model(x)
    assert all(m.fused_attn for m in attention_modules(model))  # maps only when asked
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert len(rec.maps) == 2
    for patch_map in (cls_attention(rec.maps[-1]), rollout(rec.maps)):
        cells = to_cells(patch_map, patch_grid(model), (9, 3))
        assert cells.shape == (2, 9, 3)
        assert torch.all(cells >= 0)
        assert torch.allclose(cells.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)


# -- training ----------------------------------------------------------------------------------
def test_mirror_augmentation_mirrors_the_labelled_cell():
    x = torch.zeros(2, 7, 216, 72)
    x[:, :, 24:48, 0:24] = 1.0  # something in cell (col 0, row 1)
    cfg = TrainConfig(hflip=1.0, max_shift=0, jitter=0, noise=0)
    out, cells = augment(x, torch.Generator().manual_seed(0), cfg, torch.tensor([3, -1]), cols=3)
    assert cells.tolist() == [5, -1]  # (0, 1) -> (2, 1); unknown stays unknown
    assert float(out[0, 3, 24:48, 48:72].mean()) == 1.0 and float(out[0, 3, 24:48, 0:24].mean()) == 0.0


def test_token_targets_mark_the_labelled_cell_only():
    t = token_targets(torch.tensor([0, 2, 1]), torch.tensor([-1, 4, -1]), (9, 3), (9, 3))
    assert t[0].eq(0).all() and t[2].eq(-100).all()  # good: all OK; defect without a cell: ignored
    assert t[1, 4] == 2 and int((t[1] == 2).sum()) == 1


def test_training_is_deterministic_for_a_seed(crops):
    a, b = _fit(crops, seed=3), _fit(crops, seed=3)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = _fit(crops, seed=4)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_interrupted_training_resumes_to_the_same_weights(crops, tmp_path):
    straight = _fit(crops, epochs=3, train_dir=str(tmp_path / "a"))

    def stop_after_two(message, fraction):
        if message.startswith("epoch 3/"):
            raise KeyboardInterrupt

    engine = engine_class("vit")(GRID, {**TINY, "epochs": 3, "train_dir": str(tmp_path / "b")})
    with pytest.raises(KeyboardInterrupt):
        engine.fit(crops, seed=0, progress=stop_after_two)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 2
    engine = engine_class("vit")(GRID, {**TINY, "epochs": 3, "train_dir": str(tmp_path / "b")})
    report = engine.fit(crops, seed=0)
    assert report.info["resumed_from"] == 2
    resumed = engine.arrays()
    assert all(np.array_equal(straight[k], resumed[k]) for k in straight)
    for name in ("curves.png", "curves.json", "attention_strip.png", "ckpt_0003.safetensors"):
        assert (tmp_path / "b" / name).is_file()
    assert not (tmp_path / "b" / "ckpt_0001.safetensors").exists()  # only the last two are kept
    for name in ("state.json",):
        assert (tmp_path / "b" / name).is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 3, 216, 72, generator=g), torch.arange(24) % 2
    cells = torch.where(y == 1, torch.arange(24) % 27, -1)
    torch.manual_seed(0)
    model = build_model("vit_grid", GRID, 2, arch=TINY["arch"])
    cfg = TrainConfig(epochs=2, batch_size=4, progress_bar=False, min_epochs=1)
    result = train_model(model, x, y, cells, np.arange(20, 24), cfg, 0, (9, 3), (9, 3))
    torch.distributed.destroy_process_group()
    torch.save({"world": result.world_size, **model.state_dict()}, f"{out}/rank{rank}.pt")


@pytest.mark.slow
def test_ddp_with_gloo_on_two_cpu_processes_keeps_replicas_equal(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0.pop("world") == r1.pop("world") == 2
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


# -- the engine in a recipe --------------------------------------------------------------------
def test_recipe_round_trip_names_the_class_and_the_cell(vit_recipe, synthetic_data):
    recipe = Recipe.load(vit_recipe)
    assert recipe.doc.engine.name == "vit" and recipe.engine.kind == "classifier"
    assert "--epochs 3" in recipe.doc.provenance["command"]
    review, ng = recipe.thresholds
    assert 0 <= review <= ng <= 1
    data = load_dataset(synthetic_data, "test")
    from station.core.imageio import read_image

    result = Inspector(recipe).inspect(read_image(data.samples[-1].path))
    assert set(result.class_probs) == {"good", "missing", "pushed", "tilted"}
    assert abs(sum(result.class_probs.values()) - 1) < 1e-5
    assert result.cell_scores.shape == (9, 3) and abs(result.cell_scores.sum() - 1) < 1e-5
    assert result.extra["attention_cls"].shape == (9, 3)
    recipe.engine.config["rollout"] = True
    assert recipe.engine.infer(result.registered.crop).extra["attention_rollout"].shape == (9, 3)
    assert abs(result.score - (1 - result.class_probs["good"])) < 1e-6
    crop = result.registered.crop
    plain = recipe.engine.infer_batch(crop[None], maps=False)[0]
    assert abs(plain.score - result.score) < 1e-5  # the fused path gives the same verdict
    train_dir = Path(str(vit_recipe) + ".train")
    assert (train_dir / "curves.png").is_file() and (train_dir / "attention_strip.png").is_file()


def _rewrite(recipe_dir: Path, tmp_path: Path, change) -> Path:
    recipe = Recipe.load(recipe_dir)
    arrays = {k.removeprefix("engine."): v for k, v in recipe.all_arrays().items() if k.startswith("engine.")}
    change(arrays)
    recipe.engine.arrays = lambda: arrays  # save exactly these arrays, with a valid content hash
    return recipe.save(tmp_path / "bad")


def test_missing_weight_is_refused(vit_recipe, tmp_path):
    bad = _rewrite(vit_recipe, tmp_path, lambda a: a.pop("model.head.weight"))
    with pytest.raises(RecipeError, match="missing .*head.weight"):
        Recipe.load(bad)


def test_wrong_shape_weight_is_refused(vit_recipe, tmp_path):
    bad = _rewrite(vit_recipe, tmp_path, lambda a: a.update({"model.pos_embed": np.zeros((1, 10, 32), np.float32)}))
    with pytest.raises(RecipeError, match="pos_embed.*shape"):
        Recipe.load(bad)


def test_truncated_or_absent_weights_file_is_refused(vit_recipe, tmp_path):
    import shutil

    bad = tmp_path / "cut"
    shutil.copytree(vit_recipe, bad)
    blob = (bad / ARRAYS_FILE).read_bytes()
    (bad / ARRAYS_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RecipeError, match="damaged|content hash"):
        Recipe.load(bad)
    (bad / ARRAYS_FILE).unlink()
    with pytest.raises(RecipeError, match="missing"):
        Recipe.load(bad)


def test_settings_without_classes_are_refused():
    with pytest.raises(EngineError, match="no classes"):
        engine_class("vit")(GRID, TINY).load_arrays({})


# -- small data: defaults that follow the data set (issue 14) ----------------------------------
def test_schedule_gives_a_small_set_enough_steps_and_a_large_one_the_former_epochs():
    from station.core.vit.train import plan_schedule

    small = plan_schedule(TrainConfig(), 68)  # 20 images a class, less the validation split
    assert small.steps_per_epoch == 3 and small.epochs == 667 and small.from_data  # ceil(2000 / 3) steps
    assert (small.min_epochs, small.patience, small.warmup_epochs, small.checkpoint_every) == (267, 201, 21, 34)
    large = plan_schedule(TrainConfig(), 1632)  # the bundled set: 51 steps an epoch
    assert (large.epochs, large.min_epochs, large.patience, large.warmup_epochs, large.checkpoint_every) == (
        100, 40, 30, 3, 5)
    assert plan_schedule(TrainConfig(), 10).epochs == 1000  # the data rule's cap
    assert plan_schedule(TrainConfig(), 68, world=2).steps_per_epoch == 2
    mine = plan_schedule(TrainConfig(epochs=50, patience=7), 68)  # what the user set wins
    assert (mine.epochs, mine.min_epochs, mine.patience, mine.from_data) == (50, 20, 7, False)
    engine = engine_class("vit")(GRID, {"epochs": 12, "train": {"min_epochs": 2}})  # --epochs and --config
    assert TrainConfig.from_dict(engine.train_settings()).epochs == 12
    assert TrainConfig.from_dict(engine.train_settings()).min_epochs == 2
    assert TrainConfig.from_dict(engine_class("vit")(GRID).train_settings()).epochs is None


def test_no_mirror_by_default_in_training_or_inference():
    engine = engine_class("vit")(GRID)
    cfg = TrainConfig.from_dict(engine.train_settings())
    assert cfg.hflip == 0 and engine.config["tta"] is False
    x = torch.zeros(4, 7, 216, 72)
    x[:, :, 24:48, 0:24] = 1.0  # something in cell (col 0, row 1)
    quiet = TrainConfig.from_dict({**engine.train_settings(), "max_shift": 0, "jitter": 0, "noise": 0})
    out, cells = augment(x, torch.Generator().manual_seed(0), quiet, torch.tensor([3, 3, 3, -1]), cols=3)
    assert torch.equal(out, x) and cells.tolist() == [3, 3, 3, -1]


def test_shift_follows_the_cell_size_unless_set():
    from station.core.vit.train import shift_px

    assert shift_px(TrainConfig(), 24) == 3 and shift_px(TrainConfig(), 48) == 6
    assert shift_px(TrainConfig(), 4) == 1  # at least one pixel
    assert shift_px(TrainConfig(max_shift=5), 48) == 5
    cfg = TrainConfig(jitter=0, noise=0)
    for cell_px in (24, 48):
        h, w = 9 * cell_px, 3 * cell_px
        x = torch.zeros(64, 3, h, w)
        x[:, :, h // 2, w // 2] = 1.0
        out, _ = augment(x, torch.Generator().manual_seed(0), cfg, cols=3)  # the cell is the width over cols
        dx = out.flatten(1).argmax(1) % w - w // 2
        assert int(dx.abs().max()) == shift_px(cfg, cell_px)


def _two_class_case(learnable: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 216, 72, generator=g) * 0.1
    y = torch.arange(24) % 2
    if learnable:  # class 1 carries a bright pin in cell (col 1, row 4)
        x[y == 1, :, 96:120, 24:48] += 2.0
    else:  # labels drawn independently of the images: nothing to fit in a few epochs
        y = torch.randperm(24, generator=g) % 2
    return x, y, torch.where(y == 1, torch.tensor(13), torch.tensor(-1))


def test_early_stop_cannot_fire_before_the_training_set_is_fitted():
    arch = TINY["arch"]
    base = dict(epochs=6, batch_size=8, min_epochs=1, patience=1, progress_bar=False, threads=1)
    x, y, cells = _two_class_case(learnable=False)
    torch.manual_seed(0)
    free = train_model(build_model("vit_grid", GRID, 2, arch=arch), x, y, cells, np.arange(16, 24),
                       TrainConfig(**base, fit_acc=0.0), 0, (9, 3), (9, 3))
    assert free.stopped_epoch < 6  # without the fit rule a patience of one ends it early
    torch.manual_seed(0)
    held = train_model(build_model("vit_grid", GRID, 2, arch=arch), x, y, cells, np.arange(16, 24),
                       TrainConfig(**base), 0, (9, 3), (9, 3))
    assert held.stopped_epoch == 6 and all(r["fit_acc"] < 0.98 for r in held.history)
    assert "without fitting the training set" in held.stop_reason and "never fitted" in held.stop_reason
    x, y, cells = _two_class_case(learnable=True)
    torch.manual_seed(0)
    fitted = train_model(build_model("vit_grid", GRID, 2, arch=arch), x, y, cells, np.arange(16, 24),
                         TrainConfig(**{**base, "epochs": 30}, lr=3e-3), 0, (9, 3), (9, 3))
    assert fitted.stopped_epoch < 30 and fitted.history[fitted.stopped_epoch - 1]["fit_acc"] >= 0.98
    assert fitted.fit_acc >= 0.98 and fitted.stop_reason.startswith("early stop")  # the kept model fits too


def test_validation_split_holds_every_class_when_it_can():
    from station.core.engines.vit_engine import stratified_split

    y = np.repeat(np.arange(4), [20, 20, 2, 1])
    val = stratified_split(y, 0.15, 0)
    assert [int((y[val] == c).sum()) for c in range(4)] == [3, 3, 1, 0]  # the single image stays in training
    assert [int((y[stratified_split(y, 0.15, 0, min_class=3)] == c).sum()) for c in range(4)] == [3, 3, 0, 0]


def test_fit_report_says_what_was_kept_and_why_it_stopped(crops):
    # no "epochs": the data rule plans the run, here shrunk to two epochs
    engine = engine_class("vit")(GRID, {**TINY, "train": {**TINY["train"], "base_epochs": 2, "min_steps": 1}})
    lines = []
    info = engine.fit(crops, seed=0, progress=lambda message, fraction: lines.append(message)).info
    # the workbench's training view reads "epoch E/N loss L acc A val_acc V" from the front of each line
    assert all(re.match(r"epoch \d+/2 loss [\d.]+ acc [\d.]+ val_acc [\d.]+ ", line) for line in lines)
    assert info["kept_epoch"] == info["best_epoch"] in (1, 2)
    assert 0 <= info["train_accuracy"] <= 1 and 0 <= info["val_accuracy"] <= 1
    assert info["stop_reason"].startswith("reached the last planned epoch (2)")
    assert f"kept epoch {info['kept_epoch']}" in info["stop_reason"]
    assert info["schedule"]["from_data"] and info["schedule"]["epochs"] == 2
    assert info["n_val_per_class"] == {"good": 1, "missing": 1, "pushed": 1, "tilted": 1}
    json.dumps(info)  # it goes into the recipe's provenance


def test_recipe_saved_before_the_data_defaults_keeps_its_behaviour(vit_recipe, synthetic_data, tmp_path):
    from station.core.imageio import read_image
    from station.core.vit.train import plan_schedule

    recipe = Recipe.load(vit_recipe)
    assert recipe.engine.config["train_defaults"] == "data" and recipe.engine.config["tta"] is False
    # the config of a recipe written by the former code: "tta" and "epochs" held, "train_defaults" unknown
    old = {**recipe.doc.engine.config, "tta": True, "epochs": 100, "train": {}}
    old.pop("train_defaults")
    recipe.doc.engine.config.clear()
    recipe.doc.engine.config.update(old)
    engine = Recipe.load(recipe.save(tmp_path / "old")).engine
    assert engine.config["train_defaults"] == "fixed" and engine.config["tta"] is True
    cfg = TrainConfig.from_dict(engine.train_settings())
    assert (cfg.hflip, cfg.max_shift, cfg.fit_acc) == (0.5, 3, 0.0)
    plan = plan_schedule(cfg, 68)
    assert (plan.epochs, plan.min_epochs, plan.patience, plan.warmup_epochs) == (100, 40, 30, 3)
    sample = load_dataset(synthetic_data, "test").samples[-1]
    crop = Inspector(Recipe.load(vit_recipe)).inspect(read_image(sample.path)).registered.crop
    probs = engine._forward(crop[None], maps=False)[0]
    mirrored = (engine.model(engine._input(crop[None])).softmax(-1) + engine.model(
        engine._input(crop[None]).flip(-1)).softmax(-1)).detach().numpy() / 2
    assert np.allclose(probs, mirrored, atol=1e-5)  # the mirrored view still takes part at inference
