"""The offline front door: `python -m components <verb>`.

  render --stack NAME --out DIR [--config-file FILE]
      Runs the Pulumi program of the stack under Pulumi's mocks (no CLI, no cloud) and writes
      what `pulumi up` would create: Kubernetes manifests, Helm releases, AWS resources.
  plan --stack NAME [--json]
      How each model of the stack fits its node group: shards, TGI limits, cost, cold start.
  plan --model ID [--metadata LOCKFILE] [--instance-type T] [--num-shard N] [--quantize Q]
       [--dtype D] [--max-total-tokens N] [--json]
      What-if: one model (from the lock file) on an instance type, or on the cheapest that fits.
  lock --stack NAME [--lockfile FILE]
      Resolves the stack's models on the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) into the lock.

Exit codes: 0 done, 2 invalid input (the errors on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import pulumi

from . import config, mockrun, modellock, planner, render
from .catalog import CATALOG


class UsageError(Exception):
    pass


def _stack_file(stack: str, config_file: str | None) -> Path:
    path = Path(config_file) if config_file else mockrun.PROJECT_DIR / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(p.name[len("Pulumi."):-len(".yaml")]
                        for p in mockrun.PROJECT_DIR.glob("Pulumi.*.yaml"))
        raise UsageError(f"--stack: no stack file {path}; stacks here: {', '.join(stacks)}")
    return path


def cmd_render(args: argparse.Namespace) -> int:
    stack_file = _stack_file(args.stack, args.config_file)
    config, secret_keys = mockrun.stack_config(stack_file, mockrun.project_name())
    run = mockrun.run_program(args.stack, config, secret_keys)
    counts = render.write(run, Path(args.out))
    width = max(map(len, counts), default=0)
    print(f"rendered stack {args.stack} to {args.out}: {sum(counts.values())} resources")
    for typ, n in sorted(counts.items()):
        print(f"  {typ:<{width}}  {n}")
    return 0


def _settings(stack: str, config_file: str | None) -> config.StackConfig:
    """The validated settings of a stack file, without running the program."""
    values, _ = mockrun.stack_config(_stack_file(stack, config_file), mockrun.project_name())
    return config.settings_of(values)


def _lock_path(path: str | None) -> Path:
    return Path(path) if path else mockrun.PROJECT_DIR / modellock.LOCK_FILE


COLUMNS = (("model", 0), ("instance", 13), ("shards", 6), ("fits", 4), ("weights GiB", 11),
           ("KV tokens", 9), ("max input", 9), ("max total", 9), ("prefill", 7), ("$/h", 8),
           ("cold s", 6))


def _row(name: str, p: planner.Plan, width: int) -> str:
    cells = (name, p.instance_type, p.num_shard, "yes" if p.fits else "NO",
             f"{p.weights_bytes / planner.GIB:.1f}", p.kv_capacity_tokens, p.max_input_tokens,
             p.max_total_tokens, p.max_batch_prefill_tokens, f"{p.hourly_usd:.4g}",
             p.cold_start_seconds)
    widths = [width] + [w for _, w in COLUMNS[1:]]
    return ("  ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths)) + ("" if p.fits else f"  {p.reason}")).rstrip()


def _print_plans(named: list[tuple[str, planner.Plan]], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"name": n, **p.as_dict()} for n, p in named], indent=2))
        return
    width = max(len(n) for n, _ in named + [("model", None)])
    print("  ".join(f"{h:<{w or width}}" for h, w in COLUMNS).rstrip())
    for name, p in named:
        print(_row(name, p, width))


def cmd_plan(args: argparse.Namespace) -> int:
    lock = modellock.read(_lock_path(args.metadata))
    if args.stack:
        settings = _settings(args.stack, args.config_file)
        plans, errors = config.plan_models(settings, lock, args.stack)
        unlocked = [e for e in errors if "is not in" in e or "locked revision" in e]
        if unlocked:
            raise UsageError("\n".join(unlocked))
        _print_plans([(name if len(slots) == 1 else f"{name}/{slot}", p)
                      for name, slots in plans.items() for slot, p in slots.items()], args.json)
        return 0
    entry = lock.models.get(args.model)
    if entry is None:
        raise UsageError(f"--model: {args.model} is not in {_lock_path(args.metadata)}: add it to a "
                         "stack and run `python -m components lock --stack NAME`")
    request = planner.Request(quantize=args.quantize, dtype=args.dtype,
                              max_total_tokens=args.max_total_tokens)
    try:
        chosen = planner.best_plan(
            args.model, entry, request,
            [CATALOG[args.instance_type]] if args.instance_type else CATALOG.values(),
            [args.num_shard] if args.num_shard else planner.SHARDS)
    except planner.PlanError as exc:
        raise UsageError(f"--num-shard: {exc}") from None
    if args.json:
        print(json.dumps(chosen.as_dict(), indent=2))
    else:
        _print_plans([(args.model, chosen)], False)
        print(f"\n{'fits' if chosen.fits else 'does not fit'}: {chosen.reason}")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    settings = _settings(args.stack, args.config_file)
    path = _lock_path(args.lockfile)
    lock = modellock.read(path)
    resolved: dict[tuple[str, str], modellock.LockEntry] = {}
    for model in settings.models:  # resolve all before writing anything
        for slot in model.resolved_slots():
            if (slot.id, slot.revision) not in resolved:
                entry = modellock.resolve(slot.id, slot.revision)
                resolved[(slot.id, slot.revision)] = entry
                print(f"{slot.id}@{slot.revision}: {entry.revision}")
    for (repo_id, _), entry in resolved.items():
        lock = lock.with_entry(repo_id, entry)
    modellock.write(path, lock)
    print(f"wrote {len(resolved)} model(s) to {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("render", help="write what `pulumi up` of a stack would create")
    r.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--config-file", help="stack config file to use instead of Pulumi.<stack>.yaml")
    r.set_defaults(func=cmd_render)

    pl = verbs.add_parser("plan", help="how models fit GPUs: shards, TGI limits, cost")
    target = pl.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="plan the models of Pulumi.<stack>.yaml")
    target.add_argument("--model", help="what-if: a Hugging Face repo id of the lock file")
    pl.add_argument("--config-file", help="with --stack: stack config file to use")
    pl.add_argument("--metadata", help=f"lock file (default {modellock.LOCK_FILE})")
    pl.add_argument("--instance-type", choices=list(CATALOG), metavar="TYPE",
                    help=f"one of {', '.join(CATALOG)} (default: the cheapest that fits)")
    pl.add_argument("--num-shard", type=int, choices=planner.SHARDS,
                    help="GPUs per replica (default: the fewest that fit)")
    pl.add_argument("--quantize", choices=planner.QUANTIZE)
    pl.add_argument("--dtype", choices=("float16", "bfloat16"))
    pl.add_argument("--max-total-tokens", type=int, metavar="N")
    pl.add_argument("--json", action="store_true", help="JSON instead of a table")
    pl.set_defaults(func=cmd_plan)

    lk = verbs.add_parser("lock", help="resolve the stack's models on the Hugging Face Hub")
    lk.add_argument("--stack", required=True)
    lk.add_argument("--config-file", help="stack config file to use")
    lk.add_argument("--lockfile", help=f"lock file to update (default {modellock.LOCK_FILE})")
    lk.set_defaults(func=cmd_lock)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, pulumi.RunError, modellock.LockError) as exc:
        # Invalid input: the message names the setting; no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
