"""The gateway's PodMonitor: Prometheus scrapes each Envoy proxy pod of the Gateway on two ports,
the AI Gateway's ext_proc sidecar (its GenAI metrics: tokens, request duration, time to first
token and per output token, by team and model) and Envoy itself (its stats: responses by class,
the refusals of the key check, the authorization and the rate limit). The alerts and the
dashboard that read them: gateway_alerts.gateway_rules, dashboards.gateway_dashboard.

The same scrape as the AI Gateway's example (envoyproxy/ai-gateway v1.1.0
examples/monitoring/monitoring.yaml), as a PodMonitor of the Prometheus Operator. The PodMonitor
lives beside the pods, in Envoy Gateway's namespace: kube-prometheus-stack's Prometheus selects
PodMonitors in every namespace (`podMonitorNamespaceSelector: {}`, the chart's default, which
infra/monitoring.py keeps) that carry its release label (`podMonitorSelectorNilUsesHelmValues`),
and a PodMonitor selects pods of its own namespace unless told otherwise."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from ..infra.gateway_controllers import ENVOY_GATEWAY_NAMESPACE
from ..infra.monitoring import SELECTED
from .pod_monitor import SCRAPE_INTERVAL

MONITOR_NAME = "llmserve-gateway"
# Envoy's stats: container port `metrics` (19001), path /stats/prometheus (envoyproxy/gateway
# v1.8.3 internal/infrastructure/kubernetes/proxy/resource.go expectedProxyContainers,
# resource_provider.go's prometheus.io/path, internal/xds/bootstrap/bootstrap.go EnvoyStatsPort).
ENVOY_PORT, ENVOY_PATH = "metrics", "/stats/prometheus"
# The ext_proc's admin server: port `aigw-admin` (1064), path /metrics (envoyproxy/ai-gateway
# v1.1.0 internal/controller/extproc_builder.go, cmd/extproc/mainlib/admin.go). A native sidecar
# (an init container that keeps running) where Kubernetes has them: Prometheus' pod discovery
# lists init containers' ports too.
EXTPROC_PORT, EXTPROC_PATH = "aigw-admin", "/metrics"
INTERVAL = SCRAPE_INTERVAL  # the models' PodMonitors'


def gateway_endpoints(interval: str = INTERVAL) -> list[dict]:
    return [{"port": port, "path": path, "interval": interval}
            for port, path in ((EXTPROC_PORT, EXTPROC_PATH), (ENVOY_PORT, ENVOY_PATH))]


def gateway_pod_monitor(parent: pulumi.Resource, name: str, selector: dict[str, str],
                        monitoring: Optional[pulumi.Resource],
                        namespace: str = ENVOY_GATEWAY_NAMESPACE,
                        prometheus_selector: Optional[dict[str, str]] = None,
                        depends_on: Sequence[pulumi.Resource] = (),
                        interval: str = INTERVAL) -> k8s.apiextensions.CustomResource:
    """The PodMonitor `llmserve-gateway` of the proxies matching `selector` (their labels, e.g.
    serving/gateway.py PROXY_PODS) in `namespace` (Envoy Gateway's, where the proxies run),
    labelled `prometheus_selector` (default: infra/monitoring.py SELECTED). `name` prefixes the
    Pulumi resource's name; `monitoring` is the release whose CRDs it needs, `depends_on` more
    (the Envoy Gateway release that makes the namespace)."""
    after = [*([monitoring] if monitoring is not None else []), *depends_on]
    return k8s.apiextensions.CustomResource(
        f"{name}-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
        metadata={"name": MONITOR_NAME, "namespace": namespace,
                  "labels": {"app.kubernetes.io/part-of": "llmserve",
                             **(SELECTED if prometheus_selector is None else prometheus_selector)}},
        spec={"selector": {"matchLabels": dict(selector)},
              "podMetricsEndpoints": gateway_endpoints(interval)},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=after))
