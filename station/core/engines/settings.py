"""Bounds of the engines' settings, checked before anything is built from them (a recipe's config, `--config`).

A setting from a file decides how much memory and time the engine takes (a ViT's width and depth,
a search radius, the number of folds): each is typed and bounded here, so a damaged or hostile
recipe is refused with one line instead of allocating gigabytes. Keys not listed are left to the
engine's own checks (an engine's options are validated where they are defined).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from station.core.errors import EngineError

MAX_CLASSES = 64


class _Bounded(BaseModel):
    model_config = ConfigDict(extra="allow")

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class RTSettings(_Bounded):
    metrics: str = Field(max_length=32)
    search_px: StrictInt = Field(ge=0, le=32)
    ridge: float = Field(ge=0, le=1e3)
    folds: StrictInt = Field(ge=2, le=50)
    shrink: float = Field(0.0, ge=0, le=1)  # each cell's covariance drawn toward the mean of all cells'
    staggered: StrictBool = False  # a second grid half a cell over, for the pixel map
    colour: StrictBool = False  # cells read in grey and two opponent colours, not in grey alone


class ViTArch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embed_dim: StrictInt = Field(96, ge=8, le=1024)
    depth: StrictInt = Field(4, ge=1, le=24)
    num_heads: StrictInt = Field(4, ge=1, le=32)
    mlp_ratio: float = Field(2.0, gt=0, le=8)
    patches_per_cell: StrictInt = Field(2, ge=1, le=16)

    @field_validator("num_heads")
    @classmethod
    def _divides(cls, heads: int, info) -> int:
        dim = info.data.get("embed_dim")
        if dim is not None and dim % heads:
            raise ValueError(f"embed_dim {dim} must be a multiple of num_heads {heads}")
        return heads


class ViTTrain(_Bounded):
    epochs: StrictInt | None = Field(None, ge=1, le=10000)
    batch_size: StrictInt = Field(32, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    warmup_epochs: StrictInt | None = Field(None, ge=0, le=10000)
    patience: StrictInt | None = Field(None, ge=1, le=10000)
    min_epochs: StrictInt | None = Field(None, ge=0, le=10000)
    min_steps: StrictInt = Field(2000, ge=1, le=10_000_000)
    base_epochs: StrictInt = Field(100, ge=1, le=10000)
    max_epochs: StrictInt = Field(1000, ge=1, le=10000)
    fit_sample: StrictInt = Field(512, ge=1, le=100_000)
    max_shift: StrictInt | None = Field(None, ge=0, le=64)
    checkpoint_every: StrictInt | None = Field(None, ge=1, le=10000)
    keep_checkpoints: StrictInt = Field(3, ge=1, le=100)
    threads: StrictInt = Field(0, ge=0, le=256)


class ViTSettings(_Bounded):
    arch: ViTArch
    epochs: StrictInt | None = Field(None, ge=1, le=10000)
    val_frac: float = Field(ge=0, le=0.5)
    train: ViTTrain = Field(default_factory=ViTTrain)
    tta: StrictBool
    maps: StrictBool
    rollout: StrictBool
    review_floor: float = Field(ge=0, le=1)
    ng: float = Field(ge=0, le=1)
    classes: list[str] = Field(max_length=MAX_CLASSES)


class RTAttentionSettings(_Bounded):
    temperature: float = Field(gt=0, le=100)
    rt_head_weight: float = Field(ge=0, le=100)
    shift_scale: list[float] = Field(min_length=2, max_length=2)


def check_settings(model: type[BaseModel], config: dict[str, Any], engine: str) -> None:
    """Raise EngineError with one line naming the first setting out of bounds."""
    if not isinstance(config, dict):
        raise EngineError(f"{engine}: the engine settings must be a JSON object")
    try:
        model.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise EngineError(f"{engine}: setting {where} is out of bounds: {first['msg']}") from None
    except RecursionError:
        raise EngineError(f"{engine}: the engine settings are nested too deeply") from None


__all__ = ["RTAttentionSettings", "RTSettings", "ViTArch", "ViTSettings", "check_settings"]
