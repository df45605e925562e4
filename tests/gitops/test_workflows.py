"""The GitHub Actions workflows: valid for GitHub (check-jsonschema's vendored schema) and doing
what GitOps needs: tests then previews on pull requests, dev then reviewed prod on merge, nightly
drift detection, OIDC instead of keys, one deployment per stack at a time.

And the delivery pipeline's hardening, read from the YAML: every credentialed job runs in one of
the four GitHub environments the bootstrap roles trust (so its OIDC subject is
`repo:ORG/REPO:environment:<name>`), pull requests only in the read-only `*-preview` ones,
deploys from main only, every action pinned to a commit, no persisted checkout credentials, no
inherited secrets, hash-locked installs whose locks match the pins, and zizmor clean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT

GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
CHECK_JSONSCHEMA = BIN / "check-jsonschema"
ZIZMOR = str(BIN / "zizmor") if (BIN / "zizmor").exists() else shutil.which("zizmor")
needs_zizmor = pytest.mark.skipif(
    ZIZMOR is None and not os.environ.get("CI"),
    reason="zizmor is not installed (requirements-dev.txt pins it; make test installs it)")

# The environments the bootstrap project's roles trust (sub=repo:ORG/REPO:environment:<name>).
PREVIEW_ENVIRONMENTS = {"dev-preview", "prod-preview"}
DEPLOY_ENVIRONMENTS = {"dev", "prod"}
MAIN_ONLY = "github.ref == 'refs/heads/main'"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S.*?))?\s*$")
LOCKS = [(ROOT / "requirements.txt", ROOT / "requirements.lock"),
         (ROOT / "policy" / "requirements.txt", ROOT / "policy" / "requirements.lock")]


def load(name: str) -> dict:
    doc = yaml.safe_load((GITHUB / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def all_jobs():
    for path in WORKFLOWS:
        for job_id, job in load(path.name)["jobs"].items():
            yield path.name, job_id, job


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").startswith(action + "@")]


def pulumi_step(job: dict) -> dict:
    [step] = uses(job, "pulumi/actions")
    return step


def credentialed(job: dict) -> bool:
    return (job.get("permissions") or {}).get("id-token") == "write"


def environments(workflow: str, job: dict) -> set[str]:
    """The environment names a job runs in, its matrix and its callers' inputs expanded."""
    env = job.get("environment")
    if env is None:
        return set()
    name = env["name"] if isinstance(env, dict) else env
    names = {name}
    if "${{ matrix.stack }}" in name:
        names = {name.replace("${{ matrix.stack }}", s) for s in job["strategy"]["matrix"]["stack"]}
    if "${{ inputs.stack }}" in name:
        callers = [j for _, _, j in all_jobs() if j.get("uses") == f"./.github/workflows/{workflow}"]
        assert callers, f"{workflow} is called by no workflow"
        names = {name.replace("${{ inputs.stack }}", c["with"]["stack"]) for c in callers}
    assert not any("${{" in n for n in names), names
    return names


# --- valid for GitHub -------------------------------------------------------------------------

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


def test_dependabot_updates_the_actions_and_both_pip_requirement_sets():
    path = GITHUB / "dependabot.yml"
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.dependabot", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    updates = {(u["package-ecosystem"], u["directory"]) for u in yaml.safe_load(path.read_text())["updates"]}
    assert updates == {("github-actions", "/"), ("pip", "/"), ("pip", "/policy")}


# --- what the pipeline does --------------------------------------------------------------------

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


def test_pull_request_previews_run_in_the_preview_environments_only():
    wf = load("pull-request.yml")
    assert set(wf["on"]) == {"pull_request"}  # never pull_request_target: no base-repo rights for PR code
    preview = wf["jobs"]["preview"]
    assert environments("pull-request.yml", preview) == PREVIEW_ENVIRONMENTS
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    for job in wf["jobs"].values():
        assert environments("pull-request.yml", job) <= PREVIEW_ENVIRONMENTS
        assert all(s["with"]["command"] == "preview" for s in uses(job, "pulumi/actions"))


def test_merge_deploys_dev_then_prod_behind_reviewers():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert jobs["dev"]["with"]["stack"] == "dev" and jobs["prod"]["with"]["stack"] == "prod"
    assert jobs["prod"]["needs"] == "dev"
    up = load("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.stack }}"  # the prod environment has required reviewers
    assert environments("pulumi-up.yml", up) == DEPLOY_ENVIRONMENTS
    step = pulumi_step(up)
    assert step["with"]["command"] == "up" and step["with"]["policyPacks"] == "policy"


def test_deploys_run_from_main_only():
    """A workflow_dispatch from another branch does nothing: every deploy job, and every job in a
    deploy environment, is skipped unless the ref is main."""
    for job in load("deploy.yml")["jobs"].values():
        assert job["if"] == MAIN_ONLY
    seen = 0
    for workflow, job_id, job in all_jobs():
        if environments(workflow, job) & DEPLOY_ENVIRONMENTS or any(
                s["with"]["command"] == "up" for s in uses(job, "pulumi/actions")):
            assert MAIN_ONLY in job.get("if", ""), f"{workflow}:{job_id}"
            assert environments(workflow, job) <= DEPLOY_ENVIRONMENTS, f"{workflow}:{job_id}"
            seen += 1
    assert seen == 2  # pulumi-up's up and drift's drift


def test_nightly_drift_detection_fails_loudly():
    wf = load("drift.yml")
    assert wf["on"]["schedule"][0]["cron"]
    job = wf["jobs"]["drift"]
    step = pulumi_step(job)
    assert step["with"]["command"] == "preview"
    assert step["with"]["refresh"] is True and step["with"]["expect-no-changes"] is True
    report = wf["jobs"]["report"]
    assert report["needs"] == "drift" and report["if"].startswith("failure()")
    assert any("gh issue create" in s.get("run", "") for s in steps(report))
    # The job that may write issues holds no cloud credentials, and the other way round.
    assert report["permissions"] == {"issues": "write"}
    assert "issues" not in job["permissions"]


def test_one_deployment_per_stack_at_a_time():
    up = load("pulumi-up.yml")["jobs"]["up"]["concurrency"]
    drift = load("drift.yml")["jobs"]["drift"]["concurrency"]
    assert up["group"] == "pulumi-${{ inputs.stack }}" and up["cancel-in-progress"] is False
    assert drift["group"] == "pulumi-${{ matrix.stack }}" and drift["cancel-in-progress"] is False


def test_preview_and_deploy_runners_are_separate():
    preview = load("pull-request.yml")["jobs"]["preview"]["runs-on"]
    assert "vars.RUNNER_PREVIEW" in preview
    for job in (load("pulumi-up.yml")["jobs"]["up"], load("drift.yml")["jobs"]["drift"]):
        assert "vars.RUNNER_DEPLOY" in job["runs-on"] and "RUNNER_PREVIEW" not in job["runs-on"]


# --- credentials -------------------------------------------------------------------------------

@pytest.mark.parametrize("workflow", [w.name for w in WORKFLOWS])
def test_aws_and_pulumi_through_oidc_no_stored_credentials(workflow):
    text = (GITHUB / "workflows" / workflow).read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "aws-secret-access-key" not in text
    assert "secrets." not in text  # no stored credential at all: OIDC for AWS and for Pulumi
    for job in load(workflow)["jobs"].values():
        if "steps" not in job:
            continue
        names = [s.get("uses", "").split("@")[0] for s in steps(job)]
        for aws in uses(job, "aws-actions/configure-aws-credentials"):
            assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"  # per environment
            assert credentialed(job)
        for pulumi in uses(job, "pulumi/actions"):
            [auth] = uses(job, "pulumi/auth-actions")
            assert names.index("pulumi/auth-actions") < names.index("pulumi/actions")
            assert auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team"
            assert auth["with"]["scope"] == "team:${{ vars.PULUMI_TEAM }}"  # per environment
            token = pulumi["env"]["PULUMI_ACCESS_TOKEN"]
            assert token == "${{ steps.%s.outputs.pulumi-access-token }}" % auth["id"]
            assert credentialed(job)


def test_every_credentialed_job_runs_in_a_trusted_environment():
    seen = 0
    for workflow, job_id, job in all_jobs():
        if "uses" in job:  # a reusable-workflow call: its own jobs are checked here too
            continue
        gets_credentials = uses(job, "aws-actions/configure-aws-credentials") or uses(job, "pulumi/auth-actions")
        assert credentialed(job) == bool(gets_credentials), f"{workflow}:{job_id}"
        if credentialed(job):
            names = environments(workflow, job)
            assert names and names <= PREVIEW_ENVIRONMENTS | DEPLOY_ENVIRONMENTS, f"{workflow}:{job_id}"
            seen += 1
    assert seen == 3


def test_no_inherited_secrets():
    for path in WORKFLOWS:
        assert "inherit" not in path.read_text(), path.name
    for workflow, job_id, job in all_jobs():
        assert "secrets" not in job, f"{workflow}:{job_id}"


def test_minimal_permissions_per_job():
    allowed_writes = {"id-token", "pull-requests", "issues"}
    for path in WORKFLOWS:
        assert load(path.name)["permissions"] == {}, path.name  # nothing by default
    for workflow, job_id, job in all_jobs():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{workflow}:{job_id} must list its permissions"
        writes = {k for k, v in perms.items() if v == "write"}
        assert writes <= allowed_writes, f"{workflow}:{job_id}: {writes}"
        assert perms.get("contents", "read") == "read"
        if "pull-requests" in writes:
            assert (workflow, job_id) == ("pull-request.yml", "preview")
        if "issues" in writes:
            assert not credentialed(job)


# --- supply chain ------------------------------------------------------------------------------

def test_every_action_is_pinned_to_a_commit_with_its_tag_as_a_comment():
    pins: dict[str, tuple[str, str]] = {}
    for path in WORKFLOWS:
        lines = [m for m in map(USES_LINE.match, path.read_text().splitlines()) if m]
        jobs = load(path.name)["jobs"].values()
        parsed = [s["uses"] for j in jobs for s in steps(j) if "uses" in s]
        parsed += [j["uses"] for j in jobs if "uses" in j]
        assert sorted(m["ref"] for m in lines) == sorted(parsed), path.name
        for m in lines:
            ref = m["ref"]
            if ref.startswith("./"):
                continue  # this repository's reusable workflow, at the same commit
            assert SHA_PIN.match(ref), f"{path.name}: {ref} is not pinned to a 40-hex commit"
            tag = m["comment"].split()[0] if m["comment"] else ""
            assert re.fullmatch(r"v\d+(\.\d+)*", tag), f"{path.name}: {ref} lacks its tag comment"
            action, sha = ref.split("@")
            # One version of each action everywhere, so a bump can't leave a workflow behind.
            assert pins.setdefault(action, (sha, tag)) == (sha, tag), f"{action} pinned twice"
    assert {"actions/checkout", "actions/setup-python", "aws-actions/configure-aws-credentials",
            "pulumi/actions", "pulumi/auth-actions"} <= set(pins)


def test_every_checkout_leaves_no_credentials_behind():
    seen = 0
    for workflow, job_id, job in all_jobs():
        for step in uses(job, "actions/checkout"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{workflow}:{job_id}"
            seen += 1
    assert seen == 4


def _pip_installs(script: str) -> list[str]:
    commands = re.split(r"&&|\|\||;|\n", script)
    return [c.strip() for c in commands if re.search(r"\bpip3?\s+install\b", c)]


def test_credentialed_jobs_install_only_hash_locked_requirements():
    seen = 0
    for workflow, job_id, job in all_jobs():
        if not credentialed(job) or "uses" in job:
            continue
        for step in steps(job):
            for command in _pip_installs(step.get("run", "")):
                assert "--require-hashes" in command, f"{workflow}:{job_id}: {command}"
                [lock] = re.findall(r"-r\s+(\S+)", command)
                assert lock.endswith(".lock") and (ROOT / lock).is_file(), f"{workflow}:{job_id}: {command}"
                seen += 1
    assert seen == 5  # preview and up: program + policy pack; drift: program


def test_the_install_check_reads_every_pip_install():
    assert _pip_installs("python -m venv .venv && .venv/bin/pip install -r requirements.txt") == [
        ".venv/bin/pip install -r requirements.txt"]
    assert _pip_installs("pip3 install x; echo ok") == ["pip3 install x"]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    """name -> version of each `name==version` requirement (comments, options, hashes skipped)."""
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)(\s*;[^-]*)?(\s+--hash=\S+)*", line)
        assert m, f"not an exact pin: {line!r}"
        pins[_canon(m[1])] = m[3]
    return pins


@pytest.mark.parametrize("source,lock", LOCKS, ids=["root", "policy"])
def test_each_lock_pins_exactly_what_its_requirements_pin(source, lock):
    wanted = _pins(source.read_text())
    locked = _pins(lock.read_text())
    assert wanted, source
    assert {n: locked.get(n) for n in wanted} == wanted, (
        f"{lock.relative_to(ROOT)} is stale: regenerate it from {source.relative_to(ROOT)} (README: GitOps)")
    # Every locked distribution carries hashes, so `pip install --require-hashes` accepts the file.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for block in blocks:
        if re.match(r"[A-Za-z0-9]", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    assert "pip-compile" in lock.read_text() and "--generate-hashes" in lock.read_text()


def test_the_lock_check_catches_a_bump_of_one_without_the_other():
    source = "pulumi==3.272.0\npyyaml==6.0.3  # a comment\n"
    lock = "pulumi==3.272.0 \\\n    --hash=sha256:" + "0" * 64 + "\npyyaml==6.0.2 \\\n    --hash=sha256:" + "1" * 64 + "\n"
    wanted, locked = _pins(source), _pins(lock)
    assert {n: locked.get(n) for n in wanted} != wanted


@needs_zizmor
def test_zizmor_finds_nothing():
    result = subprocess.run([ZIZMOR, "--offline", "--no-progress", str(GITHUB / "workflows")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_zizmor_suppression_gives_a_reason():
    for path in [*WORKFLOWS, GITHUB / "dependabot.yml"]:
        for line in path.read_text().splitlines():
            if "zizmor:" in line:
                assert re.search(r"# zizmor: ignore\[[a-z0-9,-]+\]\s+\S", line), f"{path.name}: {line.strip()}"
