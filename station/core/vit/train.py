"""The ViT training loop: AdamW, augmentation for registered crops, a schedule that follows the size of
the data set, a validation split with an early stop that waits for the training set to be fitted,
resumable safetensors checkpoints, curves as PNG and JSON, and the attention-over-training strip.

One code path for every device: CPU (deterministic for a seed), CUDA with mixed precision, and
DDP when launched by `torchrun` (WORLD_SIZE > 1: gloo on the CPU, nccl on CUDA).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from station.core.engines.base import TrainingEvent, report_epoch
from station.core.errors import EngineError
from station.core.vit.attention import AttentionRecorder, cls_attention, overlay, to_cells

STATE_FILE = "state.json"


@dataclass
class TrainConfig:
    """Training settings. A setting left at None follows the data (see `plan_schedule` and `shift_px`);
    a value set by the user always wins."""

    epochs: int | None = None  # the hard cap and the length of the learning-rate decay; None: from the data
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int | None = None  # None: 3% of the epochs
    patience: int | None = None  # epochs without a better kept model before stopping; None: 30% of the epochs
    min_epochs: int | None = None  # no early stop before this epoch; None: 40% of the epochs
    min_steps: int = 2000  # optimizer steps that even a small data set gets (when epochs is None)
    base_epochs: int = 100  # the epochs of a data set large enough that min_steps asks for fewer
    max_epochs: int = 1000  # the most epochs the data rule plans, so a run always ends
    fit_acc: float = 0.98  # no early stop, and no kept model, while accuracy on un-augmented training images is below
    fit_sample: int = 512  # training images that measure that accuracy (all of them when fewer): a bounded cost
    max_shift: int | None = None  # px, random translation: what registration leaves of misalignment; None: shift_frac
    shift_frac: float = 0.125  # of the cell size (3 px of a 24 px cell), at least 1 px
    hflip: float = 0.0  # chance of a left-right mirror (input and labelled cell together); off: it swaps pins
    jitter: float = 0.15  # brightness / contrast, in normalised units
    noise: float = 0.03
    attn_loss: float = 0.5  # weight of the loss that puts the last-layer CLS attention on the labelled cell
    token_loss: float = 1.0  # weight of the per-token class loss (every cell good but the labelled one)
    label_smoothing: float = 0.05
    checkpoint_every: int | None = None  # epochs; None: about 20 checkpoints a run
    keep_checkpoints: int = 3  # older checkpoint files are deleted (the strip's maps live in state.json)
    progress_bar: bool = True
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default (1 is fastest on a busy 2-core PC)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Schedule:
    """The epochs of one run, resolved from `TrainConfig` and the size of the training set."""

    epochs: int
    min_epochs: int
    patience: int
    warmup_epochs: int
    checkpoint_every: int
    steps_per_epoch: int
    from_data: bool  # the epochs came from the data rule, not from the user

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_schedule(cfg: TrainConfig, n_train: int, world: int = 1) -> Schedule:
    """The schedule for `n_train` training images on `world` processes.

    With s = ceil(n_train / (world * batch_size)) optimizer steps an epoch, the planned epochs are
    E = min(max(base_epochs, ceil(min_steps / s)), max_epochs): a large set gets base_epochs (1632 images:
    51 steps an epoch, 100 epochs, as before), a small one at least min_steps optimizer steps (68 images:
    3 steps an epoch, 667 epochs), where a fixed 100 epochs would give it 300 steps and stop it half
    fitted. E is the hard cap and the length of the cosine decay. Early stop is allowed from
    min_epochs = ceil(0.4 E), after patience = ceil(0.3 E) epochs without a better kept model, with a
    warm-up of ceil(0.03 E) epochs: the 40 / 30 / 3 of the former fixed 100 epochs, in proportion.
    Whatever the user set (epochs, min_epochs, patience, warmup_epochs, checkpoint_every) is kept;
    the proportions then follow the user's epochs.
    """
    steps = max(1, math.ceil(n_train / max(world, 1) / cfg.batch_size))
    from_data = cfg.epochs is None
    epochs = (min(max(cfg.base_epochs, math.ceil(cfg.min_steps / steps)), cfg.max_epochs) if from_data
              else int(cfg.epochs))
    epochs = max(epochs, 1)

    def part(value: int | None, frac: float) -> int:
        return int(value) if value is not None else max(1, math.ceil(frac * epochs))

    return Schedule(epochs, part(cfg.min_epochs, 0.4), part(cfg.patience, 0.3), part(cfg.warmup_epochs, 0.03),
                    part(cfg.checkpoint_every, 0.05), steps, from_data)


def shift_px(cfg: TrainConfig, cell_px: int) -> int:
    """The random shift of the augmentation: the setting, else a fraction of the cell (at least 1 px), so
    that a product with larger cells is moved as far, relative to its pins, as the reference connector."""
    if cfg.max_shift is not None:
        return int(cfg.max_shift)
    return max(1, int(round(cfg.shift_frac * cell_px)))


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    stopped_epoch: int
    val_probs: np.ndarray  # (n_val, n_classes) of the best model
    seconds: float
    device: str
    world_size: int
    resumed_from: int | None = None
    probe_maps: list[tuple[int, np.ndarray]] = field(default_factory=list)
    stop_reason: str = ""
    fit_acc: float | None = None  # accuracy on un-augmented training images of the kept model
    schedule: dict[str, Any] = field(default_factory=dict)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def _dist_setup(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def augment(x: torch.Tensor, g: torch.Generator, cfg: TrainConfig, cells: torch.Tensor | None = None,
            cols: int = 1, cell_px: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image random shift (edge-replicated; `shift_px` of the cell size, which is the crop's width over
    `cols` unless given), brightness/contrast of the RGB channels, and noise. The left-right mirror is off
    by default: on a product whose pins differ left and right it shows parts that cannot occur and
    changes which pin is which; where it is set, the labelled cell is mirrored with the input (the SOART
    channels were computed before, so they mirror as the deviation they describe). No rotations or
    up-down flips: the camera looks at the pins at an angle, so those would show parts that cannot occur."""
    b, _, h, w = x.shape
    if cfg.hflip > 0:
        flip = torch.rand(b, generator=g) < cfg.hflip
        if bool(flip.any()):
            x = x.clone()
            x[flip] = x[flip].flip(-1)
            if cells is not None:
                row, col = cells // cols, cells % cols
                cells = torch.where(flip & (cells >= 0), row * cols + (cols - 1 - col), cells)
    s = shift_px(cfg, cell_px if cell_px else w // max(cols, 1))
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dy = torch.randint(0, 2 * s + 1, (b,), generator=g)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=g)
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    rgb = x[:, :3]
    if cfg.jitter > 0:
        a = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * cfg.jitter
        c = (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * cfg.jitter
        rgb = rgb * a + c
    if cfg.noise > 0:
        rgb = rgb + torch.randn((b, 3, h, w), generator=g) * cfg.noise
    x = torch.cat([rgb, x[:, 3:]], dim=1)
    return x, cells


def _lr_at(epoch_f: float, cfg: TrainConfig, plan: Schedule) -> float:
    """Linear warm-up, then cosine decay to 5% over the planned epochs."""
    if epoch_f < plan.warmup_epochs:
        return cfg.lr * (epoch_f + 1e-3) / plan.warmup_epochs
    t = (epoch_f - plan.warmup_epochs) / max(plan.epochs - plan.warmup_epochs, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _attention_nll(attn: torch.Tensor, cells: torch.Tensor, patch_grid, grid_shape) -> torch.Tensor:
    """-log of the CLS attention mass on the labelled cell, for images whose cell is known."""
    known = cells >= 0
    if not bool(known.any()):
        return attn.new_zeros(())
    cell_map = to_cells(cls_attention(attn[known]), patch_grid, grid_shape).flatten(1)
    picked = cell_map.gather(1, cells[known][:, None]).squeeze(1)
    return -(picked.clamp(min=1e-6).log()).mean()


def token_targets(y: torch.Tensor, cells: torch.Tensor, patch_grid, grid_shape, ok: int = 0) -> torch.Tensor:
    """(B, n_patches) class of each patch token: the OK class, the image's class on the patches of its
    labelled cell, and -100 (ignored) for defect images whose cell is unknown."""
    pr, pc = patch_grid
    rows, cols = grid_shape
    r = torch.arange(pr)[:, None] // (pr // rows)
    c = torch.arange(pc)[None, :] // (pc // cols)
    patch_cell = (r * cols + c).flatten().to(y.device)  # (n_patches,)
    target = torch.full((len(y), pr * pc), ok, dtype=torch.long, device=y.device)
    hit = patch_cell[None, :] == cells[:, None]
    target = torch.where(hit, y[:, None], target)
    unknown = (y != ok) & (cells < 0)
    target[unknown] = -100
    return target


def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 128) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for i in range(0, len(x), batch):
            out.append(model(x[i:i + batch].to(device)).float().softmax(-1).cpu())
    return torch.cat(out)


def probe_map(model: nn.Module, x: torch.Tensor, device, patch_grid, grid_shape) -> np.ndarray:
    model.eval()
    with torch.no_grad(), AttentionRecorder(model, layers=[-1]) as rec:
        model(x[None].to(device))
    return to_cells(cls_attention(rec.maps[-1].float()), patch_grid, grid_shape)[0].cpu().numpy()


# -- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(folder: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                    best: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 3) -> None:
    """Weights, optimiser moments and the best weights so far as safetensors; counters as JSON.
    Written to temporary names first, so an interrupted save never leaves a broken checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.cpu().contiguous() for k, v in best.items()})
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().reshape(-1 if k == "step" else v.shape)
    name = f"ckpt_{epoch:04d}.safetensors"
    tmp = folder / (name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / name)
    tmp_state = folder / (STATE_FILE + ".tmp")
    tmp_state.write_text(json.dumps({**state, "epoch": epoch, "checkpoint": name}, indent=1))
    os.replace(tmp_state, folder / STATE_FILE)
    for old in sorted(folder.glob("ckpt_*.safetensors"))[:-max(keep, 1)]:
        old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    fingerprint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """Resume from `folder` when its state matches this run (same data, model and seed)."""
    state_path = folder / STATE_FILE
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") != fingerprint:
            return None
        tensors = load_file(str(folder / state["checkpoint"]))
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"cannot resume from {folder}: {exc}; delete the folder to start afresh") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    opt_state = opt.state_dict()
    for pid in (p for group in opt_state["param_groups"] for p in group["params"]):
        moments = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{pid}.")}
        if moments:
            moments["step"] = moments["step"].reshape(())
            opt_state["state"][pid] = moments
    opt.load_state_dict(opt_state)
    return state, best


# -- the loop ------------------------------------------------------------------------------------
def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cells: torch.Tensor, val_idx: np.ndarray,
                cfg: TrainConfig, seed: int, patch_grid: tuple[int, int], grid_shape: tuple[int, int],
                train_dir: Path | None = None, fingerprint: dict[str, Any] | None = None,
                probe: int | None = None, progress: Callable[[str, float], None] | None = None) -> TrainResult:
    """Train in place; the model ends holding the weights of the best validation epoch.

    x (N, C, H, W) float, y (N,) class index, cells (N,) labelled cell index or -1.
    """
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(model, x, y, cells, val_idx, cfg, seed, patch_grid, grid_shape, train_dir, fingerprint, probe,
                      progress, t0)
    finally:
        torch.set_num_threads(threads)


def _train(model, x, y, cells, val_idx, cfg, seed, patch_grid, grid_shape, train_dir, fingerprint, probe, progress,
           t0) -> TrainResult:
    device = pick_device()
    rank, world = _dist_setup(device)
    amp = device.type == "cuda"
    model.to(device)
    from station.core.vit.model import WithTokenHead

    net: nn.Module = WithTokenHead(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    train_idx = np.setdiff1d(np.arange(len(x)), val_idx)
    x_val, y_val = x[val_idx], y[val_idx]
    plan = plan_schedule(cfg, len(train_idx), world)
    cell_px = x.shape[-1] // grid_shape[1]
    # the fit is measured on the same training images every epoch (every rank the same ones)
    fit_idx = train_idx if len(train_idx) <= cfg.fit_sample else np.sort(
        np.random.default_rng(seed).choice(train_idx, cfg.fit_sample, replace=False))
    x_fit, y_fit = x[fit_idx], y[fit_idx]
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    last_attn = AttentionRecorder(model, layers=[-1]) if cfg.attn_loss > 0 else None

    history: list[dict[str, float]] = []
    # the kept model: fitted to its training set first, then the best validation accuracy, then loss; so a
    # lucky early epoch on a validation split of a dozen images is not kept over a model that learned
    best_key: tuple | None = None
    best_epoch, start = 0, 0
    best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    probe_maps: list[tuple[int, np.ndarray]] = []
    resumed = None
    fingerprint = {**(fingerprint or {}), "seed": seed, "world": world, "n": len(x), "schedule": plan.as_dict()}
    if train_dir is not None:
        loaded = load_checkpoint(train_dir, model, opt, fingerprint)
        if loaded is not None:
            state, best = loaded
            start = resumed = int(state["epoch"])
            history = state["history"]
            best_key, best_epoch = tuple(state["best_key"]), int(state["best_epoch"])
            best_state = best or best_state
            probe_maps = [(e, np.array(m, dtype=np.float32)) for e, m in state.get("probe_maps", [])]

    steps = plan.steps_per_epoch
    bar = None
    if cfg.progress_bar and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=plan.epochs, initial=start, desc=f"ViT on {device.type}", unit="epoch", file=sys.stderr,
                   dynamic_ncols=True)
    stopped, stop = start, "" if start < plan.epochs else "resumed"
    try:
        for epoch in range(start, plan.epochs):
            # every rank draws the same permutation, then takes its own shard (DistributedSampler's idea);
            # generators seeded per epoch make a resumed run the same as an uninterrupted one
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
            order = np.resize(order, steps * world * cfg.batch_size)[: steps * world * cfg.batch_size]
            mine = order[rank::world]
            g_aug = torch.Generator().manual_seed(seed * 100_003 + epoch * 7919 + rank + 1)
            net.train()
            tot_loss, tot_ok, tot_n = 0.0, 0, 0
            for s in range(steps):
                idx = torch.from_numpy(mine[s * cfg.batch_size:(s + 1) * cfg.batch_size])
                xb, cb = augment(x[idx], g_aug, cfg, cells[idx], grid_shape[1], cell_px)
                xb, yb, cb = xb.to(device), y[idx].to(device), cb.to(device)
                for group in opt.param_groups:
                    group["lr"] = _lr_at(epoch + s / steps, cfg, plan)
                with torch.autocast(device.type, enabled=amp):
                    if last_attn is not None:
                        with last_attn:
                            logits, tok_logits = net(xb)
                        attn = last_attn.maps[-1].float()
                        last_attn.clear()
                    else:
                        logits, tok_logits = net(xb)
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
                    if cfg.token_loss > 0:
                        tt = token_targets(yb, cb, patch_grid, grid_shape)
                        if bool((tt >= 0).any()):
                            loss = loss + cfg.token_loss * F.cross_entropy(tok_logits.float().flatten(0, 1),
                                                                           tt.flatten(), ignore_index=-100)
                    if last_attn is not None:
                        loss = loss + cfg.attn_loss * _attention_nll(attn, cb, patch_grid, grid_shape)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                tot_loss += float(loss.detach()) * len(idx)
                tot_ok += int((logits.argmax(-1) == yb).sum())
                tot_n += len(idx)
            probs = predict(model, x_val, device)
            val_loss = float(F.nll_loss(probs.clamp(min=1e-7).log(), y_val))
            val_acc = float((probs.argmax(-1) == y_val).float().mean()) if len(y_val) else 0.0
            # the accuracy on augmented batches lags the weights and mixes in shifted, noisy views; whether
            # the model has learned its training set is asked of the plain images
            fit_acc = float((predict(model, x_fit, device).argmax(-1) == y_fit).float().mean())
            fitted = fit_acc >= cfg.fit_acc
            row = {"epoch": epoch + 1, "loss": tot_loss / tot_n, "acc": tot_ok / tot_n, "fit_acc": fit_acc,
                   "val_loss": val_loss, "val_acc": val_acc, "lr": _lr_at(epoch + 1, cfg, plan)}
            history.append(row)
            key = (fitted, val_acc, -val_loss)
            if best_key is None or key > best_key:
                best_key, best_epoch = key, epoch + 1
                best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
            stopped = epoch + 1
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", fit=f"{fit_acc:.3f}", val_acc=f"{val_acc:.3f}")
                bar.update(1)
            if rank == 0:  # one structured event per epoch (the training view plots it) and its line
                metrics = {"loss": float(row["loss"]), "acc": float(row["acc"]), "val_acc": float(val_acc),
                           "train_acc": float(fit_acc)}
                report_epoch(progress, TrainingEvent(epoch + 1, plan.epochs, metrics), (epoch + 1) / plan.epochs)
            # no early stop before min_epochs, nor while the training set is not fitted; the cap always ends it
            stop = ("cap" if epoch + 1 >= plan.epochs else
                    "patience" if fitted and epoch + 1 >= plan.min_epochs and epoch + 1 - best_epoch >= plan.patience
                    else "")
            if (epoch + 1) % plan.checkpoint_every == 0 or stop:
                if probe is not None:
                    probe_maps.append((epoch + 1, probe_map(model, x[probe], device, patch_grid, grid_shape)))
                if train_dir is not None and rank == 0:
                    save_checkpoint(train_dir, epoch + 1, model, opt, best_state, {
                        "fingerprint": fingerprint, "history": history, "best_key": list(best_key),
                        "best_epoch": best_epoch,
                        "probe_maps": [(e, m.tolist()) for e, m in probe_maps]}, cfg.keep_checkpoints)
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(best_state)
    val_probs = predict(model, x_val, device).numpy()
    model.to("cpu")
    kept = next((r for r in history if r["epoch"] == best_epoch), None)
    kept_fit = kept.get("fit_acc") if kept else None
    return TrainResult(history, best_epoch, stopped, val_probs, time.perf_counter() - t0, str(device), world,
                       resumed, probe_maps, stop_reason(stop, history, best_epoch, plan, cfg), kept_fit,
                       plan.as_dict())


def stop_reason(stop: str, history: list[dict[str, float]], best_epoch: int, plan: Schedule,
                cfg: TrainConfig) -> str:
    """Why the run ended and what was kept, in words for the fit report."""
    if stop == "resumed" or not history:
        return f"the checkpoint had already reached the last epoch ({plan.epochs}); kept epoch {best_epoch}"
    last = history[-1]
    kept = next((r for r in history if r["epoch"] == best_epoch), last)
    if stop == "patience":
        why = f"early stop at epoch {last['epoch']}: no better validation result in {plan.patience} epochs"
        why += (f", the training set fitted (train accuracy {last['fit_acc']:.3f} >= {cfg.fit_acc})" if cfg.fit_acc > 0
                else f" (train accuracy {last['fit_acc']:.3f}; fit_acc 0: the fit was not waited for)")
    else:
        why = f"reached the last planned epoch ({plan.epochs})"
        if last["fit_acc"] < cfg.fit_acc:
            why += (f" without fitting the training set (train accuracy {last['fit_acc']:.3f} < {cfg.fit_acc}): "
                    "more epochs, more images or a smaller model may help")
    unfitted = "" if kept["fit_acc"] >= cfg.fit_acc else ", the best validation epoch of a model that never fitted"
    return (f"{why}; kept epoch {best_epoch}{unfitted}: train accuracy {kept['fit_acc']:.3f}, "
            f"validation accuracy {kept['val_acc']:.3f}")


# -- pictures ------------------------------------------------------------------------------------
def draw_curves(history: list[dict[str, float]], path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy over epochs (train solid, validation light), drawn with OpenCV: two panels."""
    w, h, pad = 520, 220, 36
    canvas = np.full((2 * h, w, 3), 255, np.uint8)
    epochs = [r["epoch"] for r in history]
    if not epochs:
        return
    panels = [("loss", ["loss", "val_loss"]), ("accuracy", ["acc", "val_acc"])]
    colours = [(200, 60, 20), (20, 140, 240)]  # BGR: train blue, validation orange
    for p, (title, keys) in enumerate(panels):
        top = p * h
        vals = [v for k in keys for v in (r[k] for r in history)]
        lo, hi = (0.0, 1.0) if title == "accuracy" else (0.0, max(vals) * 1.05 or 1.0)
        x0, x1, y0, y1 = pad, w - 10, top + h - pad + 10, top + 22

        def px(e, v):
            fx = (e - 1) / max(epochs[-1] - 1, 1)
            fy = (v - lo) / (hi - lo)
            return int(x0 + fx * (x1 - x0)), int(y0 + fy * (y1 - y0))

        cv2.rectangle(canvas, (x0, y1), (x1, y0), (180, 180, 180), 1)
        cv2.putText(canvas, f"{title}  (train blue, validation orange)", (x0, top + 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, f"{hi:.2f}", (2, y1 + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, f"{lo:.2f}", (2, y0), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for k, colour in zip(keys, colours):
            pts = np.array([px(r["epoch"], r[k]) for r in history], np.int32)
            cv2.polylines(canvas, [pts], False, colour, 2, cv2.LINE_AA)
        if best_epoch:
            bx = px(best_epoch, lo)[0]
            cv2.line(canvas, (bx, y1), (bx, y0), (0, 160, 0), 1)
    cv2.putText(canvas, f"epochs 1..{epochs[-1]}, best {best_epoch}", (pad, 2 * h - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)


def draw_strip(crop: np.ndarray, maps: list[tuple[int, np.ndarray]], path: Path, scale: int = 2,
               max_tiles: int = 12) -> None:
    """The probe crop under the attention map of each checkpoint, side by side, epoch written above
    (at most `max_tiles` checkpoints, evenly spaced, the last always included)."""
    if len(maps) > max_tiles:
        pick = np.unique(np.linspace(0, len(maps) - 1, max_tiles).round().astype(int))
        maps = [maps[i] for i in pick]
    tiles = []
    for epoch, m in maps:
        tile = overlay(crop, m)
        tile = cv2.resize(tile, (tile.shape[1] * scale, tile.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        head = np.full((20, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(head, f"ep {epoch}", (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([head, tile]))
    if not tiles:
        return
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.hstack([t for tile in tiles for t in (tile, gap)][:-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
