"""The gateway controllers (docs/gateway.md): Envoy Gateway with what Envoy AI Gateway needs, the AI
Gateway's CRDs and controller, cert-manager for its webhook certificate; pinned OCI charts,
installed in order, every value one the published chart has."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.infra import charts
from components.infra.gateway_controllers import (
    AI_GATEWAY_NAMESPACE, ENVOY_GATEWAY_NAMESPACE, GATEWAY_CONTROLLER_NAME, PROXY_LABELS,
    GatewayControllers, GatewayControllersArgs, proxy_labels)
from components.infra.node_group import NODE_GROUP_LABEL
from components.offline import mockrun

from ..charts import chart_values, provenance, unknown_keys
from ..conftest import names

RELEASE = "kubernetes:helm.sh/v3:Release"
COMPONENT = "llmserve:infra:GatewayControllers"
SYSTEM = {NODE_GROUP_LABEL: "system"}
# release name: (chart, version, OCI repository, namespace), as published (tests/data/charts)
RELEASES = {
    "envoy-gateway": ("gateway-helm", "v1.8.3", "oci://docker.io/envoyproxy", "envoy-gateway-system"),
    "ai-gateway-crds": ("ai-gateway-crds-helm", "v1.1.0", "oci://docker.io/envoyproxy", "envoy-ai-gateway-system"),
    "ai-gateway": ("ai-gateway-helm", "v1.1.0", "oci://docker.io/envoyproxy", "envoy-ai-gateway-system"),
    "cert-manager": ("cert-manager", "v1.21.1", "oci://quay.io/jetstack/charts", "cert-manager"),
}
# What the AI Gateway requires of Envoy Gateway, as envoyproxy/ai-gateway v1.1.0:
# manifests/envoy-gateway-values.yaml sets it under config.envoyGateway (its optional
# enableEnvoyPatchPolicy left out; its logging and provider are the chart's defaults).
AIGW_REQUIRED = {
    "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
    "extensionApis": {"enableBackend": True},
    "extensionManager": {
        "hooks": {"xdsTranslator": {
            "translation": {"listener": {"includeAll": True}, "route": {"includeAll": True},
                            "cluster": {"includeAll": True}, "secret": {"includeAll": True}},
            "post": ["Translation", "Cluster", "Route"]}},
        "service": {"fqdn": {"hostname": "ai-gateway-controller.envoy-ai-gateway-system.svc.cluster.local",
                             "port": 1063}},
    },
}
# `config.envoyGateway` is the EnvoyGateway configuration file, of which the chart's values.yaml
# shows a few keys ("Visit .../extension_types/#envoygateway to view all options"). The fields we
# set beyond them, from envoyproxy/gateway v1.8.3 api/v1alpha1/envoygateway_types.go
# (EnvoyGatewaySpec `extensionManager`, `rateLimit`; EnvoyGatewayProvider `kubernetes`); what
# they hold is checked whole below.
ENVOY_GATEWAY_API = {"config.envoyGateway.extensionManager", "config.envoyGateway.rateLimit",
                     "config.envoyGateway.provider.kubernetes"}


def run_controllers(redis: Optional[pulumi.Input[str]] = None, fail_closed: bool = False) -> mockrun.Run:
    def program():
        nodes = k8s.core.v1.ConfigMap("system-nodes")  # stands in for the system node group
        GatewayControllers("llmserve-test-gateway", GatewayControllersArgs(
            nodes=[nodes], rate_limit_redis_url=redis, fail_closed=fail_closed))
    return mockrun.run_mocked(program, "test", {"aws:region": "us-east-1"})


@pytest.fixture(scope="module")
def plain():
    return run_controllers()


@pytest.fixture(scope="module")
def with_redis():
    return run_controllers(pulumi.Output.from_input("master.quotas.abc123.use1.cache.amazonaws.com:6379"))


def releases(run) -> dict[str, mockrun.Registration]:
    return {r.inputs["name"]: r for r in run.of_type(RELEASE)}


def values(run, name: str) -> dict:
    return mockrun.reveal(releases(run)[name].inputs)["values"]


def test_every_release_is_a_pinned_oci_chart_in_its_namespace(plain):
    found = releases(plain)
    assert set(found) == set(RELEASES)
    for name, (chart, version, repository, namespace) in RELEASES.items():
        r = mockrun.reveal(found[name].inputs)
        # An OCI chart is named by its full reference, with no chart repository.
        assert (r["chart"], r["version"], r["namespace"]) == (f"{repository}/{chart}", version, namespace)
        assert "repositoryOpts" not in r
        assert r["atomic"] is True and r["createNamespace"] is True
        fixture = provenance(chart)
        assert (fixture["chart"], fixture["version"], fixture["helmRepository"]) == (chart, version, repository)
    pins = {c.name: c for c in (charts.ENVOY_GATEWAY, charts.AI_GATEWAY_CRDS, charts.AI_GATEWAY,
                                charts.CERT_MANAGER)}
    assert {n: (c.version, c.repository) for n, c in pins.items()} == \
        {chart: (version, repository) for chart, version, repository, _ in RELEASES.values()}
    assert (ENVOY_GATEWAY_NAMESPACE, AI_GATEWAY_NAMESPACE) == ("envoy-gateway-system", "envoy-ai-gateway-system")


def test_a_chart_repository_keeps_its_repository_opts():
    def program():
        charts.release(None, "adapter", charts.PROMETHEUS_ADAPTER, "prometheus-adapter", "monitoring", {})
    r = mockrun.reveal(mockrun.run_mocked(program, "test", {}).one(RELEASE).inputs)
    assert (r["chart"], r["repositoryOpts"]) == ("prometheus-adapter",
                                                 {"repo": "https://prometheus-community.github.io/helm-charts"})


def test_releases_are_children_of_the_component_named_after_it(plain):
    [component] = plain.of_type(COMPONENT)
    for r in plain.of_type(RELEASE):
        assert r.parent == component.urn
        assert r.name.startswith("llmserve-test-gateway-"), r.name


def test_install_order(plain):
    """Envoy Gateway, then the AI Gateway's CRDs, then its controller, which also waits for
    cert-manager (its chart renders a Certificate and an Issuer); the first two on the system
    nodes."""
    found = releases(plain)
    deps = {name: names(r.dependencies) for name, r in found.items()}
    # Envoy Gateway after its namespace, made with the load balancer controller's readiness-gate label.
    assert deps["envoy-gateway"] == {"system-nodes", "llmserve-test-gateway-proxies-ns"}
    assert deps["cert-manager"] == {"system-nodes"}
    assert deps["ai-gateway-crds"] == {found["envoy-gateway"].name}
    assert deps["ai-gateway"] == {found["ai-gateway-crds"].name, found["cert-manager"].name}


@pytest.mark.parametrize("stack", ["plain", "with_redis"])
def test_every_value_we_set_exists_in_the_chart(stack, request):
    run = request.getfixturevalue(stack)
    for name, (chart, *_) in RELEASES.items():
        unknown = set(unknown_keys(chart, values(run, name)))
        assert unknown <= (ENVOY_GATEWAY_API if chart == "gateway-helm" else set()), (name, unknown)


def test_the_values_checker_knows_these_charts():
    assert unknown_keys("ai-gateway-helm", {"controller": {"mutatingWebhook": {"certManager": {"enabel": True}}}}) \
        == ["controller.mutatingWebhook.certManager.enabel"]
    assert unknown_keys("cert-manager", {"crds": {"enable": True}}) == ["crds.enable"]
    assert unknown_keys("gateway-helm", {"deployment": {"pod": {"nodeSelektor": {}}}}) == ["deployment.pod.nodeSelektor"]
    assert unknown_keys("ai-gateway-crds-helm", {"anything": 1}) == ["anything"]


def test_envoy_gateway_has_what_the_ai_gateway_requires(plain):
    config = values(plain, "envoy-gateway")["config"]["envoyGateway"]
    assert config == AIGW_REQUIRED
    assert config["gateway"]["controllerName"] == GATEWAY_CONTROLLER_NAME
    # Not EnvoyPatchPolicy: the AI Gateway creates none, and it lets its authors rewrite xDS.
    assert "enableEnvoyPatchPolicy" not in config["extensionApis"]
    defaults = chart_values("gateway-helm")["config"]["envoyGateway"]
    assert defaults["provider"] == {"type": "Kubernetes"} and defaults["logging"] == {"level": {"default": "info"}}


def test_no_rate_limit_without_redis(plain):
    config = values(plain, "envoy-gateway")["config"]["envoyGateway"]
    assert "rateLimit" not in config and "provider" not in config


def test_rate_limit_on_the_stacks_redis_over_tls_failing_open(with_redis):
    config = values(with_redis, "envoy-gateway")["config"]["envoyGateway"]
    assert config["rateLimit"] == {
        "backend": {"type": "Redis", "redis": {"url": "master.quotas.abc123.use1.cache.amazonaws.com:6379",
                                               "tls": {}}},
        "failClosed": False}
    # The ratelimit pods next to the controller; no image override (the chart's own is newer
    # than the one in the AI Gateway's example).
    # Two limiters and a PDB: one rescheduled does not let the quotas fail open.
    # EG v1.8.3 mounts `redis-certs` whenever Redis has TLS but makes the volume only from a
    # certificateRef (internal/infrastructure/kubernetes/ratelimit/resource.go): the pod brings it.
    assert config["provider"] == {"kubernetes": {
        "rateLimitDeployment": {"replicas": 2, "pod": {
            "nodeSelector": SYSTEM, "volumes": [{"name": "redis-certs", "emptyDir": {}}]}},
        "rateLimitPDB": {"minAvailable": 1}}}
    assert "certificateRef" not in config["rateLimit"]["backend"]["redis"]["tls"]
    assert {k: v for k, v in config.items() if k not in ("rateLimit", "provider")} == AIGW_REQUIRED


def test_rate_limit_may_fail_closed():
    config = values(run_controllers("redis.example:6379", fail_closed=True), "envoy-gateway")
    assert config["config"]["envoyGateway"]["rateLimit"]["failClosed"] is True


def test_fail_closed_means_nothing_without_redis():
    assert "rateLimit" not in values(run_controllers(fail_closed=True), "envoy-gateway")["config"]["envoyGateway"]


def test_webhook_certificate_from_cert_manager(plain):
    """Not the chart's own certificate (365 days, generated once at install, never renewed):
    cert-manager issues and renews it, its cainjector puts the CA into the webhook."""
    webhook = values(plain, "ai-gateway")["controller"]["mutatingWebhook"]
    assert webhook == {"certManager": {"enable": True}}
    # The chart's names for the Secret and the keys are cert-manager's (tls.crt, tls.key, ca.crt).
    chart = chart_values("ai-gateway-helm")["controller"]["mutatingWebhook"]
    assert (chart["tlsCertName"], chart["tlsKeyName"], chart["caBundleName"]) == ("tls.crt", "tls.key", "ca.crt")
    assert chart["certManager"]["certificateName"] == chart["tlsCertSecretName"]
    assert values(plain, "cert-manager")["crds"] == {"enabled": True, "keep": True}


def test_ai_gateway_metrics_carry_the_team(plain):
    assert values(plain, "ai-gateway")["controller"]["metricsRequestHeaderAttributes"] == "x-team-id:team.id"


def test_the_ai_gateway_controller_survives_a_drain(plain):
    controller = values(plain, "ai-gateway")["controller"]
    assert controller["replicaCount"] == 2 and controller["podDisruptionBudget"] == {"enabled": True}
    assert chart_values("ai-gateway-helm")["controller"]["podDisruptionBudget"]["minAvailable"] == 1
    # On two nodes, selected by the chart's own selector labels (its name, the release's name).
    [spread] = controller["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == ("kubernetes.io/hostname", "DoNotSchedule")
    assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ai-gateway-helm",
                                                      "app.kubernetes.io/instance": "ai-gateway"}


def test_controllers_run_on_the_system_nodes(with_redis):
    assert values(with_redis, "envoy-gateway")["deployment"]["pod"]["nodeSelector"] == SYSTEM
    assert values(with_redis, "envoy-gateway")["certgen"]["job"]["nodeSelector"] == SYSTEM
    assert values(with_redis, "ai-gateway")["controller"]["nodeSelector"] == SYSTEM
    assert values(with_redis, "cert-manager")["global"]["nodeSelector"] == SYSTEM
    assert values(with_redis, "ai-gateway-crds") == {}


def test_proxy_labels():
    assert PROXY_LABELS == {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy",
                            "app.kubernetes.io/managed-by": "envoy-gateway"}
    assert proxy_labels("llm", "llm-gateway") == {
        **PROXY_LABELS, "gateway.envoyproxy.io/owning-gateway-name": "llm",
        "gateway.envoyproxy.io/owning-gateway-namespace": "llm-gateway"}
    # The AI Gateway's pod webhook selects on the same label (its chart's objectSelector).
    selector = chart_values("ai-gateway-helm")["controller"]["mutatingWebhook"]["objectSelector"]["matchLabels"]
    assert selector.items() <= PROXY_LABELS.items()


def test_ready_is_the_last_release(plain):
    """The lead's Gateways and routes depend on `ready`: it is the AI Gateway controller."""
    seen = {}

    def program():
        nodes = k8s.core.v1.ConfigMap("system-nodes")
        c = GatewayControllers("gw", GatewayControllersArgs(nodes=[nodes]))
        seen["ready"], seen["ai_gateway"] = c.ready, c.ai_gateway
    mockrun.run_mocked(program, "test", {})
    assert seen["ready"] is seen["ai_gateway"]
