"""TgiService: one model served by Text Generation Inference on the GPU nodes.

Per model: a ServiceAccount without a token, the model cache (a ReadWriteMany volume on EFS),
a NetworkPolicy, a Service selecting the active slot and, with an ingress configured, an Ingress
on the shared ALB. Per slot (blue, green): a Job that downloads the pinned revision into the
cache, the Deployment (created once the Job is done), its autoscaler and disruption budget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from . import tgi
from .catalog import CATALOG, GpuInstance
from .config import IngressConfig, ModelConfig, Plans, Replicas, Slot, StackConfig
from .modellock import Lock
from .monitoring import NAMESPACE as MONITORING_NAMESPACE
from .node_group import GPU_TOLERATION, NODE_GROUP_LABEL
from .planner import Plan
from .serving import API_KEY_KEY, API_KEY_SECRET, HF_TOKEN_KEY

PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}  # the operator labels Prometheus' pods so
SYSTEM_GROUP = "system"
SLOT_LABEL = "llmserve/slot"
MODEL_LABEL = "llmserve/model"


@dataclass
class SlotSpec:
    slot: Slot
    plan: Plan
    revision: str  # the commit the lock pinned
    gated: bool
    instances: list[GpuInstance]  # the instance types of its node group


def slot_specs(model: ModelConfig, settings: StackConfig, plans: Plans, lock: Lock) -> list[SlotSpec]:
    groups = {g.name: g for g in settings.gpu_node_groups}
    specs = []
    for s in model.resolved_slots():
        entry = lock.find(s.id, s.revision)
        specs.append(SlotSpec(slot=s, plan=plans[model.name][s.slot],
                              # the commit the lock pinned, else what the config says
                              revision=entry.revision or s.revision, gated=entry.gated,
                              instances=[CATALOG[t] for t in groups[s.node_group].instance_types]))
    return specs


@dataclass
class TgiServiceArgs:
    model: str  # the model's name (DNS label)
    namespace: pulumi.Input[str]
    slots: list[SlotSpec]
    active: str
    replicas: Replicas
    storage_class: pulumi.Input[str]
    lb_source_cidrs: list[str]  # where the load balancer's traffic and health checks come from
    hf_token_secret: Optional[pulumi.Input[str]] = None
    ingress: Optional[IngressConfig] = None
    waf_acl_arn: Optional[pulumi.Input[str]] = None
    # Monitoring: the labels Prometheus selects monitors by, and what brings the CRDs.
    prometheus_selector: Optional[dict[str, str]] = None
    monitoring: Optional[pulumi.Resource] = None
    load_balancer_controller: Optional[pulumi.Resource] = None


# The security checks these workloads knowingly do not meet, each with its reason, as checkov's
# skip annotations on the objects (no global skip list anywhere).
_ROOT = ("the TGI image runs as root and fails under any other UID (libpython under /root, "
         "huggingface/text-generation-inference#3082); privileges, capabilities and the token are dropped instead")
CHECKOV_SKIPS = {
    "CKV_K8S_23": _ROOT,
    "CKV_K8S_40": _ROOT,
    "CKV_K8S_22": "TGI writes to /tmp and to kernel and compiler caches under the root filesystem",
    "CKV_K8S_43": "pinned to a release tag by the stack config (models[].image); give tag@sha256:... to pin bytes",
    "CKV_K8S_15": "the tag is pinned and never moves: IfNotPresent starts pods from the node's cached image "
                  "when the registry is unreachable",
}
SECRET_ENV_SKIP = {"CKV_K8S_35": "TGI reads API_KEY from its environment only (launcher setting)"}


def checkov_skips(skips: dict[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips.items(), 1)}


def _hardened(container: dict) -> dict:
    # The TGI image runs as root: any other UID fails to start (libpython under /root,
    # huggingface/text-generation-inference#3082), so runAsNonRoot cannot be set. Everything else
    # is locked down: no privilege escalation, no capabilities, no service account token.
    return {**container, "securityContext": {
        "allowPrivilegeEscalation": False, "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        # TGI writes to /tmp and kernel caches under the root filesystem.
        "readOnlyRootFilesystem": False,
    }}


def _pod_security() -> dict:
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def download_job_name(model: str, model_id: str, revision: str) -> str:
    """A Job per (model, revision): a new revision gets a new download Job."""
    digest = hashlib.sha256(f"{model_id}@{revision}".encode()).hexdigest()[:10]
    return f"{model}-download-{digest}"


class TgiService(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    deployments: dict[str, k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: TgiServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:serving:TgiService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        model, ns = args.model, args.namespace
        labels = {"app.kubernetes.io/name": "tgi", "app.kubernetes.io/instance": model,
                  "app.kubernetes.io/part-of": "llmserve", MODEL_LABEL: model}

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={
            "name": model, "namespace": ns, "labels": labels,
        }, automount_service_account_token=False, opts=child)
        cache = k8s.core.v1.PersistentVolumeClaim(f"{name}-cache", metadata={
            "name": f"{model}-cache", "namespace": ns, "labels": labels,
        }, spec={
            "accessModes": ["ReadWriteMany"],
            "storageClassName": args.storage_class,
            "resources": {"requests": {"storage": f"{tgi.cache_request_gib(max(s.plan.weights_bytes for s in args.slots))}Gi"}},
        }, opts=child)

        # The download Jobs start once they may reach DNS and the Hub (the namespace denies all).
        download_policy = self._network_policies(name, args, labels)
        self.deployments = {}
        for spec in args.slots:
            job = self._download_job(name, args, spec, labels, account, cache, download_policy)
            self.deployments[spec.slot.slot] = self._slot(name, args, spec, labels, account, cache, job)

        service = k8s.core.v1.Service(f"{name}-svc", metadata={
            "name": model, "namespace": ns, "labels": labels,
        }, spec={
            "type": "ClusterIP",
            # Blue-green: traffic goes to the active slot only.
            "selector": {MODEL_LABEL: model, SLOT_LABEL: args.active},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                      {"name": "metrics", "port": tgi.METRICS_PORT, "targetPort": "metrics",
                       "protocol": "TCP"}],
        }, opts=child)
        self.service_name = service.metadata.name
        if args.ingress is not None:
            self._ingress(name, args, labels, service)
        if args.prometheus_selector is not None:
            self._pod_monitor(name, args, labels)
        self.register_outputs({"service": self.service_name})

    def _download_job(self, name, args: TgiServiceArgs, spec: SlotSpec, labels, account, cache,
                      policy) -> k8s.batch.v1.Job:
        slot = spec.slot
        job_labels = {**labels, "app.kubernetes.io/component": "download"}
        env = [{"name": "MODEL_ID", "value": slot.id}, {"name": "REVISION", "value": spec.revision},
               {"name": "HUGGINGFACE_HUB_CACHE", "value": tgi.HUB_CACHE},
               {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}]
        if spec.gated:
            env.append({"name": HF_TOKEN_KEY, "valueFrom": {"secretKeyRef": {
                "name": args.hf_token_secret, "key": HF_TOKEN_KEY}}})
        timeout = tgi.job_timeout_seconds(spec.plan.weights_bytes)
        return k8s.batch.v1.Job(f"{name}-{slot.slot}-download", metadata={
            "name": download_job_name(args.model, slot.id, spec.revision),
            "namespace": args.namespace, "labels": job_labels,
            "annotations": checkov_skips(CHECKOV_SKIPS),
        }, spec={
            "backoffLimit": 3,
            "activeDeadlineSeconds": timeout,
            "template": {"metadata": {"labels": job_labels}, "spec": {
                "restartPolicy": "OnFailure",
                "serviceAccountName": account.metadata.name,
                "automountServiceAccountToken": False,
                "securityContext": _pod_security(),
                # No GPU needed: the download runs on the system nodes, before any GPU node.
                "nodeSelector": {NODE_GROUP_LABEL: SYSTEM_GROUP},
                "containers": [_hardened({
                    "name": "download",
                    "image": slot.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", tgi.download_script()],
                    "env": env,
                    "resources": {"requests": {"cpu": "500m", "memory": "2Gi"},
                                  "limits": {"cpu": "2", "memory": "4Gi"}},
                    "volumeMounts": [{"name": "cache", "mountPath": tgi.CACHE_PATH}],
                })],
                "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": cache.metadata.name}}],
            }},
        }, opts=pulumi.ResourceOptions(
            parent=self, delete_before_replace=True, depends_on=[policy],
            custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")))

    def _slot(self, name, args: TgiServiceArgs, spec: SlotSpec, labels, account, cache, job):
        slot, plan = spec.slot, spec.plan
        slot_labels = {**labels, SLOT_LABEL: slot.slot, "app.kubernetes.io/component": "server",
                       "app.kubernetes.io/version": slot.image.rsplit(":", 1)[-1][:63]}
        selector = {MODEL_LABEL: args.model, SLOT_LABEL: slot.slot}
        resources = tgi.pod_resources(spec.instances, plan.num_shard)
        env = [{"name": k, "value": v} for k, v in tgi.launcher_env(slot, plan, spec.revision).items()]
        env.append({"name": API_KEY_KEY, "valueFrom": {"secretKeyRef": {
            "name": API_KEY_SECRET, "key": API_KEY_KEY}}})
        autoscaled = args.replicas.max > args.replicas.min
        timeout = tgi.deployment_timeout_seconds(plan)
        deployment = k8s.apps.v1.Deployment(f"{name}-{slot.slot}", metadata={
            "name": f"{args.model}-{slot.slot}", "namespace": args.namespace, "labels": slot_labels,
            "annotations": checkov_skips({**CHECKOV_SKIPS, **SECRET_ENV_SKIP}),
        }, spec={
            # With an autoscaler the replica count is its to set.
            **({} if autoscaled else {"replicas": args.replicas.min}),
            "selector": {"matchLabels": selector},
            # No spare GPU node is assumed: replace pods one at a time instead of surging.
            # Model changes without downtime go through a second slot (blue-green).
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": slot_labels}, "spec": {
                "serviceAccountName": account.metadata.name,
                "automountServiceAccountToken": False,
                "securityContext": _pod_security(),
                "terminationGracePeriodSeconds": tgi.TERMINATION_GRACE_SECONDS,
                "tolerations": [GPU_TOLERATION],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{
                        "key": NODE_GROUP_LABEL, "operator": "In", "values": [slot.node_group]}]}]}}},
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                     "labelSelector": {"matchLabels": selector}}
                    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")],
                "containers": [_hardened({
                    "name": "tgi",
                    "image": slot.image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": env,
                    "ports": [{"name": "http", "containerPort": tgi.HTTP_PORT, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": tgi.METRICS_PORT, "protocol": "TCP"}],
                    "resources": {
                        "requests": {"cpu": resources.cpu_request, "memory": resources.memory,
                                     "nvidia.com/gpu": str(plan.num_shard)},
                        "limits": {"cpu": resources.cpu_limit, "memory": resources.memory,
                                   "nvidia.com/gpu": str(plan.num_shard)},
                    },
                    **tgi.probes(plan),
                    # Keep serving while the load balancer deregisters the pod, then TGI drains.
                    "lifecycle": {"preStop": {"sleep": {"seconds": tgi.PRESTOP_SECONDS}}},
                    "volumeMounts": [{"name": "cache", "mountPath": tgi.CACHE_PATH},
                                     {"name": "shm", "mountPath": "/dev/shm"}],
                })],
                "volumes": [
                    {"name": "cache", "persistentVolumeClaim": {"claimName": cache.metadata.name}},
                    # NCCL between shards needs shared memory (docs/tgi.md).
                    {"name": "shm", "emptyDir": {"medium": "Memory",
                                                 "sizeLimit": f"{tgi.shm_size_gib(plan.num_shard)}Gi"}},
                ],
            }},
        }, opts=pulumi.ResourceOptions(
            parent=self, depends_on=[job],
            custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")))

        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment.metadata.name}
        if autoscaled:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-{slot.slot}-hpa", metadata={
                "name": f"{args.model}-{slot.slot}", "namespace": args.namespace, "labels": slot_labels,
            }, spec={
                "scaleTargetRef": target,
                "minReplicas": args.replicas.min,
                "maxReplicas": args.replicas.max,
                # TGI's queue per pod, served to the HPA by the metrics adapter (docs/eks.md).
                "metrics": [{"type": "Pods", "pods": {
                    "metric": {"name": "tgi_queue_size"},
                    "target": {"type": "AverageValue",
                               "averageValue": str(args.replicas.target_queue_size)}}}],
                # A GPU replica takes minutes to start: add one at a time, remove slowly.
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
                    "scaleDown": {"stabilizationWindowSeconds": 600, "selectPolicy": "Min",
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
                },
            }, opts=pulumi.ResourceOptions(parent=self))
        # Node drains and upgrades take one replica at a time, even with a single replica.
        k8s.policy.v1.PodDisruptionBudget(f"{name}-{slot.slot}-pdb", metadata={
            "name": f"{args.model}-{slot.slot}", "namespace": args.namespace, "labels": slot_labels,
        }, spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            opts=pulumi.ResourceOptions(parent=self))
        return deployment

    def _network_policies(self, name, args: TgiServiceArgs, labels) -> k8s.networking.v1.NetworkPolicy:
        """The model's serving pods and its download Jobs; returns the Jobs' policy."""
        dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
                      "podSelector": {"matchLabels": PROMETHEUS_POD}}
        k8s.networking.v1.NetworkPolicy(f"{name}-netpol", metadata={
            "name": args.model, "namespace": args.namespace, "labels": labels,
        }, spec={
            "podSelector": {"matchLabels": {MODEL_LABEL: args.model,
                                            "app.kubernetes.io/component": "server"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                # The ALB (target type ip) sends requests and health checks from its subnets.
                # (An empty `from` would allow everyone: no load balancer, no rule.)
                *([{"from": [{"ipBlock": {"cidr": c}} for c in args.lb_source_cidrs],
                    "ports": [{"protocol": "TCP", "port": "http"}]}] if args.lb_source_cidrs else []),
                {"from": [prometheus], "ports": [{"protocol": "TCP", "port": "metrics"}]},
            ],
            "egress": [dns],  # serving is offline: weights come from the cache volume
        }, opts=pulumi.ResourceOptions(parent=self))
        return k8s.networking.v1.NetworkPolicy(f"{name}-download-netpol", metadata={
            "name": f"{args.model}-download", "namespace": args.namespace, "labels": labels,
        }, spec={
            "podSelector": {"matchLabels": {MODEL_LABEL: args.model,
                                            "app.kubernetes.io/component": "download"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            # The Hub and its CDN over HTTPS; not the instance metadata service.
            "egress": [dns, {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}],
                             "ports": [{"protocol": "TCP", "port": 443}]}],
        }, opts=pulumi.ResourceOptions(parent=self))

    def _pod_monitor(self, name, args: TgiServiceArgs, labels) -> None:
        """Every TGI pod of the model, both slots (the inactive one too: its autoscaler and the
        dashboards need its metrics), with `model` and `slot` labels on the series."""
        k8s.apiextensions.CustomResource(
            f"{name}-monitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": args.model, "namespace": args.namespace,
                      "labels": {**labels, **args.prometheus_selector}},
            spec={
                "selector": {"matchLabels": {MODEL_LABEL: args.model,
                                             "app.kubernetes.io/component": "server"}},
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.monitoring] if args.monitoring else []))

    def _ingress(self, name, args: TgiServiceArgs, labels, service) -> None:
        ing = args.ingress
        attributes = [f"idle_timeout.timeout_seconds={ing.idle_timeout_seconds}",
                      "routing.http.drop_invalid_header_fields.enabled=true"]
        annotations = {
            # One ALB for every model of the stack (annotations of the group must agree).
            "alb.ingress.kubernetes.io/group.name": "llmserve",
            "alb.ingress.kubernetes.io/scheme": ing.scheme,
            "alb.ingress.kubernetes.io/target-type": "ip",
            "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTPS": 443}]),
            "alb.ingress.kubernetes.io/certificate-arn": ing.certificate_arn,
            "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(ing.allowed_cidrs),
            "alb.ingress.kubernetes.io/load-balancer-attributes": ",".join(attributes),
            "alb.ingress.kubernetes.io/healthcheck-path": "/health",
            "alb.ingress.kubernetes.io/success-codes": "200",
            # In-flight generations may finish while a pod drains.
            "alb.ingress.kubernetes.io/target-group-attributes":
                f"deregistration_delay.timeout_seconds={tgi.TERMINATION_GRACE_SECONDS}",
        }
        if args.waf_acl_arn is not None:
            annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] = args.waf_acl_arn
        k8s.networking.v1.Ingress(f"{name}-ingress", metadata={
            "name": args.model, "namespace": args.namespace, "labels": labels,
            "annotations": annotations,
        }, spec={
            "ingressClassName": "alb",
            "rules": [{"host": f"{args.model}.{ing.domain}", "http": {"paths": [{
                "path": path, "pathType": kind,
                "backend": {"service": {"name": service.metadata.name, "port": {"name": "http"}}},
            } for path, kind in tgi.PUBLIC_ROUTES]}}],
        }, opts=pulumi.ResourceOptions(  # the controller's webhooks and class exist first
            parent=self, depends_on=[args.load_balancer_controller] if args.load_balancer_controller else []))
