"""The bootstrap project (bootstrap/) run under the platform's Pulumi mocks, and its modules
importable as the Pulumi CLI makes them (it runs the program from its own directory)."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from components.offline import mockrun

from ..conftest import ROOT

BOOTSTRAP = ROOT / "bootstrap"
PROJECT = "llmserve-bootstrap"
if str(BOOTSTRAP) not in sys.path:
    sys.path.insert(0, str(BOOTSTRAP))

REPOSITORY = "octo-org/llmserve"
STATE_BUCKET = "arn:aws:s3:::example-pulumi-state"
SECRETS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"


def run_bootstrap(settings: dict[str, str], stack: str = "main",
                  run: mockrun.Run | None = None) -> mockrun.Run:
    """Runs bootstrap/ as `pulumi up` would, with these `llmserve-bootstrap:*` settings."""
    config = {"aws:region": "us-east-1", **{f"{PROJECT}:{k}": v for k, v in settings.items()}}
    return mockrun.run_mocked(lambda: runpy.run_path(str(BOOTSTRAP), run_name="__main__"), stack,
                              config, project=PROJECT, run=run)


@pytest.fixture(scope="session")
def minimal_run() -> mockrun.Run:
    return run_bootstrap({"githubRepository": REPOSITORY})


@pytest.fixture(scope="session")
def full_run() -> mockrun.Run:
    """With the Pulumi state in S3 and an awskms secrets provider."""
    return run_bootstrap({"githubRepository": REPOSITORY, "stateBucketArn": STATE_BUCKET,
                          "secretsKeyArn": SECRETS_KEY})


def roles(run: mockrun.Run) -> dict[str, dict]:
    """Role name -> its recorded inputs."""
    return {r.inputs["name"]: mockrun.reveal(r.inputs) for r in run.of_type(ROLE)}


def role_policies(run: mockrun.Run, role_name: str) -> dict[str, dict]:
    """Policy name -> document, of everything one role is granted: its inline policies and the
    managed policies attached to it."""
    granted = {r.inputs["name"]: json.loads(r.inputs["policy"]) for r in run.of_type(ROLE_POLICY)
               if r.inputs["role"] == role_name}
    managed = {p.outputs["arn"]: p for p in run.of_type(POLICY)}
    for attachment in run.of_type(ATTACHMENT):
        if attachment.inputs["role"] == role_name:
            policy = managed[attachment.inputs["policyArn"]]
            granted[policy.inputs["name"]] = json.loads(policy.inputs["policy"])
    return granted


def boundary(run: mockrun.Run) -> tuple[str, dict]:
    """The boundary policy's ARN (as the mocks made it) and document."""
    [policy] = [p for p in run.of_type(POLICY) if p.inputs["name"].endswith("workload-boundary")]
    return policy.outputs["arn"], json.loads(policy.inputs["policy"])
