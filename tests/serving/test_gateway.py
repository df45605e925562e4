"""The gateway: one OpenAI endpoint for every model, a key per team, each team its models, token
quotas; its custom resources match their CRDs, the engines hold no key and admit only the
gateway's Envoy pods and Prometheus, and bad gateway settings are refused naming the setting."""

from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config import ConfigError
from components.offline import mockrun
from components.serving import gateway

from ..charts import validate_custom_resource
from ..conftest import cli, run_settings, stack_settings
from .helpers import DEPLOYMENT, container, env, manifest

KEY = "TeamKeyOfResearch0123456789abcdefXYZ"
GROUPS = ("gateway.networking.k8s.io", "gateway.envoyproxy.io", "aigateway.envoyproxy.io")
TEAMS = [{"name": "research", "tokensPerMinute": 200000, "tokensPerDay": 50000000},
         {"name": "search", "models": ["qwen-7b"]}]


def gateway_settings(**gateway_settings) -> dict:
    settings = copy.deepcopy(stack_settings("dev"))
    settings["models"][0]["evictions"] = "block"  # one replica behind the gateway
    settings["gateway"] = {"hostname": "llm.dev.example.com", "teams": copy.deepcopy(TEAMS), **gateway_settings}
    return settings


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    settings = gateway_settings(certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/abc-123")
    settings["teamKeys"] = json.dumps({"research": KEY})
    return run_settings(settings, secret_keys=("teamKeys",))


def _custom(run: mockrun.Run) -> dict[tuple[str, str], dict]:
    out = {}
    for r in run.resources:
        inputs = mockrun.reveal(r.inputs)
        if r.type.startswith("kubernetes:") and inputs.get("apiVersion", "").split("/")[0] in GROUPS:
            out[inputs["kind"], inputs["metadata"]["name"]] = inputs
    return out


def test_every_custom_resource_matches_its_crd(run):
    resources = _custom(run)
    kinds = {kind for kind, _ in resources}
    assert kinds >= {"GatewayClass", "Gateway", "EnvoyProxy", "ClientTrafficPolicy", "SecurityPolicy",
                     "BackendTrafficPolicy", "Backend", "AIServiceBackend", "AIGatewayRoute"}
    for resource in resources.values():
        validate_custom_resource(resource)


def test_one_rule_per_model_to_its_service_with_the_plans_timeouts(run):
    custom = _custom(run)
    [route] = [v for (kind, _), v in custom.items() if kind == "AIGatewayRoute"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "qwen-7b"}]}]
    backend = custom["Backend", "qwen-7b"]["spec"]["endpoints"][0]["fqdn"]
    # The model's Service, which follows its active slot (blue-green moves the gateway too).
    assert backend == {"hostname": "qwen-7b.llm.svc.cluster.local", "port": 80}
    assert rule["streamIdleTimeout"] == rule["timeouts"]["request"]


def test_the_route_timeout_is_the_models_generation_cap(run):
    """The AI Gateway's default of 60 s would cut long generations: the plan's cap, which the
    engine's drain is too (TGI's GRACEFUL_TERMINATION_TIMEOUT)."""
    drain = int(env(container(manifest(run, DEPLOYMENT, "qwen-7b-blue")))["GRACEFUL_TERMINATION_TIMEOUT"])
    [route] = [v for (kind, _), v in _custom(run).items() if kind == "AIGatewayRoute"]
    assert route["spec"]["rules"][0]["timeouts"]["request"] == f"{drain + gateway.TIMEOUT_MARGIN_SECONDS}s"
    assert drain > 60


def test_keys_per_team_forwarded_as_team_id_and_stripped(run):
    policy = _custom(run)["SecurityPolicy", "llmserve"]["spec"]
    assert policy["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "llmserve"}]
    auth = policy["apiKeyAuth"]
    assert auth["forwardClientIDHeader"] == "x-team-id" and auth["sanitize"] is True
    assert auth["extractFrom"] == [{"headers": ["authorization"]}]
    [ref] = auth["credentialRefs"]
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == ref["name"])
    data = mockrun.reveal(secret.inputs["stringData"], mask=False)
    assert data["research"] == KEY  # set in config
    assert len(data["search"]) == 48  # generated
    assert mockrun.is_secret(run.outputs["teamKeys"])
    assert mockrun.reveal(run.outputs["teamKeys"], mask=False) == data


def test_each_team_reaches_its_models_only(run):
    authorization = _custom(run)["SecurityPolicy", "llmserve"]["spec"]["authorization"]
    assert authorization["defaultAction"] == "Deny"
    rules = {r["name"]: r["principal"]["headers"] for r in authorization["rules"]}
    assert rules == {"research": [{"name": "x-team-id", "values": ["research"]}],
                     "search": [{"name": "x-team-id", "values": ["search"]},
                                {"name": "x-ai-eg-model", "values": ["qwen-7b"]}]}


def test_token_quotas_per_team_over_all_models(run):
    rules = _custom(run)["BackendTrafficPolicy", "llmserve"]["spec"]["rateLimit"]["global"]["rules"]
    assert [(r["clientSelectors"][0]["headers"][0]["value"], r["limit"]) for r in rules] == [
        ("research", {"requests": 200000, "unit": "Minute"}), ("research", {"requests": 50000000, "unit": "Day"})]
    for r in rules:
        assert r["shared"] is True  # one budget per team, not one per model rule
        assert r["cost"]["response"] == {"from": "Metadata", "metadata": {"namespace": "io.envoy.ai_gateway",
                                                                          "key": "llm_total_token"}}
    [route] = [v for (kind, _), v in _custom(run).items() if kind == "AIGatewayRoute"]
    assert route["spec"]["llmRequestCosts"] == [{"metadataKey": "llm_total_token", "type": "TotalToken"}]


def test_tls_at_the_nlb_open_to_the_vpc_only(run):
    custom = _custom(run)
    service = custom["EnvoyProxy", "llmserve"]["spec"]["provider"]["kubernetes"]["envoyService"]
    a = service["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert (a[f"{prefix}type"], a[f"{prefix}nlb-target-type"], a[f"{prefix}scheme"]) == ("external", "ip", "internal")
    assert a[f"{prefix}ssl-cert"].startswith("arn:aws:acm:") and a[f"{prefix}ssl-ports"] == "443"
    assert service["loadBalancerSourceRanges"] == [stack_settings("dev")["cluster"]["vpc"]["cidr"]]
    assert service["externalTrafficPolicy"] == "Cluster"
    [listener] = custom["Gateway", "llmserve"]["spec"]["listeners"]
    assert (listener["protocol"], listener["port"], listener["hostname"]) == ("HTTP", 443, "llm.dev.example.com")
    assert custom["ClientTrafficPolicy", "llmserve"]["spec"]["connection"]["bufferLimit"] == "50Mi"


def test_engines_hold_no_key_and_admit_only_the_gateway(run):
    c = container(manifest(run, DEPLOYMENT, "qwen-7b-blue"))
    assert "API_KEY" not in env(c)
    assert not [r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "tgi-api-key"]
    assert not run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    policy = manifest(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-7b-serving")["spec"]
    sources = [f for rule in policy["ingress"] for f in rule["from"]]
    assert {json.dumps(s, sort_keys=True) for s in sources} == {json.dumps(s, sort_keys=True) for s in [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
         "podSelector": {"matchLabels": gateway.PROXY_PODS}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}
    assert run.outputs["gatewayUrl"] == "https://llm.dev.example.com/v1"
    assert mockrun.reveal(run.outputs).get("apiKey") is None


def test_only_the_nlb_and_prometheus_reach_the_proxies(run):
    """The NLB connects from its own addresses (TLS ends there) in its subnets, to the port Envoy
    listens on for the Gateway's listener (443 shifted by Envoy Gateway to 10443; 80 to 10080)."""
    policy = manifest(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llmserve-proxies")
    assert policy["metadata"]["namespace"] == gateway.PROXY_NAMESPACE
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": gateway.PROXY_PODS} and spec["policyTypes"] == ["Ingress"]
    nlb, prometheus = spec["ingress"]
    lb_subnets = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet") if "-lb-" in s.name)
    assert lb_subnets and sorted(p["ipBlock"]["cidr"] for p in nlb["from"]) == lb_subnets
    assert nlb["ports"] == [{"protocol": "TCP", "port": 10443}]
    assert prometheus["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    # The ports the PodMonitor scrapes, by name.
    monitor = manifest(run, "kubernetes:monitoring.coreos.com/v1:PodMonitor", "llmserve-gateway")
    assert {p["port"] for p in prometheus["ports"]} == {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    plain = manifest(run_settings(gateway_settings()), "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llmserve-proxies")
    assert plain["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 10080}]


def test_no_key_in_any_rendered_file(tmp_path):
    settings = gateway_settings()
    doc = {"config": {"aws:region": "us-east-1", **{f"llmserve:{k}": v for k, v in settings.items()},
                      "llmserve:teamKeys": {"research": {"secure": "v1:c2VjcmV0"}}}}
    path = tmp_path / "Pulumi.gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = cli("render", "--stack", "gw", "--config-file", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    text = "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "llmserve-team-keys" in text and "[secret]" in text
    assert "c2VjcmV0" not in text and "r" * 48 not in text  # the mocks' generated key


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 47))
def test_routes_hold_at_most_15_rules_and_every_model_once(count):
    models = [gateway.GatewayModel(f"m{i}", 100) for i in range(count)]
    seen = []

    def program():
        gateway.ModelGateway("gw", gateway.ModelGatewayArgs(
            config=_config(), namespace="llm", models=models))

    run = mockrun.run_mocked(program, "test", {"aws:region": "us-east-1"})
    routes = [mockrun.reveal(r.inputs) for r in run.resources if r.type.endswith("AIGatewayRoute")]
    assert len(routes) == math.ceil(count / gateway.RULES_PER_ROUTE)
    for route in routes:
        assert 1 <= len(route["spec"]["rules"]) <= gateway.RULES_PER_ROUTE
        seen += [rule["name"] for rule in route["spec"]["rules"]]
    assert sorted(seen) == sorted(m.name for m in models)


def _config():
    from components.config.gateway import GatewayConfig
    return GatewayConfig.model_validate({"hostname": "llm.example.com", "teams": [{"name": "a"}]})


def _error(settings: dict, secret_keys: tuple = ()) -> str:
    with pytest.raises(ConfigError) as err:
        run_settings(settings, secret_keys=secret_keys)
    return str(err.value)


@pytest.mark.parametrize("change, expected", [
    (lambda g: g.update(scheme="internet-facing", certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/a"),
     "gateway.allowedCidrs: required with scheme internet-facing"),
    (lambda g: g.update(scheme="internet-facing", allowedCidrs=["198.51.100.0/24"]),
     "gateway.certificateArn: required with scheme internet-facing"),
    (lambda g: g.update(allowedCidrs=["0.0.0.0/0"]), "gateway.allowedCidrs"),
    (lambda g: g["teams"].append({"models": ["qwen-7b"]}), "gateway.teams[2].name: required"),
    (lambda g: g["teams"].append({"name": "research"}), "gateway: teams[2].name: 'research' is used twice"),
    (lambda g: g["teams"][1].update(models=["qwen-70b"]),
     "gateway.teams[1].models: 'qwen-70b' is not a model of the stack (qwen-7b)"),
    (lambda g: g.update(hostname="llm_dev"), "gateway.hostname: 'llm_dev' is not a DNS name"),
    (lambda g: g["teams"][0].update(tokensPerMinute=0), "gateway.teams[0].tokensPerMinute"),
])
def test_bad_gateway_settings_are_refused_naming_the_setting(change, expected):
    settings = gateway_settings()
    change(settings["gateway"])
    assert expected in _error(settings)


def test_a_team_key_in_plain_text_is_refused_and_not_echoed():
    settings = gateway_settings()
    settings["teamKeys"] = json.dumps({"research": KEY})
    message = _error(settings)  # not marked secret
    assert "teamKeys: stored in plain text in the stack file" in message and KEY not in message


def test_keys_for_unknown_teams_and_a_shared_api_key_are_refused():
    settings = gateway_settings()
    settings["teamKeys"] = json.dumps({"ghost": KEY})
    settings["apiKey"] = "A" * 32
    message = _error(settings, secret_keys=("teamKeys", "apiKey"))
    assert "teamKeys.ghost: no team 'ghost' in gateway.teams (research, search)" in message
    assert "apiKey: not with gateway: each team has its own key" in message
    assert KEY not in message and "A" * 32 not in message


def test_a_short_team_key_is_refused():
    settings = gateway_settings()
    settings["teamKeys"] = json.dumps({"research": "short"})
    assert "teamKeys.research: at least 16 characters" in _error(settings, secret_keys=("teamKeys",))


def test_the_gateway_replaces_the_ingress():
    settings = gateway_settings()
    settings["ingress"] = copy.deepcopy(stack_settings("ingress")["ingress"])
    assert "ingress: not with gateway" in _error(settings)


def test_bad_gateway_settings_exit_2_from_the_cli(tmp_path):
    settings = gateway_settings(scheme="internet-facing")
    doc = {"config": {"aws:region": "us-east-1", **{f"llmserve:{k}": v for k, v in settings.items()}}}
    path = tmp_path / "Pulumi.gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = cli("render", "--stack", "gw", "--config-file", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "gateway.allowedCidrs: required with scheme internet-facing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_gateway_is_scraped_alerted_and_on_a_dashboard(run):
    [monitor] = [mockrun.reveal(r.inputs) for r in run.resources
                 if r.type == "kubernetes:monitoring.coreos.com/v1:PodMonitor"
                 and r.inputs["metadata"]["name"] == "llmserve-gateway"]
    validate_custom_resource(monitor)
    assert monitor["metadata"]["namespace"] == gateway.PROXY_NAMESPACE
    assert monitor["spec"]["selector"] == {"matchLabels": gateway.PROXY_PODS}
    rules = next(mockrun.reveal(r.inputs) for r in run.resources
                 if r.type == "kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    alerts = {rule.get("alert") for group in rules["spec"]["groups"] if group["name"] == "gateway"
              for rule in group["rules"]}
    assert {"GatewayServerErrors", "GatewayTeamNearQuota"} <= alerts
    dashboards = [mockrun.reveal(r.inputs) for r in run.of_type("kubernetes:core/v1:ConfigMap")
                  if "llmserve-gateway.json" in (r.inputs.get("data") or {})]
    assert len(dashboards) == 1


def test_proxies_drain_for_the_longest_generation_and_one_at_a_time(run):
    spec = _custom(run)["EnvoyProxy", "llmserve"]["spec"]
    [route] = [v for (kind, _), v in _custom(run).items() if kind == "AIGatewayRoute"]
    # Envoy Gateway's 60 s drain would cut generations in flight on a proxy rollout.
    assert spec["shutdown"]["drainTimeout"] == route["spec"]["rules"][0]["timeouts"]["request"]
    assert spec["provider"]["kubernetes"]["envoyPDB"] == {"minAvailable": 1}
    # The NLB goes before the controller that removes it (pulumi destroy).
    [proxy] = [r for r in run.resources if r.type.endswith("EnvoyProxy")]
    lbc = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release")
               if r.inputs["name"] == "aws-load-balancer-controller")
    assert lbc.urn in proxy.dependencies
    namespace = next(r for r in run.of_type("kubernetes:core/v1:Namespace")
                     if r.inputs["metadata"]["name"] == gateway.PROXY_NAMESPACE)
    assert namespace.inputs["metadata"]["labels"] == {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}


def test_two_teams_with_one_key_are_refused_without_the_key():
    settings = gateway_settings()
    settings["teamKeys"] = json.dumps({"research": KEY, "search": KEY})
    message = _error(settings, secret_keys=("teamKeys",))
    assert "teamKeys: research, search have the same key: give each team its own" in message
    assert KEY not in message


def test_the_nlb_speaks_modern_tls_across_zones_and_envoy_stays_on_the_system_nodes(run):
    spec = _custom(run)["EnvoyProxy", "llmserve"]["spec"]["provider"]["kubernetes"]
    a = spec["envoyService"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert a[f"{prefix}ssl-negotiation-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert a[f"{prefix}attributes"] == "load_balancing.cross_zone.enabled=true"
    assert spec["envoyDeployment"]["pod"]["nodeSelector"] == {"llmserve/node-group": "system"}
    # Envoy closes idle client connections before the NLB's fixed 350 s would, silently, and
    # keeps a connection that waits for a long answer alive with TCP keepalives well within it.
    client = _custom(run)["ClientTrafficPolicy", "llmserve"]["spec"]
    assert client["timeout"] == {"http": {"idleTimeout": "300s"}}
    # A client cannot pose as another team: its own x-team-id is dropped before the key filter.
    assert client["headers"] == {"earlyRequestHeaders": {"remove": ["x-team-id"]}}
    keepalive = client["tcpKeepalive"]
    assert int(keepalive["idleTime"].rstrip("s")) < 350 and int(keepalive["interval"].rstrip("s")) < 350
