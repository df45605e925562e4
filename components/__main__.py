"""The offline front door: `python -m components <verb>`.

  render --stack NAME --out DIR [--config-file FILE]
      Runs the Pulumi program of the stack under Pulumi's mocks (no CLI, no cloud) and writes
      what `pulumi up` would create: Kubernetes manifests, Helm releases, AWS resources.
  plan --stack NAME [--json]
      How each model slot of the stack fits its node group under its engine: shards, the
      engine's limits, cost, cold start.
  plan --model ID [--engine tgi|vllm] [--metadata LOCKFILE] [--instance-type T] [--num-shard N]
       [--quantize Q] [--dtype D] [--max-total-tokens N] [--json]
      What-if: one model (from the lock file) under an engine (default tgi) on an instance type,
      or on the cheapest that fits.
  lock --stack NAME [--lockfile FILE]
      Resolves the stack's models on the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) into the lock.

Exit codes: 0 done, 2 invalid input (the errors on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import pulumi

from .engines.registry import ENGINES, MEMORY_MODELS
from .offline import redact, verbs
from .offline.verbs import UsageError
from .planning import planner
from .planning.catalog import CATALOG
from .planning.lock import LOCK_FILE, LockError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("render", help="write what `pulumi up` of a stack would create")
    r.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--config-file", help="stack config file to use instead of Pulumi.<stack>.yaml")
    r.set_defaults(func=verbs.render)

    pl = sub.add_parser("plan", help="how models fit GPUs: shards, engine limits, cost")
    target = pl.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="plan the models of Pulumi.<stack>.yaml")
    target.add_argument("--model", help="what-if: a Hugging Face repo id of the lock file")
    pl.add_argument("--config-file", help="with --stack: stack config file to use")
    pl.add_argument("--metadata", help=f"lock file (default {LOCK_FILE})")
    pl.add_argument("--instance-type", choices=list(CATALOG), metavar="TYPE",
                    help=f"one of {', '.join(CATALOG)} (default: the cheapest that fits)")
    pl.add_argument("--num-shard", type=int, choices=planner.SHARDS,
                    help="GPUs per replica (default: the fewest that fit)")
    pl.add_argument("--engine", choices=list(ENGINES), help="with --model: the engine (default tgi)")
    pl.add_argument("--quantize", choices=list(dict.fromkeys(q for m in MEMORY_MODELS.values() for q in m.quantize)),
                    help="one of the engine's modes")
    pl.add_argument("--dtype", choices=("float16", "bfloat16"))
    pl.add_argument("--max-total-tokens", type=int, metavar="N")
    pl.add_argument("--json", action="store_true", help="JSON instead of a table")
    pl.set_defaults(func=verbs.plan)

    lk = sub.add_parser("lock", help="resolve the stack's models on the Hugging Face Hub")
    lk.add_argument("--stack", required=True)
    lk.add_argument("--config-file", help="stack config file to use")
    lk.add_argument("--lockfile", help=f"lock file to update (default {LOCK_FILE})")
    lk.set_defaults(func=verbs.lock)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, pulumi.RunError, LockError) as exc:
        # Invalid input: the message names the setting; no traceback.
        print(redact.redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except Exception as exc:  # a defect of ours: no traceback either (it may show a secret)
        if os.environ.get("LLMSERVE_DEBUG"):
            raise
        print(redact.redact(f"internal error: {type(exc).__name__}: {exc} (set LLMSERVE_DEBUG=1 "
                            "for a traceback, and please report it)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
