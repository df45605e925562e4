"""A slot's HorizontalPodAutoscaler (on its engine's queue per pod) and PodDisruptionBudget."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from ..config import Replicas
from .scope import Scope
from .slots import SlotSpec
from .workload import slot_labels, slot_selector


def autoscaler(scope: Scope, spec: SlotSpec, replicas: Replicas,
               deployment: k8s.apps.v1.Deployment) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    slot = spec.slot.slot
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{scope.name}-{slot}-hpa", metadata=scope.metadata(
        f"{scope.model}-{slot}", slot_labels(scope, spec),
    ), spec={
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment.metadata.name},
        "minReplicas": replicas.min,
        "maxReplicas": replicas.max,
        # The engine's queue per pod, served to the HPA by the metrics adapter (docs/eks.md):
        # TGI's tgi_queue_size, vLLM's vllm:num_requests_waiting.
        "metrics": [{"type": "Pods", "pods": {
            "metric": {"name": spec.engine.queue_metric},
            "target": {"type": "AverageValue", "averageValue": str(replicas.target_queue_size)}}}],
        # A GPU replica takes minutes to start: add one at a time, remove slowly.
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
            "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
        },
    }, opts=scope.opts())


def disruption_budget(scope: Scope, spec: SlotSpec, block: bool = False) -> k8s.policy.v1.PodDisruptionBudget:
    slot = spec.slot.slot
    # Node drains and upgrades take one replica at a time; with `block`, none (a node roll waits
    # for the model to be moved with blue-green: docs/runbook.md).
    return k8s.policy.v1.PodDisruptionBudget(f"{scope.name}-{slot}-pdb", metadata=scope.metadata(
        f"{scope.model}-{slot}", slot_labels(scope, spec),
    ), spec={"maxUnavailable": 0 if block else 1, "selector": {"matchLabels": slot_selector(scope, slot)}},
        opts=scope.opts())
