"""The GitHub Actions workflows: valid for GitHub (check-jsonschema's vendored schema) and doing
what GitOps needs: tests then previews on pull requests, dev then reviewed prod on merge, nightly
drift detection, OIDC instead of keys, one deployment per stack at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def load(name: str) -> dict:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def pulumi_step(job: dict) -> dict:
    [step] = [s for s in steps(job) if s.get("uses", "").startswith("pulumi/actions@")]
    return step


def test_workflows_validate_against_the_github_schema():
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(WORKFLOWS) == 4


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1


def test_pull_requests_run_tests_then_preview_every_stack_with_a_comment():
    wf = load("pull-request.yml")
    assert "pull_request" in wf["on"]
    assert any("make test" in s.get("run", "") for s in steps(wf["jobs"]["test"]))
    preview = wf["jobs"]["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    step = pulumi_step(preview)
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policy"
    assert preview["permissions"]["pull-requests"] == "write"


def test_merge_deploys_dev_then_prod_behind_reviewers():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert jobs["dev"]["with"]["stack"] == "dev" and jobs["prod"]["with"]["stack"] == "prod"
    assert jobs["prod"]["needs"] == "dev"
    up = load("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.stack }}"  # the prod environment has required reviewers
    step = pulumi_step(up)
    assert step["with"]["command"] == "up" and step["with"]["policyPacks"] == "policy"


def test_nightly_drift_detection_fails_loudly():
    wf = load("drift.yml")
    assert wf["on"]["schedule"][0]["cron"]
    job = wf["jobs"]["drift"]
    step = pulumi_step(job)
    assert step["with"]["command"] == "preview"
    assert step["with"]["refresh"] is True and step["with"]["expect-no-changes"] is True
    alarm = [s for s in steps(job) if s.get("if") == "failure()"]
    assert alarm and "gh issue create" in alarm[0]["run"]


@pytest.mark.parametrize("workflow", [w.name for w in WORKFLOWS])
def test_aws_through_oidc_and_pulumi_token_from_secrets(workflow):
    text = (ROOT / ".github" / "workflows" / workflow).read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "aws-secret-access-key" not in text
    for job in load(workflow)["jobs"].values():
        if "steps" not in job:
            continue
        aws = [s for s in steps(job) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
        if aws:
            assert "role-to-assume" in aws[0]["with"]
            assert job["permissions"]["id-token"] == "write"
        for s in steps(job):
            if s.get("uses", "").startswith("pulumi/actions@"):
                assert s["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_one_deployment_per_stack_at_a_time():
    up = load("pulumi-up.yml")["jobs"]["up"]["concurrency"]
    drift = load("drift.yml")["jobs"]["drift"]["concurrency"]
    assert up["group"] == "pulumi-${{ inputs.stack }}" and up["cancel-in-progress"] is False
    assert drift["group"] == "pulumi-${{ matrix.stack }}" and drift["cancel-in-progress"] is False
