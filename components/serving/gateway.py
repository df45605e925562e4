"""ModelGateway: one OpenAI-compatible endpoint for every model (Envoy AI Gateway over Envoy
Gateway, installed by infra/gateway_controllers.py; docs/gateway.md).

- An NLB (AWS Load Balancer Controller, IP targets) in front of Envoy, TLS at the NLB with the
  stack's ACM certificate, open only to `allowedCidrs` (internal: the VPC).
- The AI Gateway reads `model` from the body into `x-ai-eg-model`; one AIGatewayRoute rule per
  model (at most 15 rules per route, so routes of 15) sends it to the model's Service, which
  follows its active slot: a blue-green switch moves the gateway too.
- One SecurityPolicy on the Gateway: a key per team (API key auth, the key removed before the
  engine, the team's id forwarded in `x-team-id`, which a client cannot set: its own is removed
  before any filter), and an authorization that allows each team its models only (403 otherwise).
  It must stay the only SecurityPolicy of the Gateway and its routes: a more specific one would
  replace it (Envoy Gateway's precedence), and the key is checked on the route chosen before the
  model is known (envoyproxy/gateway v1.8.3 internal/xds/translator/httpfilters.go: api_key_auth
  runs before the AI Gateway's ext_proc, rbac after it).
- Token quotas per team: a global rate limit charged in total tokens at the end of each response
  (the AI Gateway's `llm_total_token` metadata), one budget per team over all models (`shared`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..config.gateway import GatewayConfig
from ..infra.gateway_controllers import ENVOY_GATEWAY_NAMESPACE, GATEWAY_CONTROLLER_NAME, TEAM_HEADER, proxy_labels
from ..infra.node_group import SYSTEM_NODES
from ..infra.secrets import SECRET_DATA
from .exposure import SERVICE_PORT
from .gateway_monitoring import ENVOY_PORT, EXTPROC_PORT, gateway_pod_monitor
from .network_policies import PROMETHEUS

GATEWAY = "llmserve"  # the Gateway's and GatewayClass's name
NAMESPACE = "llm"  # the models' namespace, the Gateway's (serving/shared.py)
# Envoy's pods: in Envoy Gateway's namespace, labelled with the Gateway they serve. Only they
# reach the engines (network_policies.py).
PROXY_NAMESPACE = ENVOY_GATEWAY_NAMESPACE
PROXY_PODS = proxy_labels(GATEWAY, NAMESPACE)
MODEL_HEADER = "x-ai-eg-model"  # set by the AI Gateway from the request body's `model`
RULES_PER_ROUTE = 15  # AIGatewayRoute spec.rules maxItems (aigateway.envoyproxy.io v1beta1 CRD)
# The request body is buffered whole by the AI Gateway's ext_proc; Envoy Gateway's default
# connection buffer (32 KiB) is too small for long prompts (envoyproxy/ai-gateway v1.1.0
# examples/basic/basic.yaml uses 50Mi).
BUFFER_LIMIT = "50Mi"
TOKENS_METADATA = {"namespace": "io.envoy.ai_gateway", "key": "llm_total_token"}
# Beyond the generation itself: queueing and the prompt's prefill.
TIMEOUT_MARGIN_SECONDS = 60


@dataclass
class GatewayModel:
    name: str  # what clients send as `model`, the model's Service
    generation_seconds: int  # its slots' longest generation cap (the plans')


@dataclass
class ModelGatewayArgs:
    config: GatewayConfig
    namespace: pulumi.Input[str]  # NAMESPACE, once it exists: the Gateway and its routes live there
    models: list[GatewayModel]
    team_keys: dict[str, pulumi.Input[str]] = field(default_factory=dict)  # set in config; others generated
    source_cidrs: list[str] = field(default_factory=list)  # who may reach the NLB (allowedCidrs, else the VPC)
    subnet_ids: list[pulumi.Input[str]] = field(default_factory=list)  # the NLB's subnets
    subnet_cidrs: list[pulumi.Input[str]] = field(default_factory=list)  # theirs: where the NLB's own addresses are
    cost_tags: dict[str, str] = field(default_factory=dict)
    # The controllers (infra/gateway_controllers.py) whose CRDs and webhooks these resources need.
    controllers: Optional[pulumi.Resource] = None
    load_balancer_controller: Optional[pulumi.Resource] = None  # Addons.load_balancer_controller
    # Prometheus: the release whose CRDs the PodMonitor needs, and the labels it selects by.
    monitoring: Optional[pulumi.Resource] = None
    prometheus_selector: Optional[dict[str, str]] = None


def timeout_seconds(model: GatewayModel) -> int:
    """A model's route timeout: its longest generation, and the margin."""
    return model.generation_seconds + TIMEOUT_MARGIN_SECONDS


def drain_seconds(models: list[GatewayModel]) -> int:
    """How long a stopping proxy drains: the longest route's timeout."""
    return max((timeout_seconds(m) for m in models), default=60)


def proxy_grace_seconds(models: list[GatewayModel]) -> int:
    """The proxies' terminationGracePeriodSeconds: Envoy Gateway gives drainTimeout + 300 s
    (envoyproxy/gateway v1.8.3 internal/infrastructure/kubernetes/proxy/resource_provider.go
    expectedTerminationGracePeriodSeconds), which the cluster autoscaler must let them have."""
    return drain_seconds(models) + 300


def container_port(listener_port: int) -> int:
    """The proxies' container port of a listener: Envoy Gateway shifts ports below 1024 by 10000
    (envoyproxy/gateway v1.8.3 internal/gatewayapi/listener.go, translator.go wellKnownPortShift)."""
    return listener_port + 10000 if listener_port < 1024 else listener_port


def route_timeout(model: GatewayModel) -> str:
    return f"{timeout_seconds(model)}s"


def authorization(config: GatewayConfig) -> dict:
    """Each team its models (all, when it lists none); anything else denied with 403."""
    return {"defaultAction": "Deny", "rules": [
        {"name": team.name, "action": "Allow", "principal": {"headers": [
            {"name": TEAM_HEADER, "values": [team.name]},
            *([{"name": MODEL_HEADER, "values": list(team.models)}] if team.models else [])]}}
        for team in config.teams]}


def quota_rules(config: GatewayConfig) -> list[dict]:
    """A budget per team and unit over all its models, charged the response's total tokens."""
    return [{"clientSelectors": [{"headers": [{"name": TEAM_HEADER, "type": "Exact", "value": team.name}]}],
             "limit": {"requests": tokens, "unit": unit},
             "cost": {"request": {"from": "Number", "number": 0},
                      "response": {"from": "Metadata", "metadata": TOKENS_METADATA}},
             "shared": True}
            for team in config.teams
            for tokens, unit in ((team.tokens_per_minute, "Minute"), (team.tokens_per_day, "Day")) if tokens]


def service_annotations(config: GatewayConfig, subnet_ids: list[pulumi.Input[str]],
                        cost_tags: dict[str, str]) -> dict:
    """The NLB the AWS Load Balancer Controller makes for Envoy's Service (kubernetes-sigs/
    aws-load-balancer-controller v3.5.0 docs/guide/service/annotations.md)."""
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    # TLS 1.2 and 1.3 only: the load balancer controller's default policy (ELBSecurityPolicy-2016-08)
    # still allows TLS 1.0 and 1.1 for a listener that carries the teams' keys.
    tls = {f"{prefix}ssl-cert": config.certificate_arn, f"{prefix}ssl-ports": "443",
           f"{prefix}ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06"} if config.certificate_arn else {}
    return {f"{prefix}type": "external", f"{prefix}nlb-target-type": "ip", f"{prefix}scheme": config.scheme,
            # Every NLB node reaches both Envoy pods, whichever AZs they run in (off by default).
            f"{prefix}attributes": "load_balancing.cross_zone.enabled=true",
            **tls,
            **({f"{prefix}subnets": pulumi.Output.all(*subnet_ids).apply(",".join)} if subnet_ids else {}),
            **({f"{prefix}additional-resource-tags": ",".join(f"{k}={v}" for k, v in sorted(cost_tags.items()))}
               if cost_tags else {})}


class ModelGateway(pulumi.ComponentResource):
    team_keys: pulumi.Output[dict]  # every team's key, a secret

    def __init__(self, name: str, args: ModelGatewayArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:serving:ModelGateway", name, None, opts)
        config, ns = args.config, args.namespace
        # The load balancer controller too: on `pulumi destroy` Envoy's Service (its NLB) must go
        # before the controller that removes the NLB and the Service's finalizer.
        after = [r for r in (args.controllers, args.load_balancer_controller) if r is not None]
        child = pulumi.ResourceOptions(parent=self, depends_on=after)

        def custom(kind: str, api: str, suffix: str, obj_name: str, spec: dict,
                   namespaced: bool = True) -> k8s.apiextensions.CustomResource:
            metadata = {"name": obj_name, **({"namespace": ns} if namespaced else {})}
            return k8s.apiextensions.CustomResource(f"{name}-{suffix}", api_version=api, kind=kind,
                                                    metadata=metadata, spec=spec, opts=child)

        keys = {team.name: pulumi.Output.secret(args.team_keys[team.name]) if team.name in args.team_keys
                else pulumi.Output.secret(random.RandomPassword(f"{name}-{team.name}-key", length=48, special=False,
                                                                opts=pulumi.ResourceOptions(parent=self)).result)
                for team in config.teams}
        self.team_keys = pulumi.Output.secret(pulumi.Output.all(**keys))
        secret = k8s.core.v1.Secret(f"{name}-keys", metadata={"name": f"{GATEWAY}-team-keys", "namespace": ns},
                                    type="Opaque", string_data=keys,
                                    opts=pulumi.ResourceOptions(parent=self).merge(SECRET_DATA))

        custom("GatewayClass", "gateway.networking.k8s.io/v1", "class", GATEWAY,
               {"controllerName": GATEWAY_CONTROLLER_NAME}, namespaced=False)
        # A stopping proxy drains for the longest route's timeout, not Envoy Gateway's 60 s: a
        # rollout of the proxies does not cut the generations in flight (EnvoyProxy
        # spec.shutdown.drainTimeout, envoyproxy/gateway v1.8.3 api/v1alpha1/envoyproxy_types.go).
        drain = drain_seconds(args.models)
        custom("EnvoyProxy", "gateway.envoyproxy.io/v1alpha1", "proxy", GATEWAY, {
            "shutdown": {"drainTimeout": f"{drain}s"}, "provider": {
            "type": "Kubernetes", "kubernetes": {
                "envoyService": {
                    "annotations": service_annotations(config, args.subnet_ids, args.cost_tags),
                    # IP targets: the NLB health-checks the pods' port itself (with Local it would
                    # probe the nodes' health-check port, which no pod serves).
                    "externalTrafficPolicy": "Cluster",
                    "loadBalancerSourceRanges": list(config.allowed_cidrs or args.source_cidrs)},
                # One proxy at a time may go (a node drain, a rollout).
                "envoyPDB": {"minAvailable": 1},
                "envoyDeployment": {"replicas": 2, "pod": {"nodeSelector": SYSTEM_NODES, "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": PROXY_PODS}}]}},
            }}})
        listener = ({"name": "https", "protocol": "HTTP", "port": 443} if config.certificate_arn
                    else {"name": "http", "protocol": "HTTP", "port": 80})
        custom("Gateway", "gateway.networking.k8s.io/v1", "gateway", GATEWAY, {
            "gatewayClassName": GATEWAY,
            "infrastructure": {"parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                                                 "name": GATEWAY}},
            "listeners": [{**listener, "hostname": config.hostname, "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        })
        gateway_ref = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY}]
        custom("ClientTrafficPolicy", "gateway.envoyproxy.io/v1alpha1", "client", GATEWAY, {
            "targetRefs": gateway_ref, "connection": {"bufferLimit": BUFFER_LIMIT},
            # Below the NLB's 350 s idle timeout: Envoy closes what the NLB would drop silently.
            "timeout": {"http": {"idleTimeout": "300s"}},
            # A non-streamed generation sends nothing until it ends: TCP keepalives every 60 s on
            # the connection to the NLB, which "clients or targets can use ... to reset the idle
            # timeout" (without payload on TLS listeners; Elastic Load Balancing, Network Load
            # Balancers, "Connection idle timeout"). Not verified live: docs/gateway.md.
            "tcpKeepalive": {"idleTime": "60s", "interval": "60s", "probes": 5},
            # The team id is the key's alone: a client's own header goes before any filter runs
            # (early header mutation), whether the key filter would replace or append it.
            "headers": {"earlyRequestHeaders": {"remove": [TEAM_HEADER]}}})
        custom("SecurityPolicy", "gateway.envoyproxy.io/v1alpha1", "keys", GATEWAY, {
            "targetRefs": gateway_ref,
            "apiKeyAuth": {"credentialRefs": [{"group": "", "kind": "Secret", "name": secret.metadata.name}],
                           "extractFrom": [{"headers": ["authorization"]}],
                           "forwardClientIDHeader": TEAM_HEADER, "sanitize": True},
            "authorization": authorization(config)})
        if config.quotas:
            custom("BackendTrafficPolicy", "gateway.envoyproxy.io/v1alpha1", "quotas", GATEWAY, {
                "targetRefs": gateway_ref, "rateLimit": {"type": "Global", "global": {"rules": quota_rules(config)}}})

        for model in args.models:
            custom("Backend", "gateway.envoyproxy.io/v1alpha1", f"{model.name}-backend", model.name, {
                "endpoints": [{"fqdn": {"hostname": pulumi.Output.concat(model.name, ".", ns, ".svc.cluster.local"),
                                        "port": SERVICE_PORT}}]})
            custom("AIServiceBackend", "aigateway.envoyproxy.io/v1beta1", f"{model.name}-ai-backend", model.name, {
                "schema": {"name": "OpenAI"},
                "backendRef": {"name": model.name, "kind": "Backend", "group": "gateway.envoyproxy.io"}})
        for i in range(math.ceil(len(args.models) / RULES_PER_ROUTE)):
            chunk = args.models[i * RULES_PER_ROUTE:(i + 1) * RULES_PER_ROUTE]
            custom("AIGatewayRoute", "aigateway.envoyproxy.io/v1beta1", f"route-{i}", f"{GATEWAY}-{i}", {
                "parentRefs": gateway_ref,
                "rules": [{"name": m.name,
                           "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": m.name}]}],
                           "backendRefs": [{"name": m.name}],
                           # The whole response, streamed or not, within the model's longest
                           # generation (the AI Gateway's default is 60 s); a stream with no chunk
                           # for as long is cut.
                           "timeouts": {"request": route_timeout(m)}, "streamIdleTimeout": route_timeout(m)}
                          for m in chunk],
                **({"llmRequestCosts": [{"metadataKey": TOKENS_METADATA["key"], "type": "TotalToken"}]}
                   if config.quotas else {}),
            })
        # Only the NLB (its nodes' addresses in its subnets: TLS ends there, so it connects from
        # its own) and Prometheus reach the proxies; kubelet probes come from the node, which the
        # VPC CNI's policy agent always admits. In-cluster clients use the hostname too.
        k8s.networking.v1.NetworkPolicy(f"{name}-proxies-netpol", metadata={
            "name": f"{GATEWAY}-proxies", "namespace": PROXY_NAMESPACE}, spec={
            "podSelector": {"matchLabels": PROXY_PODS}, "policyTypes": ["Ingress"],
            "ingress": [
                *([{"from": [{"ipBlock": {"cidr": c}} for c in args.subnet_cidrs],
                    "ports": [{"protocol": "TCP", "port": container_port(listener["port"])}]}] if args.subnet_cidrs else []),
                {"from": [PROMETHEUS], "ports": [{"protocol": "TCP", "port": p} for p in (ENVOY_PORT, EXTPROC_PORT)]}]},
            opts=child)
        # The Envoy pods' GenAI metrics (by team and model) and Envoy's stats.
        gateway_pod_monitor(self, name, PROXY_PODS, args.monitoring, prometheus_selector=args.prometheus_selector,
                            depends_on=after)
        self.register_outputs({"teamKeys": self.team_keys})
