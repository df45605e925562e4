"""The autoscaler and the disruption budget of each slot."""

from __future__ import annotations

from ..conftest import run_settings
from .helpers import DEPLOYMENT, manifest


def test_hpa_scales_on_tgi_queue_size(prod_run):
    hpa = manifest(prod_run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "qwen-14b-blue")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "tgi_queue_size"},
                                                         "target": {"type": "AverageValue", "averageValue": "10"}}}]
    assert hpa["behavior"]["scaleUp"]["policies"] and hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen-14b-blue"}
    assert "replicas" not in manifest(prod_run, DEPLOYMENT, "qwen-14b-blue")["spec"]  # the HPA's


def test_fixed_replicas_need_no_hpa(dev_settings):
    dev_settings["models"][0]["replicas"] = {"min": 2, "max": 2}
    run = run_settings(dev_settings)
    assert run.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") == []
    assert manifest(run, DEPLOYMENT)["spec"]["replicas"] == 2


def test_pdb_lets_drains_proceed_one_pod_at_a_time(prod_run):
    pdb = manifest(prod_run, "kubernetes:policy/v1:PodDisruptionBudget", "qwen-14b-blue")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {"llmserve/model": "qwen-14b", "llmserve/slot": "blue"}}}


def test_a_single_replica_behind_the_gateway_is_never_evicted(prod_run):
    """prod's qwen-72b runs one replica (evictions: block): no eviction may take it, and a
    rollout starts the new pod before the old one stops; qwen-14b (two or more) goes one by one."""
    budgets = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in prod_run.of_type(
        "kubernetes:policy/v1:PodDisruptionBudget")}
    assert budgets["qwen-72b-blue"]["maxUnavailable"] == 0
    assert budgets["qwen-14b-blue"]["maxUnavailable"] == 1
    strategy = {r.inputs["metadata"]["name"]: r.inputs["spec"]["strategy"]["rollingUpdate"]
                for r in prod_run.of_type(DEPLOYMENT)}
    assert strategy["qwen-72b-blue"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert strategy["qwen-14b-blue"] == {"maxSurge": 0, "maxUnavailable": 1}
