"""Where the ViT looked: last-layer CLS attention and attention rollout (Abnar & Zuidema 2020),
pooled onto the recipe's cell grid and stretched over the registered crop.

timm's fused attention (`scaled_dot_product_attention`) never materialises the attention matrix.
`AttentionRecorder` switches the model's attention modules to the explicit path only while maps
are asked for, and takes the softmaxed matrix from the `attn_drop` module's output, which is the
module `timm.utils.AttentionExtract` hooks by default (`*attn_drop`); all other inference runs fused.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from station.core.errors import EngineError


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm attention modules of the model, in depth order (those with `fused_attn` and `attn_drop`)."""
    return [m for m in model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]


class AttentionRecorder:
    """Context manager: inside it, forward passes record every block's attention (B, heads, N, N).

    `layers` picks blocks by index (default all); only those leave the fused path.
    """

    def __init__(self, model: nn.Module, layers: list[int] | None = None) -> None:
        mods = attention_modules(model)
        if not mods:
            raise EngineError(f"{type(model).__name__} has no timm attention modules to explain")
        self.modules = [mods[i] for i in layers] if layers is not None else mods
        self.maps: list[torch.Tensor] = []
        self._handles: list = []
        self._fused: list[bool] = []

    def _hook(self, module, inputs, output) -> None:
        self.maps.append(output)

    def __enter__(self) -> AttentionRecorder:
        self.maps = []
        for m in self.modules:
            self._fused.append(bool(m.fused_attn))
            m.fused_attn = False
            self._handles.append(m.attn_drop.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for m, fused in zip(self.modules, self._fused):
            m.fused_attn = fused
        self._handles, self._fused = [], []

    def clear(self) -> None:
        self.maps = []


def cls_attention(attn: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """Last-layer attention of the CLS token to the patch tokens, averaged over heads: (B, n_patches)."""
    return attn[:, :, 0, prefix:].mean(dim=1)


def rollout(attns: list[torch.Tensor], prefix: int = 1, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout: the product over layers of (head-mean attention mixed with the identity
    for the residual path), rows renormalised; returns the CLS row over the patch tokens (B, n_patches)."""
    joint = None
    for a in attns:
        a = a.mean(dim=1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * eye + (1.0 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint[:, 0, prefix:]


def to_cells(patch_map: torch.Tensor | np.ndarray, patch_grid: tuple[int, int],
             cells: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Patch weights (B, n_patches) to cell weights (B, rows, cols): summed over the patches of a
    cell, then normalised to sum 1 per image. Works on tensors (keeps gradients) and arrays."""
    pr, pc = patch_grid
    rows, cols = cells
    if pr % rows or pc % cols:
        raise EngineError(f"patch grid {pr}x{pc} does not tile the cell grid {rows}x{cols}")
    b = patch_map.shape[0]
    m = patch_map.reshape(b, rows, pr // rows, cols, pc // cols).sum(axis=(2, 4))
    return m / m.reshape(b, -1).sum(-1).reshape(b, 1, 1).clip(min=1e-12)


def to_crop(cell_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (rows, cols) map stretched smoothly over a crop of `size` (width, height), scaled to 0..1."""
    m = np.asarray(cell_map, dtype=np.float32)
    up = cv2.resize(m, size, interpolation=cv2.INTER_LINEAR)
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


def overlay(crop: np.ndarray, cell_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop (H, W, 3) uint8 RGB with the map as a JET heat overlay, for strips and reports."""
    h, w = crop.shape[:2]
    heat = (to_crop(cell_map, (w, h)) * 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop, 1.0 - alpha, colour, alpha, 0.0)
