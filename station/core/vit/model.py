"""The ViT itself: timm VisionTransformers picked by name, sized from the recipe's cell grid.

`vit_grid` has one token per cell (patch size = cell size, so one token is one pin); `vit_square`
cuts each cell into square sub-patches, for products without a natural grid. Inputs are RGB,
optionally followed by the SOART metric channels of DESIGN §2.2 (see `inputs.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer

from station.core.errors import EngineError
from station.core.grid import CellGrid

#: the knobs a recipe may set; everything else of timm's constructor keeps its default
ARCH_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patches_per_cell")


def _grid_patch(grid: CellGrid, arch: dict[str, Any]) -> int:
    return grid.cell_px


def _square_patch(grid: CellGrid, arch: dict[str, Any]) -> int:
    per = int(arch.get("patches_per_cell", 2))
    if per < 1 or grid.cell_px % per:
        raise EngineError(f"patches_per_cell {per} does not divide the cell size {grid.cell_px} px")
    return grid.cell_px // per


# name -> patch size for a grid; a small registry rather than an if/elif chain (timm's _registry idea)
MODELS: dict[str, Callable[[CellGrid, dict[str, Any]], int]] = {
    "vit_grid": _grid_patch,
    "vit_square": _square_patch,
}


def build_model(name: str, grid: CellGrid, num_classes: int, in_chans: int = 3,
                arch: dict[str, Any] | None = None) -> VisionTransformer:
    """A from-scratch timm ViT (never `pretrained=True`: no hub at run time)."""
    if name not in MODELS:
        raise EngineError(f"unknown ViT model {name!r}; known: {', '.join(sorted(MODELS))}")
    arch = arch or {}
    patch = MODELS[name](grid, arch)
    width, height = grid.size
    model = VisionTransformer(
        img_size=(height, width), patch_size=patch, in_chans=in_chans, num_classes=num_classes,
        embed_dim=int(arch.get("embed_dim", 96)), depth=int(arch.get("depth", 4)),
        num_heads=int(arch.get("num_heads", 4)), mlp_ratio=float(arch.get("mlp_ratio", 2.0)),
        global_pool="token", class_token=True,
    )
    # a per-token head: during training each pin's token also learns its own cell's class (dense
    # supervision from the labelled cell); inference reads the CLS head only
    model.token_head = torch.nn.Linear(model.embed_dim, num_classes)
    return model


class WithTokenHead(torch.nn.Module):
    """The model returning (image logits, per-token logits); wrapped whole by DDP so both heads sync."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.forward_features(x)
        return self.model.forward_head(feats), self.model.token_head(feats[:, self.model.num_prefix_tokens:])


def patch_grid(model: VisionTransformer) -> tuple[int, int]:
    """(rows, cols) of the model's patch tokens."""
    return tuple(model.patch_embed.grid_size)


def load_pretrained(model: torch.nn.Module, path: str) -> dict[str, Any]:
    """Start from a local timm weight file (safetensors only). Tensors whose shape differs from the
    model's (the classifier head, a patch embedding for other channels or sizes) are skipped and
    reported; nothing is ever fetched from a hub."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise EngineError(f"cannot read pretrained weights {path}: {exc} (a .safetensors file is needed)") from None
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise EngineError(f"pretrained weights {path} share no tensor with the {type(model).__name__} model")
    model.load_state_dict(usable, strict=False)
    return {"pretrained": str(path), "pretrained_loaded": len(usable),
            "pretrained_skipped": sorted(set(state) - set(usable))[:20]}
