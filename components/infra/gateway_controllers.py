"""GatewayControllers: the controllers behind the one OpenAI endpoint (docs/gateway.md, "Install").
Envoy Gateway with the settings Envoy AI Gateway needs, then the AI Gateway's CRDs and its
controller, whose pod webhook gets a certificate from cert-manager, each a pinned Helm release.

Sources, by short name: `AIGW` = envoyproxy/ai-gateway at tag v1.1.0, `EG` = envoyproxy/gateway
at tag v1.8.3, `CM` = cert-manager/cert-manager at tag v1.21.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from . import charts
from .node_group import SYSTEM_NODES

# The controllerName of the GatewayClass the gateways use (AIGW:manifests/envoy-gateway-values.yaml).
GATEWAY_CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
ENVOY_GATEWAY_NAMESPACE = "envoy-gateway-system"  # AIGW:site/versioned_docs/version-1.1/getting-started/
AI_GATEWAY_NAMESPACE = "envoy-ai-gateway-system"
CERT_MANAGER_NAMESPACE = "cert-manager"  # CM:deploy/charts/cert-manager/README.template.md
# The AI Gateway controller's Service (its chart's controller.fullnameOverride) and its extension
# server's port, which Envoy Gateway calls for every xDS translation.
AI_GATEWAY_CONTROLLER_SERVICE = "ai-gateway-controller"
EXTENSION_SERVER_PORT = 1063

# The labels Envoy Gateway puts on every proxy pod (EG:internal/infrastructure/kubernetes/proxy/
# resource.go EnvoyAppLabel), and the owning Gateway's (EG:internal/gatewayapi/translator.go,
# helpers.go GatewayOwnerLabels; resource_provider.go getPodLabels merges both).
PROXY_LABELS = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
}
OWNING_GATEWAY_NAME_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
OWNING_GATEWAY_NAMESPACE_LABEL = "gateway.envoyproxy.io/owning-gateway-namespace"

# The header the gateway's API key check sets to the team's name (serving/gateway.py), which the
# AI Gateway's metrics carry as `team_id`.
TEAM_HEADER = "x-team-id"


def proxy_labels(gateway_name: str, gateway_namespace: str) -> dict[str, str]:
    """The labels of one Gateway's proxy pods (a PodMonitor or NetworkPolicy selects on them)."""
    return {**PROXY_LABELS, OWNING_GATEWAY_NAME_LABEL: gateway_name,
            OWNING_GATEWAY_NAMESPACE_LABEL: gateway_namespace}


# The volume the ratelimit container mounts whenever its Redis speaks TLS (EG v1.8.3).
REDIS_CERTS_VOLUME = "redis-certs"


def envoy_gateway_values(rate_limit_redis_url: Optional[pulumi.Input[str]] = None,
                         fail_closed: bool = False) -> dict:
    """The settings AIGW:manifests/envoy-gateway-values.yaml marks required: the Backend API and
    the extension manager's hooks, which send every listener, route, cluster and secret to the
    AI Gateway controller after translation. Its `enableEnvoyPatchPolicy` ("Not strictly
    required") is left off: the AI Gateway creates no EnvoyPatchPolicy, and the API would let
    anyone who may create one rewrite the proxies' xDS.

    With a Redis (host:port, TLS): the global rate limit the token quotas need
    (AIGW:examples/token_ratelimit/envoy-gateway-values-addon.yaml, without its January 2025
    ratelimit image: the chart's own is newer). `tls: {}` turns TLS on, verified against the
    system roots (EG:internal/infrastructure/kubernetes/ratelimit/resource.go), with the empty
    `redis-certs` volume it then mounts. `failClosed`
    false (EG's default) lets traffic pass while Redis cannot answer; true answers 500
    (EG:api/v1alpha1/envoygateway_types.go RateLimit): docs/gateway.md, "Install"."""
    envoy_gateway: dict = {
        "gateway": {"controllerName": GATEWAY_CONTROLLER_NAME},
        "extensionApis": {"enableBackend": True},
        "extensionManager": {
            "hooks": {"xdsTranslator": {
                "translation": {kind: {"includeAll": True}
                                for kind in ("listener", "route", "cluster", "secret")},
                "post": ["Translation", "Cluster", "Route"],
            }},
            "service": {"fqdn": {
                "hostname": f"{AI_GATEWAY_CONTROLLER_SERVICE}.{AI_GATEWAY_NAMESPACE}.svc.cluster.local",
                "port": EXTENSION_SERVER_PORT,
            }},
        },
    }
    if rate_limit_redis_url is not None:
        envoy_gateway["rateLimit"] = {
            "backend": {"type": "Redis", "redis": {"url": rate_limit_redis_url, "tls": {}}},
            "failClosed": fail_closed,
        }
        # The ratelimit Deployment Envoy Gateway runs (EG:api/v1alpha1/envoygateway_types.go
        # rateLimitDeployment, a KubernetesDeploymentSpec) goes where the controller is.
        # Two replicas and a PDB: a rescheduled limiter would otherwise let every request through
        # while it restarts (fail-open). EG api/v1alpha1/envoygateway_types.go RateLimitDeployment,
        # RateLimitPDB.
        # With TLS but no client certificate, Envoy Gateway still mounts a volume `redis-certs`
        # that it only creates from a certificateRef (EG:internal/infrastructure/kubernetes/
        # ratelimit/resource.go expectedContainerVolumeMounts, expectedDeploymentVolumes): the API
        # server would refuse the pod template. An empty one (no client certificate is read from
        # it without a certificateRef), added through the pod's own volumes, which EG merges by
        # name (EG:internal/infrastructure/kubernetes/resource/resource.go ExpectedVolumes).
        envoy_gateway["provider"] = {"kubernetes": {
            "rateLimitDeployment": {"replicas": 2, "pod": {
                "nodeSelector": SYSTEM_NODES, "volumes": [{"name": REDIS_CERTS_VOLUME, "emptyDir": {}}]}},
            "rateLimitPDB": {"minAvailable": 1}}}
    return {
        "config": {"envoyGateway": envoy_gateway},
        "deployment": {"pod": {"nodeSelector": SYSTEM_NODES}},
        "certgen": {"job": {"nodeSelector": SYSTEM_NODES}},
    }


def cert_manager_values() -> dict:
    """cert-manager with its CRDs (kept when the release goes: removing them would delete every
    Certificate) on the system nodes (`global.nodeSelector` is merged into each component's)."""
    return {"crds": {"enabled": True, "keep": True},
            "global": {"nodeSelector": SYSTEM_NODES}}


def ai_gateway_values() -> dict:
    """The AI Gateway controller: its pod webhook's certificate from cert-manager (a self-signed
    Issuer and a Certificate the chart renders, renewed by cert-manager, the CA injected into the
    webhook by cainjector: AIGW:manifests/charts/ai-gateway-helm/templates/admission_webhook.yaml),
    not the chart's own 365-day one that nothing renews; the per-team metric label (the
    `x-team-id` header the gateway's API key check sets becomes `team_id`,
    AIGW:manifests/charts/ai-gateway-helm/values.yaml). The webhook (failurePolicy Fail) stops
    every Envoy pod from starting while no controller answers: two replicas and a PDB keep one
    up through a node drain (the extension server and the webhook run on every replica, only the
    reconcilers wait for the leader: AIGW:cmd/controller/main.go starts the former itself;
    kubernetes-sigs/controller-runtime v0.24.1, its go.mod's, pkg/manager/runnable_group.go puts
    webhook servers in a group that does not wait for leader election)."""
    return {"controller": {
        "metricsRequestHeaderAttributes": f"{TEAM_HEADER}:team.id",
        "mutatingWebhook": {"certManager": {"enable": True}},
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True},
        "nodeSelector": SYSTEM_NODES,
        # On two nodes: one node lost must not take both replicas (and the webhook) down.
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
            # The chart's selector labels: its name and the release's
            # (AIGW:manifests/charts/ai-gateway-helm/templates/_helpers.tpl, controller.selectorLabels).
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "ai-gateway-helm",
                                              "app.kubernetes.io/instance": "ai-gateway"}}}],
    }}


@dataclass
class GatewayControllersArgs:
    nodes: list[pulumi.Resource]  # the system node group the controllers run on
    # host:port of a TLS Redis (ElastiCache, cluster mode off), when the stack has token quotas.
    rate_limit_redis_url: Optional[pulumi.Input[str]] = None
    # What a rate-limited request gets while Redis cannot answer: passed (False) or a 500 (True).
    # Only with rate_limit_redis_url.
    fail_closed: bool = False


class GatewayControllers(pulumi.ComponentResource):
    envoy_gateway: pulumi.Resource
    cert_manager: pulumi.Resource
    ai_gateway_crds: pulumi.Resource
    ai_gateway: pulumi.Resource
    ready: pulumi.Resource  # the last release: Gateways, routes and policies wait for it

    def __init__(self, name: str, args: GatewayControllersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:GatewayControllers", name, None, opts)
        # The AI Gateway docs install Envoy Gateway first, then the AI Gateway's CRDs, then its
        # controller (AIGW:site/versioned_docs/version-1.1/getting-started/installation.md).
        # The proxies' namespace, made here for its label: the load balancer controller then gives
        # the proxy pods its readiness gate, so a rollout replaces a pod only once the NLB sees
        # its successor healthy (kubernetes-sigs/aws-load-balancer-controller v3.5.0
        # docs/deploy/pod_readiness_gate.md).
        proxies = k8s.core.v1.Namespace(f"{name}-proxies-ns", metadata={
            "name": ENVOY_GATEWAY_NAMESPACE, "labels": {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}},
            opts=pulumi.ResourceOptions(parent=self))
        self.envoy_gateway = charts.release(
            self, f"{name}-envoy-gateway", charts.ENVOY_GATEWAY, "envoy-gateway", ENVOY_GATEWAY_NAMESPACE,
            envoy_gateway_values(args.rate_limit_redis_url, args.fail_closed),
            depends_on=[*args.nodes, proxies])
        self.cert_manager = charts.release(
            self, f"{name}-cert-manager", charts.CERT_MANAGER, "cert-manager", CERT_MANAGER_NAMESPACE,
            cert_manager_values(), depends_on=[*args.nodes])
        self.ai_gateway_crds = charts.release(
            self, f"{name}-ai-gateway-crds", charts.AI_GATEWAY_CRDS, "ai-gateway-crds",
            AI_GATEWAY_NAMESPACE, {}, depends_on=[self.envoy_gateway])
        # Its chart renders a cert-manager Certificate and Issuer: cert-manager's release is done
        # once its startupapicheck hook has seen the API answer.
        self.ai_gateway = charts.release(
            self, f"{name}-ai-gateway", charts.AI_GATEWAY, "ai-gateway", AI_GATEWAY_NAMESPACE,
            ai_gateway_values(), depends_on=[self.ai_gateway_crds, self.cert_manager])
        self.ready = self.ai_gateway
        self.register_outputs({})
