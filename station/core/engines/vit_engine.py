"""The ViT engine (DESIGN §2.1): a grid-aligned timm ViT trained on the station's own images; it names
the defect class and, through its attention, shows the pin it looked at."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from station.core.engines.base import Capabilities, Engine, EngineOutput, FitReport, Progress, TrainingSet
from station.core.engines.settings import ViTSettings
from station.core.errors import EngineError
from station.core.grid import CellGrid

ATTENTION_KINDS = ("cls", "rollout")

#: what the training settings a config leaves unset mean: "data" follows the data set (the schedule from
#: its size, the shift from the cell size, no mirror; `station.core.vit.train.plan_schedule`), "fixed" is
#: the fixed set of the recipes written before (issue 14), kept so that their config still means what it did
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {},
    "fixed": {"epochs": 100, "patience": 30, "min_epochs": 40, "warmup_epochs": 3, "checkpoint_every": 5,
              "max_shift": 3, "hflip": 0.5, "fit_acc": 0.0},
}
# the smallest class that gives the validation split an image: "data" leaves one for training and
# validates the other, "fixed" validated classes of three or more
SPLIT_MIN_CLASS = {"data": 2, "fixed": 3}


class ViTEngine(Engine):
    name = "vit"
    kind = "classifier"
    settings_model = ViTSettings
    capabilities = Capabilities(trainable=True, names_classes=True, cell_scale="share", map_name="ViT attention", summary="ViT: trains for minutes; curves and attention strip below")
    # a recipe saved before issue 14 holds "epochs" and "tta" but not "train_defaults": it was trained with
    # the fixed defaults (100 epochs, mirror, 3 px shift)
    saved_before = {"train_defaults": "fixed"}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "model": "vit_grid", "inputs": "rgb+soart",
            "arch": {"embed_dim": 96, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
            "attention": "cls",  # which map becomes cell_scores: last-layer CLS attention or rollout
            "maps": True,  # compute the attention map at inference (the fused path when False)
            "rollout": False,  # also compute attention rollout (all layers unfused) into extra
            # epochs None: planned from the number of training images (TrainConfig, plan_schedule)
            "epochs": None, "val_frac": 0.15, "train": {},  # TrainConfig overrides, e.g. {"lr": 5e-4}
            "train_defaults": "data",  # what the unset training settings mean (TRAIN_DEFAULTS)
            "tta": False,  # average the crop and its mirror image at inference (for a model trained with hflip)
            "review_floor": 0.1, "ng": 0.5,
            "classes": [],
        }

    def __init__(self, grid: CellGrid, config: dict[str, Any] | None = None) -> None:
        super().__init__(grid, config)
        from station.core.vit.inputs import in_channels
        from station.core.vit.model import MODELS

        if self.config["model"] not in MODELS:
            raise EngineError(f"unknown ViT model {self.config['model']!r}; known: {', '.join(sorted(MODELS))}")
        if self.config["attention"] not in ATTENTION_KINDS:
            raise EngineError(f"attention must be one of {ATTENTION_KINDS}, not {self.config['attention']!r}")
        in_channels(self.config["inputs"])
        if self.config["train_defaults"] not in TRAIN_DEFAULTS:
            raise EngineError(f"train_defaults must be one of {sorted(TRAIN_DEFAULTS)}, "
                              f"not {self.config['train_defaults']!r}")
        self.model = None
        self.soart = None
        self._device = _torch_device()

    # -- building --------------------------------------------------------------------------
    def _build(self, n_classes: int):
        from station.core.vit.inputs import in_channels
        from station.core.vit.model import build_model

        return build_model(self.config["model"], self.grid, n_classes, in_channels(self.config["inputs"]),
                           self.config["arch"])

    def _input(self, crops: np.ndarray):
        from station.core.vit.inputs import to_input

        return to_input(crops, self.grid, self.soart)

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    # -- Engine ----------------------------------------------------------------------------
    def fit(self, data: TrainingSet, seed: int = 0, progress: Progress | None = None) -> FitReport:
        import torch

        from station.core.verdict import calibrate_thresholds
        from station.core.vit.inputs import SoartStandard
        from station.core.vit.model import load_pretrained, patch_grid
        from station.core.vit.train import TrainConfig, draw_curves, draw_strip, train_model

        classes = data.classes
        if len(classes) < 2 or data.ok_class not in classes:
            raise EngineError(f"the ViT engine needs '{data.ok_class}' images and at least one defect class; "
                              f"got {classes}")
        y = np.array([classes.index(lab) for lab in data.labels])
        cells = np.array([-1 if c is None else self.grid.index(*c) for c in data.cells])
        defaults = self.config["train_defaults"]
        val_idx = stratified_split(y, float(self.config["val_frac"]), seed, SPLIT_MIN_CLASS[defaults])
        train_mask = np.ones(len(y), bool)
        train_mask[val_idx] = False
        self.config["classes"] = classes
        if self.config["inputs"] == "rgb+soart":
            good_train = data.crops[(y == 0) & train_mask]
            self.soart = SoartStandard.fit(good_train, self.grid)
        torch.manual_seed(seed)
        self.model = self._build(len(classes))
        info: dict[str, Any] = {}
        if self.config.get("pretrained"):
            info.update(load_pretrained(self.model, str(self.config["pretrained"])))
        x = self._input(data.crops)
        cfg = TrainConfig.from_dict(self.train_settings())
        train_dir = Path(self.config["train_dir"]) if self.config.get("train_dir") else None
        defects = [int(i) for i in val_idx if y[i] != 0 and cells[i] >= 0]
        probe = defects[0] if defects else int(val_idx[0]) if len(val_idx) else 0
        fingerprint = {"data": hashlib.sha256(data.crops.tobytes()).hexdigest()[:16], "labels": hashlib.sha256(y.tobytes()).hexdigest()[:16],
                       "config": {k: v for k, v in self.config.items() if k != "train_dir"}}
        result = train_model(self.model, x, torch.from_numpy(y), torch.from_numpy(cells), val_idx, cfg, seed,
                             patch_grid(self.model), (self.grid.rows, self.grid.cols), train_dir, fingerprint,
                             probe, progress)
        self.model.eval().to(self._device)
        # thresholds on score = 1 - p(ok) from the held-out validation images
        val_scores = 1.0 - result.val_probs[:, 0]
        val_good, val_def = val_scores[y[val_idx] == 0], val_scores[y[val_idx] != 0]
        ng = float(self.config["ng"])
        review = float(np.clip(max(calibrate_thresholds(val_good, val_def)[0], float(self.config["review_floor"])),
                               0.0, ng))
        val_acc = float((result.val_probs.argmax(1) == y[val_idx]).mean()) if len(val_idx) else None
        if train_dir is not None:
            import json

            (train_dir / "curves.json").write_text(json.dumps(result.history, indent=1))
            draw_curves(result.history, train_dir / "curves.png", result.best_epoch)
            if result.probe_maps:
                draw_strip(data.crops[probe], result.probe_maps, train_dir / "attention_strip.png")
        info.update({
            "device": result.device, "world_size": result.world_size, "train_seconds": round(result.seconds, 1),
            "epochs_run": result.stopped_epoch, "best_epoch": result.best_epoch, "resumed_from": result.resumed_from,
            "kept_epoch": result.best_epoch, "train_accuracy": result.fit_acc, "stop_reason": result.stop_reason,
            "schedule": result.schedule, "n_train_images": int(train_mask.sum()), "n_val": int(len(val_idx)),
            "n_val_per_class": {c: int((y[val_idx] == i).sum()) for i, c in enumerate(classes)},
            "val_accuracy": val_acc,
            "val_good_score_max": float(val_good.max()) if val_good.size else None,
            "val_defect_score_min": float(val_def.min()) if val_def.size else None,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "history_tail": result.history[-1] if result.history else None,
        })
        return FitReport((review, ng), info)

    def train_settings(self) -> dict[str, Any]:
        """The TrainConfig values of this config: the defaults it names, the engine's "epochs", then "train"."""
        settings = dict(TRAIN_DEFAULTS[self.config["train_defaults"]])
        if self.config["epochs"] is not None:
            settings["epochs"] = int(self.config["epochs"])
        return {**settings, **self.config["train"]}

    def _forward(self, crops: np.ndarray, maps: bool):
        """Class probabilities (B, C) and, when asked, cell maps {kind: (B, rows, cols)}."""
        import torch

        from station.core.vit.attention import AttentionRecorder, cls_attention, rollout, to_cells
        from station.core.vit.model import patch_grid

        if self.model is None:
            raise EngineError("the ViT engine has not been fitted or loaded")
        x = self._input(crops).to(self._device)
        n = len(x)
        tta = bool(self.config["tta"])
        if tta:  # the mirrored crop as a second view, as in training; both in one batch
            x = torch.cat([x, x.flip(-1)])
        cuda = self._device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self._device.type, enabled=cuda):
            if not maps:
                probs = self.model(x).float().softmax(-1)
                return _merge_views(probs, n, tta).cpu().numpy(), {}
            # rollout needs every layer's matrix; the CLS map only the last, so the others stay fused
            want_rollout = self.config["attention"] == "rollout" or bool(self.config["rollout"])
            with AttentionRecorder(self.model, layers=None if want_rollout else [-1]) as rec:
                probs = _merge_views(self.model(x).float().softmax(-1), n, tta).cpu().numpy()
            attns = [a.float() for a in rec.maps]
            pg, shape = patch_grid(self.model), (self.grid.rows, self.grid.cols)
            out = {"cls": to_cells(cls_attention(attns[-1]), pg, shape)}
            if want_rollout:
                out["rollout"] = to_cells(rollout(attns), pg, shape)
            if tta:  # mirror the second view's maps back before averaging
                out = {k: (v[:n] + v[n:].flip(-1)) / 2 for k, v in out.items()}
            return probs, {k: v.cpu().numpy() for k, v in out.items()}

    def infer_batch(self, crops: np.ndarray, maps: bool | None = None) -> list[EngineOutput]:
        maps = bool(self.config["maps"]) if maps is None else maps
        probs, cell_maps = self._forward(np.asarray(crops), maps)
        outs = []
        for i, p in enumerate(probs):
            cls_probs = {c: float(v) for c, v in zip(self.classes, p)}
            if maps:
                cell = cell_maps[self.config["attention"]][i]
                extra = {f"attention_{k}": v[i] for k, v in cell_maps.items()}
            else:  # no map asked for: the cells carry no localisation
                cell, extra = np.zeros((self.grid.rows, self.grid.cols)), {}
            outs.append(EngineOutput(1.0 - float(p[0]), cell, cls_probs, extra))
        return outs

    def infer(self, crop: np.ndarray) -> EngineOutput:
        return self.infer_batch(np.asarray(crop)[None])[0]

    def arrays(self) -> dict[str, np.ndarray]:
        if self.model is None:
            raise EngineError("the ViT engine has not been fitted")
        out = {f"model.{k}": v.detach().float().cpu().numpy() for k, v in self.model.state_dict().items()}
        if self.soart is not None:
            out.update(self.soart.arrays())
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        from station.core.vit.inputs import SoartStandard

        if len(self.classes) < 2:
            raise EngineError("ViT settings name no classes; the recipe was not written by a trained ViT engine")
        model = self._build(len(self.classes))
        own = model.state_dict()
        given = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        missing = sorted(set(own) - set(given))
        if missing:
            raise EngineError(f"ViT weights are missing {len(missing)} tensor(s), e.g. {missing[0]!r}")
        unexpected = sorted(set(given) - set(own))
        if unexpected:
            raise EngineError(f"ViT weights hold unknown tensor(s), e.g. {unexpected[0]!r}; they are for another "
                              "model")
        for k, v in given.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise EngineError(f"ViT weight {k!r} has shape {tuple(v.shape)}, the model needs "
                                  f"{tuple(own[k].shape)} (weights of another model, grid or class list)")
            if not np.all(np.isfinite(v)):
                raise EngineError(f"ViT weight {k!r} holds NaN or infinite values")
        model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in given.items()})
        model.eval().to(self._device)
        self.soart = SoartStandard.from_arrays(arrays, self.grid) if self.config["inputs"] == "rgb+soart" else None
        self.model = model

    @property
    def device(self) -> str:
        return str(self._device)


def _torch_device():
    from station.core.vit.train import pick_device

    return pick_device()


def _merge_views(probs, n: int, tta: bool):
    return (probs[:n] + probs[n:]) / 2 if tta else probs


def stratified_split(y: np.ndarray, frac: float, seed: int, min_class: int = 2) -> np.ndarray:
    """Indices of a seeded validation split with about `frac` of every class: at least one image of a class
    that has `min_class` or more (a dozen validation images must still see every class), and never a
    class's last image (it could not be learned)."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = int(round(frac * len(idx)))
        if frac > 0 and len(idx) >= min_class:
            n = max(n, 1)
        n = min(n, len(idx) - 1)
        val.extend(rng.permutation(idx)[:n].tolist())
    return np.sort(np.array(val, dtype=int))
