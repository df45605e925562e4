"""Monitoring: kube-prometheus-stack (Prometheus, Alertmanager, Grafana with its dashboards
sidecar), prometheus-adapter serving TGI's queue size to the autoscalers, and the alert rules and
Grafana dashboards it is given (the serving layer writes them: components/serving/alerts.py,
dashboards.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..config import MonitoringConfig
from . import charts
from .secrets import SECRET_DATA

NAMESPACE = "monitoring"
RELEASE = "kube-prometheus-stack"  # Prometheus selects ServiceMonitors etc. labelled release=<this>
SELECTED = {"release": RELEASE}
PROMETHEUS_URL = f"http://{RELEASE}-prometheus.{NAMESPACE}.svc"
GRAFANA_ADMIN_SECRET = "grafana-admin"


def prometheus_stack_values(cfg: MonitoringConfig, storage_class: pulumi.Input[str]) -> dict:
    return {
        "crds": {"enabled": True},
        # EKS runs the control plane and keeps kube-proxy's metrics on localhost: nothing to
        # scrape there, and their "down" alerts would fire forever.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "prometheus": {"prometheusSpec": {
            "retention": cfg.retention,
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{cfg.storage_gi_b}Gi"}}}}},
        }},
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user",
                      "passwordKey": "admin-password"},
            # A Role in `monitoring`, not a ClusterRole: the sidecars read ConfigMaps and Secrets
            # (grafana chart 12.11.1 templates/role.yaml, clusterrole.yaml), here only its own.
            "rbac": {"namespaced": True},
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                       "labelValue": "1", "searchNamespace": NAMESPACE}},
        },
        # Its RBAC follows its collectors (kube-state-metrics chart 8.4.0 templates/role.yaml):
        # without the secrets collector it may not list Secrets.
        "kube-state-metrics": {"collectorsExclude": ["secrets"]},
    }


def prometheus_adapter_values() -> dict:
    """TGI's queue size per pod as a custom metric for the HPA (docs/eks.md)."""
    return {
        "prometheus": {"url": PROMETHEUS_URL, "port": 9090},
        "rules": {"default": False, "custom": [{
            "seriesQuery": 'tgi_queue_size{namespace!="",pod!=""}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                        "pod": {"resource": "pod"}}},
            "name": {"matches": "^tgi_queue_size$", "as": "tgi_queue_size"},
            "metricsQuery": "avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }]},
    }


@dataclass
class MonitoringArgs:
    config: MonitoringConfig
    storage_class: pulumi.Input[str]
    rule_groups: list[dict]  # PrometheusRule groups
    dashboards: dict[str, dict]  # Grafana dashboards by file name
    nodes: Optional[list[pulumi.Resource]] = None  # the controllers run on these


class Monitoring(pulumi.ComponentResource):
    stack: k8s.helm.v3.Release  # its CRDs must exist before ServiceMonitors and rules

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:addons:Monitoring", name, None, opts)
        ns = k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": NAMESPACE},
                                   opts=pulumi.ResourceOptions(parent=self))
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        # Grafana's admin password is generated and kept in Pulumi's state as a secret, not the
        # chart's well-known default.
        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        admin = k8s.core.v1.Secret(f"{name}-grafana-admin", metadata={
            "name": GRAFANA_ADMIN_SECRET, "namespace": NAMESPACE,
        }, type="Opaque", string_data={"admin-user": "admin",
                                       "admin-password": pulumi.Output.secret(password.result)},
            opts=in_ns.merge(SECRET_DATA))
        self.grafana_admin_password = pulumi.Output.secret(password.result)

        self.stack = charts.release(self, f"{name}-prometheus", charts.KUBE_PROMETHEUS_STACK,
                                    RELEASE, NAMESPACE,
                                    prometheus_stack_values(args.config, args.storage_class),
                                    depends_on=[ns, admin, *(args.nodes or [])])
        after_crds = pulumi.ResourceOptions(parent=self, depends_on=[self.stack])
        charts.release(self, f"{name}-adapter", charts.PROMETHEUS_ADAPTER, "prometheus-adapter",
                       NAMESPACE, prometheus_adapter_values(), depends_on=[self.stack])

        k8s.apiextensions.CustomResource(
            f"{name}-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata={"name": "llmserve", "namespace": NAMESPACE, "labels": SELECTED},
            spec={"groups": args.rule_groups},
            opts=after_crds)
        k8s.core.v1.ConfigMap(f"{name}-dashboard", metadata={
            "name": "llmserve-dashboard", "namespace": NAMESPACE,
            "labels": {"grafana_dashboard": "1"},
        }, data={file: json.dumps(board, indent=1) for file, board in args.dashboards.items()},
            opts=in_ns)
        self.register_outputs({})
