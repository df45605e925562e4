"""From a validated stack to plans: every model slot planned on the instance types of its node
group under its engine's memory model, from the lock only (no network). Errors name the setting,
as the config's do. The memory models come from the caller (`engines.registry.MEMORY_MODELS`):
planning imports no engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from ..config import ConfigError, GpuNodeGroupConfig, Slot, Stack, StackConfig
from ..config.ingress import IDLE_TIMEOUT_MAX_SECONDS
from . import planner
from .catalog import CATALOG
from .lock import LOCK_FILE, Lock, LockError, read


def slot_request(slot: Slot, settings: StackConfig, group: GpuNodeGroupConfig,
                 memory: planner.MemoryModel) -> planner.Request:
    """What the slot asks of the planner. Its image (pinned, else its engine's) comes through the
    pull-through cache when the stack has one and ECR caches its registry (config/images.py),
    else from that registry."""
    storage = settings.storage
    image = slot.image or memory.startup.image
    cached = bool(settings.images.upstreams([image]))
    return planner.Request(quantize=slot.quantize, dtype=slot.dtype,
                           max_input_tokens=slot.max_input_tokens,
                           max_total_tokens=slot.max_total_tokens,
                           throughput_mode=storage.throughput_mode,
                           provisioned_mibps=storage.provisioned_throughput_mibps,
                           pull_through_cache=cached, fast_image_pull=group.fast_image_pull,
                           model_store=slot.store)


Plans = dict[str, dict[str, planner.Plan]]  # model name -> slot -> plan
MemoryModels = Mapping[str, planner.MemoryModel]  # engine name -> its memory model


def plan_models(settings: StackConfig, lock: Lock, stack: str,
                engines: MemoryModels) -> tuple[Plans, list[str]]:
    """Plans each model slot on the instance types of its node group, under its engine. Returns
    the plans (fitting or not), and one error line per slot that is not locked or does not fit."""
    groups = {g.name: g for g in settings.gpu_node_groups}
    plans: Plans = {}
    errors = []
    for i, model in enumerate(settings.models):
        for slot in model.resolved_slots():
            where = f"models[{i}]" + (f".slots.{slot.slot}" if model.slots else "")
            entry = lock.find(slot.id, slot.revision)
            if entry is None:
                locked = [e.requested_revision or "main" for k, e in lock.models.items()
                          if k.split("@")[0] == slot.id]
                errors.append(
                    f"{where}.revision: {slot.id} at {slot.revision!r} is not in {LOCK_FILE} "
                    f"(locked: {', '.join(repr(r) for r in locked)}): run `python -m components lock "
                    f"--stack {stack}`" if locked else
                    f"{where}.id: {slot.id} is not in {LOCK_FILE}: run "
                    f"`python -m components lock --stack {stack}`")
                continue
            group = groups[slot.node_group]
            memory = engines[slot.engine]
            request = slot_request(slot, settings, group, memory)
            plan = planner.plan_node_group(slot.id, entry, group.instance_types, request, memory)
            plans.setdefault(model.name, {})[slot.slot] = plan
            if not plan.fits:
                best = planner.cheapest(slot.id, entry, request, memory)
                hint = (f"the cheapest catalog instance that fits: {best.instance_type} with "
                        f"{best.num_shard} shard(s), ${best.hourly_usd}/h per replica" if best
                        else "no catalog instance fits it")
                errors.append(f"{where}: {slot.id} does not fit node group {group.name} "
                              f"({plan.instance_type}, {plan.num_shard} shard(s)): {plan.reason}; {hint}")
    return plans, errors


def capacity(settings: StackConfig, plans: Plans) -> tuple[list[str], list[str]]:
    """Errors for node groups that can never hold the minimum replicas of the model slots placed
    on them (both slots of a blue-green model run at once), warnings for those that cannot hold
    the maximum. A replica takes `numShard` GPUs of one node."""
    errors, warnings = [], []
    for g, group in enumerate(settings.gpu_node_groups):
        per_node = min(CATALOG[t].gpus for t in group.instance_types)
        held = group.max_size * per_node
        placed = [(model, plans[model.name][slot.slot]) for model in settings.models
                  for slot in model.resolved_slots()
                  if slot.node_group == group.name and slot.slot in plans.get(model.name, {})]
        need_min = sum(m.replicas.min * p.num_shard for m, p in placed)
        need_max = sum(m.replicas.max * p.num_shard for m, p in placed)
        names = ", ".join(sorted({m.name for m, _ in placed}))
        what = f"{group.max_size} node(s) of {per_node} GPUs hold {held}"
        if need_min > held:
            errors.append(f"gpuNodeGroups[{g}].maxSize: {what}; the minimum replicas of {names} "
                          f"need {need_min}: raise maxSize or lower replicas.min")
        elif need_max > held:
            warnings.append(f"gpuNodeGroups[{g}].maxSize: {what}; the maximum replicas of {names} "
                            f"need {need_max}: the autoscaler stops short of replicas.max")
    return errors, warnings


def drain_limits(settings: StackConfig, plans: Plans) -> tuple[list[str], list[str]]:
    """With a load balancer, what each slot's generation cap (planner.py) means for it. Errors
    where draining the longest request takes longer than an ALB target group may keep a
    deregistering target (preStop + cap over 3600 s). Warnings where the cap outlasts the ALB's
    idle timeout: a non-streamed request sends nothing until it is done, so the ALB closes it as
    idle; streamed ones send every token and are not cut."""
    if settings.ingress is None:
        return [], []
    errors, warnings = [], []
    limit = planner.MAX_DEREGISTRATION_DELAY_SECONDS - planner.PRESTOP_SECONDS
    idle = settings.ingress.idle_timeout_seconds
    for i, model in enumerate(settings.models):
        for slot in model.resolved_slots():
            plan = plans.get(model.name, {}).get(slot.slot)
            if plan is None or not plan.fits:
                continue
            override = model.slots.get(slot.slot)
            own = override is not None and "max_total_tokens" in override.model_fields_set
            setting = f"models[{i}]" + (f".slots.{slot.slot}" if own else "") + ".maxTotalTokens"
            cap, total = plan.generation_seconds, plan.max_total_tokens
            what = (f"{total} lets {model.name} ({slot.id}) generate {total - 1} tokens per request, "
                    f"up to {cap} s at {plan.decode_ms_per_token} ms per token on node group "
                    f"{slot.node_group}")
            if cap > limit:
                allowed = math.floor(limit * 1000 / plan.decode_ms_per_token) + 1
                errors.append(f"{setting}: {what}; draining that after the "
                              f"{planner.PRESTOP_SECONDS} s preStop needs a deregistration delay over "
                              f"the {planner.MAX_DEREGISTRATION_DELAY_SECONDS} s an ALB allows: at most "
                              f"{allowed} on this node group, or a node group with faster GPUs")
            elif cap > idle:
                warnings.append(f"{setting}: {what}, longer than ingress.idleTimeoutSeconds ({idle} s): "
                                "the ALB closes a non-streamed request that long as idle: stream it "
                                f"(\"stream\": true), raise idleTimeoutSeconds (at most {IDLE_TIMEOUT_MAX_SECONDS}) or lower "
                                "maxTotalTokens")
    return errors, warnings


def read_lock(path: Path) -> Lock:
    try:
        return read(path)
    except LockError as exc:
        raise ConfigError([str(exc)]) from None


def load_plans(stack: Stack, lock: Lock, engines: MemoryModels) -> tuple[Plans, list[str]]:
    """The plan of every model slot of the stack, from the lock only (no network), and warnings.
    Raises ConfigError for a model that is not locked, does not fit, is gated without hfToken,
    or generates too long to drain behind an ALB, and for node groups too small for the minimum
    replicas."""
    plans, errors = plan_models(stack.settings, lock, stack.stack, engines)
    too_small, warnings = capacity(stack.settings, plans)
    too_long, idle = drain_limits(stack.settings, plans)
    errors += too_small + too_long
    warnings += idle
    for i, model in enumerate(stack.settings.models):
        for slot in model.resolved_slots():
            memory = engines[slot.engine]
            if slot.max_input_tokens is not None and not memory.input_limit:
                where = f"models[{i}].slots.{slot.slot}" if model.slots else f"models[{i}]"
                warnings.append(f"{where}.maxInputTokens: {memory.label} has no input limit of its "
                                "own (prompt and output share maxTotalTokens): ignored on this slot")
            entry = lock.find(slot.id, slot.revision)
            if entry is not None and entry.gated and stack.hf_token is None:
                errors.append(f"hfToken: required: models[{i}] ({slot.id}) is gated (`pulumi "
                              "config set --secret hfToken hf_...` with a token that accepted "
                              "its license)")
    if errors:
        raise ConfigError(errors)
    return plans, warnings
