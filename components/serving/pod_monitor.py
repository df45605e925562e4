"""The PodMonitor of a model: Prometheus scrapes every TGI pod of both slots (the inactive one
too: its autoscaler and the dashboards need its metrics), labelling series `model` and `slot`."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from .labels import component
from .scope import Scope


def pod_monitor(scope: Scope, prometheus_selector: dict[str, str],
                monitoring: Optional[pulumi.Resource]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        f"{scope.name}-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
        metadata=scope.metadata(scope.model, {**scope.labels, **prometheus_selector}),
        spec={
            "selector": {"matchLabels": component(scope.model, "server")},
            "podMetricsEndpoints": [{
                "port": "metrics", "path": "/metrics", "interval": "15s",
                "relabelings": [
                    {"sourceLabels": ["__meta_kubernetes_pod_label_llmserve_model"],
                     "targetLabel": "model", "action": "replace"},
                    {"sourceLabels": ["__meta_kubernetes_pod_label_llmserve_slot"],
                     "targetLabel": "slot", "action": "replace"},
                ],
            }],
        },
        opts=scope.opts(depends_on=[monitoring] if monitoring else []))
