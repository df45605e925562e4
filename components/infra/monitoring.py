"""Monitoring: kube-prometheus-stack (Prometheus, Alertmanager, Grafana with its dashboards
sidecar), prometheus-adapter serving each engine's queue to the autoscalers, and the alert rules and
Grafana dashboards it is given (the serving layer writes them: components/serving/alerts.py,
dashboards.py). Prometheus and Alertmanager run two replicas each in two zones; Alertmanager
routes by severity to the receivers of `monitoring.alerting`, reading their keys from a Secret."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..config import MonitoringConfig
from ..config.monitoring import AlertingConfig
from . import charts
from .secrets import SECRET_DATA

NAMESPACE = "monitoring"
RELEASE = "kube-prometheus-stack"  # Prometheus selects ServiceMonitors etc. labelled release=<this>
SELECTED = {"release": RELEASE}
PROMETHEUS_URL = f"http://{RELEASE}-prometheus.{NAMESPACE}.svc"
GRAFANA_ADMIN_SECRET = "grafana-admin"
RECEIVERS_SECRET = "alertmanager-receivers"  # one key per secret stack setting it holds
# alertmanagerSpec.secrets are mounted at /etc/alertmanager/secrets/<name>/ (prometheus-operator
# v0.93.0 pkg/alertmanager/statefulset.go, secretsDir).
SECRETS_DIR = f"/etc/alertmanager/secrets/{RECEIVERS_SECRET}"
# The pods' selector labels (prometheus-operator v0.93.0 makeSelectorLabels in
# pkg/prometheus/server/operator.go and pkg/alertmanager/operator.go); the chart names the custom
# resources <release>-prometheus and <release>-alertmanager.
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus", "prometheus": f"{RELEASE}-prometheus"}
ALERTMANAGER_PODS = {"app.kubernetes.io/name": "alertmanager", "alertmanager": f"{RELEASE}-alertmanager"}
REPLICAS = 2
# Prometheus' advice: a size retention of at most 80-85% of the volume, which must also hold the
# WAL and head chunks (prometheus/prometheus docs/storage.md, "Right-Sizing Retention Size").
RETENTION_SIZE_SHARE = 0.8
GROUP_BY = ["alertname", "namespace", "model"]
# Docker's official busybox image (docker-library/official-images library/busybox): the CRD
# upgrade job unpacks the CRDs with it; the chart's default tag is `latest`.
BUSYBOX_TAG = "1.37.0"


def zone_spread(pods: dict) -> list[dict]:
    """Replicas in different zones where the nodes allow it. Zones of tainted nodes (the GPU
    groups) are not counted (nodeTaintsPolicy Honor), or the second replica would wait for one."""
    return [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
             "labelSelector": {"matchLabels": pods}}]


def retention_size(storage_gib: int) -> str:
    """Prometheus' sizes are powers of 2: its GB is a GiB (docs/storage.md)."""
    return f"{int(storage_gib * RETENTION_SIZE_SHARE)}GB"


def _receiver(name: str, kinds: list[str], alerting: AlertingConfig) -> dict:
    """One Alertmanager receiver; every key or URL is a file of the receivers Secret (the *_file
    fields of prometheus/alertmanager v0.34.0, the chart's image: notify/pagerduty/config.go,
    config/notifiers.go)."""
    out: dict = {"name": name}
    if "pagerduty" in kinds:  # Events API v2: a routing (integration) key
        out["pagerduty_configs"] = [{"routing_key_file": f"{SECRETS_DIR}/pagerdutyRoutingKey",
                                     "send_resolved": True}]
    if "slack" in kinds:  # an incoming webhook: its URL names the channel
        out["slack_configs"] = [{
            "api_url_file": f"{SECRETS_DIR}/slackWebhookUrl", "send_resolved": True,
            # Alertmanager's default Slack text is empty: the summary, description and runbook.
            "text": "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}"
                    "{{ if .Annotations.runbook_url }}\n<{{ .Annotations.runbook_url }}|runbook>{{ end }}"
                    "\n{{ end }}"}]
    if "email" in kinds:
        email = alerting.email
        config = {"to": ", ".join(email.to), "from": email.from_address, "smarthost": email.smarthost,
                  "send_resolved": True}
        if email.auth_username:
            config.update(auth_username=email.auth_username,
                          auth_password_file=f"{SECRETS_DIR}/smtpPassword")
        out["email_configs"] = [config]
    return out


def alertmanager_config(alerting: Optional[AlertingConfig]) -> dict:
    """Alertmanager's routing: critical and warning to their receivers, the Watchdog to the
    heartbeat, info and the chart's InfoInhibitor to nowhere. No secret in it: only file paths.

    Helm merges these maps into the chart's `alertmanager.config` and replaces its lists; every key
    of the chart's route is set here."""
    routes = {"critical": alerting.critical if alerting else ["none"],
              "warning": alerting.warning if alerting else ["none"]}
    receivers = [{"name": "null"}]
    target = {}
    for severity, kinds in routes.items():
        target[severity] = "null" if kinds == ["none"] else severity
        if kinds != ["none"]:
            receivers.append(_receiver(severity, kinds, alerting))
    heartbeat = bool(alerting and alerting.heartbeat)
    if heartbeat:
        receivers.append({"name": "heartbeat", "webhook_configs": [
            {"url_file": f"{SECRETS_DIR}/heartbeatUrl", "send_resolved": False}]})
    return {
        "route": {
            # An alert of another severity goes where warnings go rather than nowhere.
            "receiver": target["warning"], "group_by": GROUP_BY,
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h",
            "routes": [
                # kube-prometheus' always-firing alert: sent every minute, its absence pages.
                {"receiver": "heartbeat" if heartbeat else "null", "matchers": ['alertname = "Watchdog"'],
                 "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"},
                {"receiver": "null", "matchers": ['alertname = "InfoInhibitor"']},
                {"receiver": target["critical"], "matchers": ['severity = "critical"'],
                 "repeat_interval": "4h"},
                {"receiver": target["warning"], "matchers": ['severity = "warning"']},
                {"receiver": "null", "matchers": ['severity =~ "info|none"']},
            ],
        },
        "receivers": receivers,
        # The chart's rules, grouped like the routes: a critical alert silences the warning and
        # info of the same alert, namespace and model; InfoInhibitor (kube-prometheus) silences
        # the info alerts of its namespace.
        "inhibit_rules": [
            {"source_matchers": ['severity = "critical"'], "target_matchers": ['severity =~ "warning|info"'],
             "equal": GROUP_BY},
            {"source_matchers": ['severity = "warning"'], "target_matchers": ['severity = "info"'],
             "equal": GROUP_BY},
            {"source_matchers": ['alertname = "InfoInhibitor"'], "target_matchers": ['severity = "info"'],
             "equal": ["namespace"]},
        ],
    }


def prometheus_stack_values(cfg: MonitoringConfig, storage_class: pulumi.Input[str]) -> dict:
    secrets = cfg.alerting.secrets() if cfg.alerting else {}
    return {
        # Helm installs CRDs but never upgrades them: the chart's pre-upgrade job applies them
        # server-side, forcing past Helm's field ownership (values.yaml `crds.upgradeJob`,
        # charts/crds/templates/upgrade/job.yaml at kube-prometheus-stack-88.5.3).
        "crds": {"enabled": True, "upgradeJob": {
            "enabled": True, "forceConflicts": True, "image": {"busybox": {"tag": BUSYBOX_TAG}}}},
        # EKS runs the control plane and keeps kube-proxy's metrics on localhost: nothing to
        # scrape there, and their "down" alerts would fire forever.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        # Two Prometheus scrape the same targets; the adapter and Grafana query the Service, which
        # answers from either (a rule evaluated on both fires once: Alertmanager deduplicates).
        "prometheus": {"podDisruptionBudget": {"enabled": True}, "prometheusSpec": {
            "replicas": REPLICAS, "topologySpreadConstraints": zone_spread(PROMETHEUS_PODS),
            "retention": cfg.retention, "retentionSize": retention_size(cfg.storage_gi_b),
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{cfg.storage_gi_b}Gi"}}}}},
        }},
        "alertmanager": {
            "config": alertmanager_config(cfg.alerting),
            "podDisruptionBudget": {"enabled": True},
            "alertmanagerSpec": {"replicas": REPLICAS,
                                 "topologySpreadConstraints": zone_spread(ALERTMANAGER_PODS),
                                 "secrets": [RECEIVERS_SECRET] if secrets else []},
        },
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


# vLLM's queue for its HPAs: the Prometheus series (with the `namespace` and `pod` labels of the
# model's PodMonitor) and the name the custom metrics API serves it under, a path segment of
# /apis/custom.metrics.k8s.io/v1beta1/namespaces/<ns>/pods/*/<name>.
VLLM_QUEUE_SERIES = "vllm:num_requests_waiting"
VLLM_QUEUE_METRIC = "vllm_num_requests_waiting"


def _per_pod() -> dict:
    return {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def prometheus_adapter_values() -> dict:
    """Each engine's queue per pod as a custom metric for the HPA (docs/eks.md): TGI's queue size,
    and vLLM's requests waiting (vllm-project/vllm@v0.33.0:vllm/v1/metrics/loggers.py). Naming
    (kubernetes-sigs/prometheus-adapter docs/config.md): `name.matches` selects the series name,
    `as` is the API's name, here without vLLM's `:`."""
    return {
        "prometheus": {"url": PROMETHEUS_URL, "port": 9090},
        "rules": {"default": False, "custom": [{
            "seriesQuery": 'tgi_queue_size{namespace!="",pod!=""}',
            "resources": {"overrides": _per_pod()},
            "name": {"matches": "^tgi_queue_size$", "as": "tgi_queue_size"},
            "metricsQuery": "avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }, {
            "seriesQuery": f'{VLLM_QUEUE_SERIES}{{namespace!="",pod!=""}}',
            "resources": {"overrides": _per_pod()},
            "name": {"matches": f"^{VLLM_QUEUE_SERIES}$", "as": VLLM_QUEUE_METRIC},
            # One series per engine core (`engine`): a data-parallel pod's waiting requests are
            # their sum.
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }]},
    }


@dataclass
class MonitoringArgs:
    config: MonitoringConfig
    storage_class: pulumi.Input[str]
    rule_groups: list[dict]  # PrometheusRule groups
    dashboards: dict[str, dict]  # Grafana dashboards by file name
    nodes: Optional[list[pulumi.Resource]] = None  # the controllers run on these
    # The receivers' keys and URLs by secret stack setting (Stack.alerting_secrets).
    alerting_secrets: dict[str, pulumi.Input[str]] = field(default_factory=dict)


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
        before = [ns, admin]
        alerting = args.config.alerting
        missing = set(alerting.secrets() if alerting else {}) - set(args.alerting_secrets)
        if missing:
            raise ValueError(f"MonitoringArgs.alerting_secrets lacks {', '.join(sorted(missing))}")
        # Alertmanager reads these files at each notification (prometheus/alertmanager v0.34.0
        # notify/pagerduty/pagerduty.go, notify/webhook/webhook.go): a rotated key needs no restart.
        if args.alerting_secrets:
            before.append(k8s.core.v1.Secret(f"{name}-alertmanager-receivers", metadata={
                "name": RECEIVERS_SECRET, "namespace": NAMESPACE,
            }, type="Opaque", string_data={key: pulumi.Output.secret(value)
                                           for key, value in args.alerting_secrets.items()},
                opts=in_ns.merge(SECRET_DATA)))

        self.stack = charts.release(self, f"{name}-prometheus", charts.KUBE_PROMETHEUS_STACK,
                                    RELEASE, NAMESPACE,
                                    prometheus_stack_values(args.config, args.storage_class),
                                    depends_on=[*before, *(args.nodes or [])])
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
