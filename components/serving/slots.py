"""What the model service needs of each slot: the resolved settings, its engine, its plan, the
locked commit and the instance types its pods may land on."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Optional

from ..config import ModelConfig, Slot, StackConfig
from ..engines.base import Engine
from ..engines.registry import ENGINES
from ..planning.catalog import CATALOG, GpuInstance
from ..planning.lock import Lock
from ..planning.planner import Plan
from ..planning.plans import Plans


@dataclass
class SlotSpec:
    slot: Slot
    engine: Engine
    plan: Plan
    revision: str  # the commit the lock pinned
    stored_bytes: int  # the weights as downloaded (the lock's weights_bytes), not as in GPU memory
    gated: bool
    instances: list[GpuInstance]  # the instance types of its node group


def slot_specs(model: ModelConfig, settings: StackConfig, plans: Plans, lock: Lock) -> list[SlotSpec]:
    groups = {g.name: g for g in settings.gpu_node_groups}
    specs = []
    for s in model.resolved_slots():
        entry = lock.find(s.id, s.revision)
        specs.append(SlotSpec(slot=s, engine=ENGINES[s.engine], plan=plans[model.name][s.slot],
                              # the commit the lock pinned, else what the config says
                              revision=entry.revision or s.revision, gated=entry.gated,
                              stored_bytes=entry.weights_bytes,
                              instances=[CATALOG[t] for t in groups[s.node_group].instance_types]))
    return specs


def download_image(model: ModelConfig) -> Optional[str]:
    """The image the model's settings pin for its download Jobs (ModelServiceArgs.download_image):
    its own `image` when its engine's image runs the download script (huggingface_hub with
    hf_transfer, engines/tgi.py `download_script`), else none: TGI's pinned release."""
    return model.image if ENGINES[model.engine].runs_downloads else None
