"""Inspection engines, picked by name through a small registry (heavy ones are imported lazily)."""

from __future__ import annotations

import importlib

from station.core.engines.base import Engine, EngineOutput, FitReport, TrainingSet
from station.core.errors import EngineError

# name -> "module:Class"; imported on first use so the RT engines never pay for torch.
_ENGINES = {
    "rt": "station.core.engines.rt_engine:RTEngine",
    "vit": "station.core.engines.vit_engine:ViTEngine",
    "rt-attention": "station.core.engines.rt_attention:RTAttentionEngine",
    "patch": "station.core.engines.patch_engine:PatchMemoryEngine",
    "texture": "station.core.engines.texture_engine:TextureEngine",
    "fused": "station.core.engines.fused_engine:FusedEngine",
    "joined": "station.core.engines.joined_engine:JoinedEngine",
    "mt": "station.core.engines.mt_engine:MTEngine",
}


def register_engine(name: str, target: str) -> None:
    _ENGINES[name] = target


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def engine_class(name: str) -> type[Engine]:
    target = _ENGINES.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}; known engines: {', '.join(engine_names())}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["Engine", "EngineOutput", "FitReport", "TrainingSet", "engine_class", "engine_names", "register_engine"]
