"""The offline front door: `python -m components <verb>`.

  render --stack NAME --out DIR [--config-file FILE]
      Runs the Pulumi program of the stack under Pulumi's mocks (no CLI, no cloud) and writes
      what `pulumi up` would create: Kubernetes manifests, Helm releases, AWS resources.

Exit codes: 0 done, 2 invalid input (the errors on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pulumi

from . import mockrun, render


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("render", help="write what `pulumi up` of a stack would create")
    r.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--config-file", help="stack config file to use instead of Pulumi.<stack>.yaml")
    r.set_defaults(func=cmd_render)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, pulumi.RunError) as exc:
        # Invalid input: the message names the setting; no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
