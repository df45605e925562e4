"""Shared helpers: run the real program under Pulumi's mocks with a stack file or a config dict."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import config
from components.config import PROJECT, stack_file
from components.engines.vocabulary import VOCABULARY
from components.offline import mockrun

ROOT = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
# Stacks only the tests build (tests/data/stacks): `ingress` is prod with the per-model ALB Ingress
# instead of the gateway.
TEST_STACKS = ROOT / "tests" / "data" / "stacks"
ALL_STACKS = STACKS + sorted(p.name[len("Pulumi."):-len(".yaml")] for p in TEST_STACKS.glob("Pulumi.*.yaml"))


def stack_path(stack: str) -> Path:
    """The stack file of a shipped stack, or of a stack only the tests build."""
    shipped = ROOT / f"Pulumi.{stack}.yaml"
    return shipped if shipped.exists() else TEST_STACKS / f"Pulumi.{stack}.yaml"


# TGI's settings, routes and metrics at the pinned tag, as data the tests own (sources inside).
TGI = yaml.safe_load((ROOT / "tests" / "data" / "tgi.yaml").read_text())


def validate_settings(raw: dict) -> config.StackConfig:
    """The stack contract's validation with the vocabulary the program uses."""
    return config.validate_settings(raw, VOCABULARY)


def stack_settings(stack: str) -> dict:
    """The project's settings of a stack file, keys without the namespace."""
    doc = yaml.safe_load(stack_path(stack).read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith(f"{PROJECT}:")}


def run_settings(settings: dict, stack: str = "test", region: str = "us-east-1",
                 secret_keys: tuple = (), run: mockrun.Run | None = None) -> mockrun.Run:
    """Runs the program with these settings (as `pulumi config` would hand them over)."""
    config = {"aws:region": region}
    for key, value in settings.items():
        config[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return mockrun.run_program(stack, config, [f"{PROJECT}:{k}" for k in secret_keys], run=run)


# Stand-ins for the secrets prod's settings require (alerting receivers, registry tokens), for
# runs of prod's settings with changes.
PROD_SECRETS = {"pagerdutyRoutingKey": "R" * 32, "slackWebhookUrl": "https://hooks.slack.com/services/T/B/x",
                "heartbeatUrl": "https://hc-ping.com/x", "githubToken": "g" * 20, "dockerHubToken": "d" * 20}


def run_prod(settings: dict, stack: str = "prod") -> mockrun.Run:
    """Prod's settings, changed, run with stand-ins for its secrets."""
    return run_settings({**settings, **PROD_SECRETS}, stack=stack, secret_keys=tuple(PROD_SECRETS))


@pytest.fixture
def dev_settings() -> dict:
    return copy.deepcopy(stack_settings("dev"))


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, mockrun.Run]:
    """Each stack file (shipped and the tests') run once through the program (as render does)."""
    runs = {}
    for stack in ALL_STACKS:
        config, secret_keys = stack_file.read(stack_path(stack), PROJECT)
        config, secret_keys, _ = mockrun.stand_in_secrets(config, secret_keys, PROJECT)
        runs[stack] = mockrun.run_program(stack, config, secret_keys)
    return runs


@pytest.fixture(scope="session")
def dev_run(stack_runs) -> mockrun.Run:
    return stack_runs["dev"]


@pytest.fixture(scope="session")
def prod_run(stack_runs) -> mockrun.Run:
    return stack_runs["prod"]


@pytest.fixture(scope="session")
def ingress_run(stack_runs) -> mockrun.Run:
    """Prod with the per-model ALB Ingress instead of the gateway."""
    return stack_runs["ingress"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every stack file (shipped and the tests') rendered by the real command, once per session."""
    out = {}
    for stack in ALL_STACKS:
        out[stack] = tmp_path_factory.mktemp(stack)
        result = cli("render", "--stack", stack, "--out", str(out[stack]), "--config-file", str(stack_path(stack)))
        assert result.returncode == 0, result.stderr
        assert f"rendered stack {stack}" in result.stdout
        assert "aws:eks/cluster:Cluster" in result.stdout  # the summary per type
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m components ...` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "components", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def inputs(run: mockrun.Run, type_: str, name: str | None = None) -> dict:
    return mockrun.reveal(run.one(type_, name).inputs)


def names(urns: list[str]) -> set[str]:
    return {u.rsplit("::", 1)[-1] for u in urns}
