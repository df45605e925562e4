"""What the models share: the namespace and its Pod Security, the API key and HF token Secrets."""

from __future__ import annotations

from components.offline import mockrun

from ..conftest import run_settings
from .helpers import manifest


def test_namespace_enforces_baseline_pod_security_and_alb_readiness_gates(dev_run):
    labels = manifest(dev_run, "kubernetes:core/v1:Namespace", "llm")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_api_key_from_config_stays_secret(dev_settings):
    dev_settings["apiKey"] = "key-from-config-123"
    run = run_settings(dev_settings)
    secret = run.one("kubernetes:core/v1:Secret", "llmserve-test-serving-api-key")
    assert mockrun.is_secret(secret.inputs["stringData"])
    assert mockrun.reveal(secret.inputs, mask=False)["stringData"] == {"API_KEY": "key-from-config-123"}
    assert [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")] == [
        "llmserve-test-monitoring-grafana-admin"]
    assert mockrun.is_secret(run.outputs["apiKey"])


def test_without_an_api_key_one_is_generated(dev_run):
    password = mockrun.reveal(dev_run.one("random:index/randomPassword:RandomPassword",
                                          "llmserve-dev-serving-api-key").inputs)
    assert password["length"] >= 32
    assert mockrun.is_secret(dev_run.outputs["apiKey"])


def test_hf_token_becomes_a_kubernetes_secret(dev_settings):
    dev_settings["hfToken"] = "hf_plain_token_value"
    run = run_settings(dev_settings)
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "hf-token")
    assert mockrun.is_secret(secret.inputs["stringData"])
