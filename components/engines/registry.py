"""The engines a stack may name (`engine: tgi | vllm`), TGI first: the default."""

from __future__ import annotations

from ..planning.planner import MemoryModel
from . import tgi, vllm
from .base import Engine

ENGINES: dict[str, Engine] = {e.name: e for e in (tgi.ENGINE, vllm.ENGINE)}
DEFAULT_ENGINE = tgi.ENGINE.name
# What the planner takes (planning/plans.py): each engine's memory model by name.
MEMORY_MODELS: dict[str, MemoryModel] = {name: e.memory for name, e in ENGINES.items()}
