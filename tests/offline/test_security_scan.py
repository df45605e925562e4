"""checkov's Kubernetes checks on what every stack renders: zero failed checks. A check that does
not apply is skipped only by an annotation with its reason on the object itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from ..conftest import ALL_STACKS, ROOT, stack_settings

CHECKOV = next((c for c in (str(ROOT / ".venv-checkov" / "bin" / "checkov"), shutil.which("checkov"))
                if c and os.path.exists(c)), None)
pytestmark = pytest.mark.skipif(CHECKOV is None and not os.environ.get("CI"),
                                reason="checkov is not installed; .ci/run installs it in .venv-checkov")


def _scan(directory) -> list[dict]:
    assert CHECKOV, "checkov is required (.ci/run installs it in .venv-checkov)"
    result = subprocess.run([CHECKOV, "-d", str(directory), "--framework", "kubernetes",
                             "--output", "json", "--skip-download"],  # offline: no Prisma Cloud look-ups
                            capture_output=True, text=True, timeout=300)
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_no_failed_checks(rendered, stack):
    [report] = _scan(rendered[stack] / "kubernetes")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 100


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_every_skip_carries_its_reason_on_the_object(rendered, stack):
    [report] = _scan(rendered[stack] / "kubernetes")
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the TGI workloads run as root: that exception must show up as a skip"
    for check in skipped:
        assert len(check.get("check_result", {}).get("suppress_comment", "")) > 20, check["check_id"]
    run_as_root = {c["resource"] for c in skipped if c["check_id"] == "CKV_K8S_23"}
    assert run_as_root and all(r.startswith(("Deployment.llm.", "Job.llm.")) for r in run_as_root)
    if stack_settings(stack).get("gateway"):  # engines behind the gateway hold no key: no secret in env
        assert not [c for c in skipped if c["check_id"] == "CKV_K8S_35" and c["resource"].startswith("Deployment.")]


def test_the_scan_fails_on_an_insecure_manifest(tmp_path):
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: default}\n"
        "spec:\n  containers:\n  - name: c\n    image: nginx:latest\n    securityContext: {privileged: true}\n")
    [report] = _scan(tmp_path)
    assert "CKV_K8S_16" in {c["check_id"] for c in report["results"]["failed_checks"]}  # privileged
