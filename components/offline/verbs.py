"""The verbs of `python -m components` (render, plan, lock): each reads its arguments and returns
the exit code; invalid input raises UsageError, ConfigError or LockError (exit 2)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import config
from ..config.stack_file import read as stack_file_config
from ..engines.registry import DEFAULT_ENGINE, MEMORY_MODELS
from ..engines.vocabulary import VOCABULARY
from ..planning import hub, planner
from ..planning import lock as lockfile
from ..planning.catalog import CATALOG
from ..planning.plans import capacity, drain_limits, plan_models
from . import mockrun, redact
from . import render as render_files


class UsageError(Exception):
    pass


def _stack_file(stack: str, config_file: str | None) -> Path:
    path = Path(config_file) if config_file else mockrun.PROJECT_DIR / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(p.name[len("Pulumi."):-len(".yaml")]
                        for p in mockrun.PROJECT_DIR.glob("Pulumi.*.yaml"))
        raise UsageError(f"--stack: no stack file {path}; stacks here: {', '.join(stacks)}")
    return path


def _read(stack: str, config_file: str | None) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the engine hands it over; its secrets are redacted from all
    that the CLI prints from now on."""
    values, secret_keys = stack_file_config(_stack_file(stack, config_file), mockrun.project_name())
    redact.remember(values)
    return values, secret_keys


def render(args: argparse.Namespace) -> int:
    values, secret_keys = _read(args.stack, args.config_file)
    values, secret_keys, stood_in = mockrun.stand_in_secrets(values, secret_keys, mockrun.project_name())
    run = mockrun.run_program(args.stack, values, secret_keys)
    counts = render_files.write(run, Path(args.out))
    width = max(map(len, counts), default=0)
    print(f"rendered stack {args.stack} to {args.out}: {sum(counts.values())} resources")
    if stood_in:
        print(f"  (secrets not in the stack file, rendered as placeholders; `pulumi up` needs those "
              f"its receivers and its image cache use: {', '.join(stood_in)})")
    for typ, n in sorted(counts.items()):
        print(f"  {typ:<{width}}  {n}")
    return 0


def _settings(stack: str, config_file: str | None) -> config.StackConfig:
    """The validated settings of a stack file, without running the program."""
    return config.settings_of(_read(stack, config_file)[0], VOCABULARY, stack)


def _lock_path(path: str | None) -> Path:
    return Path(path) if path else mockrun.PROJECT_DIR / lockfile.LOCK_FILE


COLUMNS = (("model", 0), ("engine", 6), ("instance", 13), ("shards", 6), ("fits", 4), ("weights GiB", 11),
           ("KV tokens", 9), ("max input", 9), ("max total", 9), ("prefill", 7), ("$/h", 8),
           ("new node s", 10), ("warm s", 6), ("ms/token", 8), ("gen cap s", 9))
# The cold start by stage (planning/cold_start.py ColdStart, docs/cold-start.md), in seconds.
STAGE_COLUMNS = (("model", 0), ("node", 4), ("gpu", 3), ("image", 5), ("process", 7), ("weights", 7),
                 ("warmup", 6), ("new node", 8), ("warm node", 9), ("image from", 14), ("weights from", 0))


def _line(cells: tuple, columns: tuple, width: int) -> str:
    widths = [width] + [w for _, w in columns[1:]]
    return "  ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths)).rstrip()


def _row(name: str, p: planner.Plan, width: int) -> str:
    cells = (name, p.engine, p.instance_type, p.num_shard, "yes" if p.fits else "NO",
             f"{p.weights_bytes / planner.GIB:.1f}", p.kv_capacity_tokens, p.max_input_tokens,
             p.max_total_tokens, p.max_batch_prefill_tokens, f"{p.hourly_usd:.4g}",
             p.cold_start.new_node_seconds, p.cold_start.warm_node_seconds, p.decode_ms_per_token,
             p.generation_seconds)
    return (_line(cells, COLUMNS, width) + ("" if p.fits else f"  {p.reason}")).rstrip()


def _stage_row(name: str, p: planner.Plan, width: int) -> str:
    c = p.cold_start
    return _line((name, c.node_seconds, c.gpu_seconds, c.image_seconds, c.process_seconds,
                  c.weights_seconds, c.warmup_seconds, c.new_node_seconds, c.warm_node_seconds,
                  c.image_from, c.weights_from), STAGE_COLUMNS, width)


def _print_plans(named: list[tuple[str, planner.Plan]], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"name": n, **p.as_dict()} for n, p in named], indent=2))
        return
    width = max(len(n) for n, _ in named + [("model", None)])
    print(_line(tuple(h for h, _ in COLUMNS), COLUMNS, width))
    for name, p in named:
        print(_row(name, p, width))
    print("\ncold start by stage, seconds (a new node: every stage; a warm node, the image cached: process, "
          "weights, warmup)")
    print(_line(tuple(h for h, _ in STAGE_COLUMNS), STAGE_COLUMNS, width))
    for name, p in named:
        print(_stage_row(name, p, width))


def plan(args: argparse.Namespace) -> int:
    locked = lockfile.read(_lock_path(args.metadata))
    if args.stack:
        settings = _settings(args.stack, args.config_file)
        plans, errors = plan_models(settings, locked, args.stack, MEMORY_MODELS)
        unlocked = [e for e in errors if "is not in" in e or "locked revision" in e]
        if unlocked:
            raise UsageError("\n".join(unlocked))
        _print_plans([(name if len(slots) == 1 else f"{name}/{slot}", p)
                      for name, slots in plans.items() for slot, p in slots.items()], args.json)
        too_small, warnings = capacity(settings, plans)
        too_long, idle = drain_limits(settings, plans)
        for warning in warnings + idle:
            print(f"warning: {warning}", file=sys.stderr)
        if errors or too_small or too_long:  # the table shows why; render and pulumi up would refuse it
            raise config.ConfigError(errors + too_small + too_long)
        return 0
    entry = locked.models.get(args.model)
    if entry is None:
        raise UsageError(f"--model: {args.model} is not in {_lock_path(args.metadata)}: add it to a "
                         "stack and run `python -m components lock --stack NAME`")
    memory = MEMORY_MODELS[args.engine or DEFAULT_ENGINE]
    if args.quantize and args.quantize not in memory.quantize:
        raise UsageError(f"--quantize: {args.quantize!r} is not one of {memory.label}'s modes "
                         f"({', '.join(memory.quantize)})")
    request = planner.Request(quantize=args.quantize, dtype=args.dtype,
                              max_total_tokens=args.max_total_tokens)
    try:
        chosen = planner.best_plan(
            args.model, entry, request,
            [CATALOG[args.instance_type]] if args.instance_type else CATALOG.values(),
            [args.num_shard] if args.num_shard else planner.SHARDS, memory=memory)
    except planner.PlanError as exc:
        raise UsageError(f"--num-shard: {exc}") from None
    if args.json:
        print(json.dumps(chosen.as_dict(), indent=2))
    else:
        _print_plans([(args.model, chosen)], False)
        print(f"\n{'fits' if chosen.fits else 'does not fit'}: {chosen.reason}")
    return 0


def lock(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    settings = _settings(args.stack, args.config_file)
    path = _lock_path(args.lockfile)
    current = lockfile.read(path)
    resolved: dict[tuple[str, str], lockfile.LockEntry] = {}
    for model in settings.models:  # resolve all before writing anything
        for slot in model.resolved_slots():
            if (slot.id, slot.revision) not in resolved:
                entry = hub.resolve(slot.id, slot.revision)
                resolved[(slot.id, slot.revision)] = entry
                print(f"{slot.id}@{slot.revision}: {entry.revision}")
    for (repo_id, _), entry in resolved.items():
        current = current.with_entry(repo_id, entry)
    lockfile.write(path, current)
    print(f"wrote {len(resolved)} model(s) to {path}")
    return 0
