"""The RT-attention engine, by its parts: the engine and how its heads are joined (engine.py), the token and
attention head with its unit spaces (tokens.py), the displacement head (shift.py), the arrays a recipe keeps
(arrays.py) and the math they share (maths.py). Its settings are typed in station/core/engines/settings.py;
the RT method itself is station/core/engines/rt.py, the pins' shifts station/core/engines/displacement.py.
The history of its ablations is in docs/rt-attention-ablations.md."""

from station.core.engines.rt_attention.engine import ODDS_CLIP, RTAttentionEngine
from station.core.engines.rt_attention.maths import cell_kinship

__all__ = ["ODDS_CLIP", "RTAttentionEngine", "cell_kinship"]
