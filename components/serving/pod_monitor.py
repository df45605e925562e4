"""The PodMonitor of a model: Prometheus scrapes every serving pod of both slots (the inactive one
too: its autoscaler and the dashboards need its metrics), labelling series `model` and `slot`.
Each engine on its own metrics port (TGI's `metrics`, vLLM's `http`); with two engines (a
migration), each endpoint keeps only its engine's pods (their `app.kubernetes.io/name`)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from .labels import component
from .scope import Scope


ENGINE_POD_LABEL = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
SCRAPE_INTERVAL = "15s"  # every PodMonitor's (the gateway's too)


def _endpoint(port: str, engine: Optional[str]) -> dict:
    keep = [] if engine is None else [
        {"sourceLabels": [ENGINE_POD_LABEL], "regex": engine, "action": "keep"}]
    return {
        "port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL,
        "relabelings": [
            *keep,
            {"sourceLabels": ["__meta_kubernetes_pod_label_llmserve_model"],
             "targetLabel": "model", "action": "replace"},
            {"sourceLabels": ["__meta_kubernetes_pod_label_llmserve_slot"],
             "targetLabel": "slot", "action": "replace"},
        ],
    }


def pod_monitor(scope: Scope, prometheus_selector: dict[str, str],
                monitoring: Optional[pulumi.Resource],
                metrics_ports: dict[str, str]) -> k8s.apiextensions.CustomResource:
    """`metrics_ports`: engine name -> the port its pods serve /metrics on, for the model's slots."""
    several = len(metrics_ports) > 1
    return k8s.apiextensions.CustomResource(
        f"{scope.name}-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
        metadata=scope.metadata(scope.model, {**scope.labels, **prometheus_selector}),
        spec={
            "selector": {"matchLabels": component(scope.model, "server")},
            "podMetricsEndpoints": [_endpoint(port, engine if several else None)
                                    for engine, port in metrics_ports.items()],
        },
        opts=scope.opts(depends_on=[monitoring] if monitoring else []))
