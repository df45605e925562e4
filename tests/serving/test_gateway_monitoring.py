"""The gateway's monitoring: the proxies' PodMonitor (its CRD, both ports, selected by Prometheus),
the gateway's alerts, each unit-tested by promtool with synthetic series that make it fire and
stay quiet, and the "LLM gateway" dashboard; all of it only in stacks with a gateway, every
metric one that the AI Gateway or Envoy exports, under the name it exports."""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.config import AlertThresholds
from components.config.gateway import GatewayConfig
from components.config.monitoring import SloConfig
from components.infra.gateway_controllers import ENVOY_GATEWAY_NAMESPACE
from components.infra.monitoring import SELECTED
from components.offline import mockrun
from components.serving import alerts, dashboards, gateway, gateway_alerts, gateway_monitoring

from ..charts import validate_custom_resource
from ..conftest import ROOT
from .test_alerts import _expected, _promtool, needs_promtool

URL = "https://github.com/acme/llmserve/blob/main/docs/runbook.md"
GATEWAY = GatewayConfig.model_validate({"hostname": "llm.example.com", "teams": [
    {"name": "research", "tokensPerMinute": 1000, "tokensPerDay": 100000},
    {"name": "search", "models": ["qwen-7b"], "tokensPerDay": 50000},
    {"name": "free"}]})
NO_QUOTAS = GatewayConfig.model_validate({"hostname": "llm.example.com", "teams": [{"name": "free"}]})

# What the ext_proc exports (envoyproxy/ai-gateway v1.1.0 internal/metrics/genai.go: four
# histograms, the durations in seconds; examples/monitoring/grafana-dashboard.json queries them by
# these names) and the token types it records (internal/metrics/metrics_impl.go RecordTokenUsage).
GENAI = {f"{base}_{part}" for base in ("gen_ai_client_token_usage", "gen_ai_server_request_duration_seconds",
                                       "gen_ai_server_time_to_first_token_seconds",
                                       "gen_ai_server_time_per_output_token_seconds")
         for part in ("bucket", "sum", "count")}
TOKEN_TYPES = {"input", "cached_input", "cache_creation_input", "output", "reasoning"}
# Envoy's, as /stats/prometheus names them (envoyproxy/envoy source/common/config/well_known_names.cc;
# the HTTP connection manager's downstream_rq_<d>xx, the cluster's upstream_rq_<d>xx,
# api_key_auth_filter.rst, rbac_filter.rst, rate_limit_filter.rst), and Prometheus' `up`.
ENVOY = {"envoy_http_downstream_rq_xx", "envoy_cluster_upstream_rq_xx", "envoy_http_api_key_auth_unauthorized",
         "envoy_http_rbac_denied", "envoy_cluster_ratelimit_over_limit", "envoy_cluster_ratelimit_error"}
RECORDS = {"team:gateway_token_quota:per_minute", "team:gateway_token_quota:per_day",
           "team:gateway_tokens:increase1m", "team:gateway_tokens:increase1d"}

# The labels a scrape of the PodMonitor gives (the Prometheus Operator's), and the ext_proc's own.
SCRAPE = 'namespace="envoy-gateway-system", job="envoy-gateway-system/llmserve-gateway"'
EXTPROC = (f'{SCRAPE}, container="ai-gateway-extproc", endpoint="aigw-admin", gen_ai_operation_name="chat", '
           'gen_ai_provider_name="openai", gen_ai_original_model="qwen-7b", gen_ai_request_model="qwen-7b", '
           'gen_ai_response_model="qwen-7b"')
ENVOY_POD = f'{SCRAPE}, container="envoy", endpoint="metrics", pod="envoy-llm-llmserve-1"'
LISTENER = f'{ENVOY_POD}, envoy_http_conn_manager_prefix="http-10080"'
CLUSTER = f'{ENVOY_POD}, envoy_cluster_name="httproute/llm/llmserve-0/rule/0"'
STEP = "15s"  # the PodMonitor's scrape interval
PER_MINUTE = 4  # samples


def _tokens(team: str, pods: int = 2, **per_minute: int) -> list[dict]:
    """A team's tokens per minute by type, spread over the proxies' pods (every type exported)."""
    return [{"series": f'gen_ai_client_token_usage_sum{{{EXTPROC}, pod="envoy-llm-llmserve-{p}", '
                       f'team_id="{team}", gen_ai_token_type="{kind}"}}',
             "values": f"0+{per_minute.get(kind, 0) / PER_MINUTE / pods:g}x400"}
            for kind in sorted(TOKEN_TYPES) for p in range(pods)]


def _counter(labels: str, name: str, per_minute: float) -> dict:
    return {"series": f"{name}{{{labels}}}", "values": f"0+{per_minute / PER_MINUTE:g}x400"}


def _responses(**per_minute: float) -> list[dict]:
    """Responses per minute by class on the Gateway's listener."""
    return [_counter(f'{LISTENER}, envoy_response_code_class="{c[1]}"', "envoy_http_downstream_rq_xx", n)
            for c, n in per_minute.items()]


OVER_LIMIT = _counter(CLUSTER, "envoy_cluster_ratelimit_over_limit", 30)
NO_OVER_LIMIT = _counter(CLUSTER, "envoy_cluster_ratelimit_over_limit", 0)
UP = f'{SCRAPE}, pod="envoy-llm-llmserve-1", container="envoy", endpoint="metrics", instance="10.0.1.7:19001"'

CASES = {  # id: (alert, firing series, its alerts' labels, [quiet series...], eval time)
    # 90% of the minute's quota (input and output; cached and reasoning tokens are parts of them,
    # not counted again). Quiet at 70%, which would be 130% if they were.
    "near-minute": ("GatewayTeamNearQuota", _tokens("research", input=600, output=300, cached_input=300),
                    [{"team_id": "research", "window": "minute"}],
                    [_tokens("research", input=400, output=300, cached_input=400, reasoning=200)], "25m"),
    # 1200 tokens a minute against 50000 a day: over 80% from minute 34 on, for 15 minutes.
    "near-day": ("GatewayTeamNearQuota", _tokens("search", input=1000, output=200),
                 [{"team_id": "search", "window": "day"}],
                 [_tokens("search", input=500, output=100), _tokens("free", input=100000)], "55m"),
    # A minute over the quota while the rate limiter refuses. Quiet: the team at the quota without
    # refusals; refusals while the team is under its quota (another team's).
    "exhausted-minute": ("GatewayTeamQuotaExhausted", [*_tokens("research", input=800, output=400), OVER_LIMIT],
                         [{"team_id": "research", "window": "minute"}],
                         [[*_tokens("research", input=800, output=400), NO_OVER_LIMIT],
                          [*_tokens("research", input=500, output=200, cached_input=500), OVER_LIMIT]], "20m"),
    "exhausted-day": ("GatewayTeamQuotaExhausted", [*_tokens("search", input=2000), OVER_LIMIT],
                      [{"team_id": "search", "window": "day"}],
                      [[*_tokens("search", input=2000), NO_OVER_LIMIT]], "35m"),
    # 10% 5xx; the proxy's stats listener (Prometheus' scrapes, all 2xx) not counted, or the share
    # would be under 5%. Quiet: 2%.
    "5xx": ("GatewayServerErrors",
            [*_responses(c2=90, c5=10),
             _counter(f'{ENVOY_POD}, envoy_http_conn_manager_prefix="eg-stats-http", envoy_response_code_class="2"',
                      "envoy_http_downstream_rq_xx", 1000)],
            [{}], [_responses(c2=98, c5=2)], "15m"),
    # 12 a minute of each (0.2/s, 9.7% of the responses). Quiet: 100% of a few (0.05/s); 12 a
    # minute among 1000 answered.
    "401-403": ("GatewayAuthFailures",
                [*_responses(c2=100, c4=24), _counter(LISTENER, "envoy_http_api_key_auth_unauthorized", 12),
                 _counter(LISTENER, "envoy_http_rbac_denied", 12)],
                [{"code": "401"}, {"code": "403"}],
                [[*_responses(c4=3), _counter(LISTENER, "envoy_http_api_key_auth_unauthorized", 3)],
                 [*_responses(c2=1000, c4=12), _counter(LISTENER, "envoy_http_api_key_auth_unauthorized", 12)]],
                "25m"),
    "not-enforced": ("GatewayQuotaNotEnforced", [_counter(CLUSTER, "envoy_cluster_ratelimit_error", 2)], [{}],
                     [[_counter(CLUSTER, "envoy_cluster_ratelimit_error", 0)]], "20m"),
    # Quiet: a model's pod down is ServingTargetDown's.
    "target-down": ("GatewayTargetDown", [{"series": f"up{{{UP}}}", "values": "0x100"}],
                    [{**dict(re.findall(r'(\w+)="([^"]*)"', UP))}],
                    [[{"series": f"up{{{UP}}}", "values": "1x100"},
                      {"series": 'up{namespace="llm", pod="qwen-7b-blue-1", job="llm/qwen-7b"}', "values": "0x100"}]],
                    "20m"),
}


@pytest.fixture(scope="module")
def rules() -> dict:
    return {"groups": alerts.rule_groups(AlertThresholds(), "llm", URL, SloConfig(), gateway=GATEWAY)}


@pytest.fixture
def rules_path(rules, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def _gateway_rules(rules: dict) -> list[dict]:
    [group] = [g for g in rules["groups"] if g["name"] == "gateway"]
    return group["rules"]


@needs_promtool
def test_the_rules_with_a_gateway_pass_promtool_check(rules, rules_path):
    result = _promtool("check", "rules", str(rules_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{sum(len(g['rules']) for g in rules['groups'])} rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize("case", sorted(CASES))
def test_alert_fires_when_it_should_and_stays_quiet_otherwise(rules, rules_path, tmp_path, case):
    alert, firing, labels, quiets, at = CASES[case]
    tests = {"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": [
        {"interval": STEP, "input_series": firing, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": [_expected(rules, alert, ls) for ls in labels]}]},
        *({"interval": STEP, "input_series": quiet, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": []}]} for quiet in quiets),
    ]}
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_gateway_alert_has_a_case_a_summary_and_its_runbook_section(rules):
    gateway_alerts = [r for r in _gateway_rules(rules) if "alert" in r]
    assert {r["alert"] for r in gateway_alerts} == {alert for alert, *_ in CASES.values()}
    anchors = {line[3:].strip().lower() for line in (ROOT / "docs" / "runbook.md").read_text().splitlines()
               if line.startswith("## ")}
    for r in gateway_alerts:
        assert r["labels"]["severity"] in ("info", "warning", "critical")
        assert r["annotations"]["summary"]
        assert r["annotations"]["runbook_url"] == f"{URL}#{r['alert'].lower()}"
        assert r["alert"].lower() in anchors, r["alert"]
    assert "gateway" in anchors


def test_without_a_gateway_the_rules_are_what_they_were():
    t = AlertThresholds()
    before = alerts.rule_groups(t, "llm", URL)
    assert before == alerts.rule_groups(t, "llm", URL, SloConfig(), None)
    assert "gateway" not in {g["name"] for g in before}
    names = [g["name"] for g in alerts.rule_groups(t, "llm", URL, gateway=GATEWAY)]
    assert names == [*(g["name"] for g in before), "gateway"]


def test_without_quotas_no_quota_rules():
    [group] = [g for g in alerts.rule_groups(AlertThresholds(), "llm", URL, gateway=NO_QUOTAS)
               if g["name"] == "gateway"]
    assert {r["alert"] for r in group["rules"]} == {"GatewayServerErrors", "GatewayAuthFailures",
                                                    "GatewayTargetDown"}
    assert not any("record" in r for r in group["rules"])


def test_each_quota_is_a_series_of_its_team_and_only_its_windows_are_watched(rules):
    quotas = {(r["record"], r["labels"]["team_id"]): r["expr"] for r in _gateway_rules(rules)
              if r.get("record", "").startswith(gateway_alerts.GATEWAY_QUOTA)}
    assert quotas == {("team:gateway_token_quota:per_minute", "research"): "vector(1000)",
                      ("team:gateway_token_quota:per_day", "research"): "vector(100000)",
                      ("team:gateway_token_quota:per_day", "search"): "vector(50000)"}
    day_only = GatewayConfig.model_validate({"hostname": "llm.example.com", "teams": [
        {"name": "search", "tokensPerDay": 50000}]})
    group = gateway_alerts.gateway_rules(day_only, AlertThresholds(), URL)
    text = yaml.safe_dump(group)
    assert "per_minute" not in text and "increase1m" not in text and "per_day" in text


def test_tokens_are_input_and_output_only():
    """cached_input and cache_creation_input are parts of input, reasoning of output
    (AIGW v1.1.0 internal/translator/openai_openai.go, internal/metrics/metrics.go)."""
    kinds = re.search(r'gen_ai_token_type=~"([^"]+)"', gateway_alerts.GATEWAY_TOKENS)[1].split("|")
    assert sorted(kinds) == ["input", "output"]
    assert set(kinds) <= TOKEN_TYPES


def _metrics(text: str) -> set[str]:
    names = set(re.findall(r"\b((?:gen_ai|envoy)_[a-z_]+)", text)) - {"gen_ai_token_type", "gen_ai_request_model"}
    names = {n for n in names if not n.startswith(("gen_ai_operation", "gen_ai_provider", "gen_ai_original",
                                                   "gen_ai_response", "envoy_http_conn_manager_prefix",
                                                   "envoy_response_code_class", "envoy_cluster_name"))}
    return names


def test_only_metrics_the_gateway_exports_are_used(rules):
    board = dashboards.gateway_dashboard(GATEWAY)
    used = _metrics(yaml.safe_dump(_gateway_rules(rules))) | _metrics(json.dumps(board))
    assert used <= GENAI | ENVOY, used - GENAI - ENVOY
    assert used >= {"gen_ai_client_token_usage_sum", "gen_ai_server_time_to_first_token_seconds_bucket",
                    "gen_ai_server_time_per_output_token_seconds_bucket", "envoy_http_downstream_rq_xx",
                    "envoy_http_api_key_auth_unauthorized", "envoy_http_rbac_denied",
                    "envoy_cluster_ratelimit_over_limit"}
    types = set(re.findall(r'gen_ai_token_type=~?\\?"([^"\\]+)', json.dumps(board)))
    assert {t for v in types for t in v.split("|")} <= TOKEN_TYPES


# ------------------------------------------------------------------------------------------------
# The dashboard


def test_the_gateway_dashboard_comes_only_with_a_gateway():
    assert set(dashboards.all_dashboards("llm")) == {dashboards.DASHBOARD_FILE, dashboards.VLLM_DASHBOARD_FILE}
    assert dashboards.all_dashboards("llm") == dashboards.all_dashboards("llm", None)
    boards = dashboards.all_dashboards("llm", GATEWAY)
    assert set(boards) == {dashboards.DASHBOARD_FILE, dashboards.VLLM_DASHBOARD_FILE,
                           dashboards.GATEWAY_DASHBOARD_FILE}
    json.dumps(boards)  # a ConfigMap's data


def test_the_gateway_dashboard_shows_teams_models_latency_and_refusals():
    board = dashboards.gateway_dashboard(GATEWAY)
    assert board["title"] == "LLM gateway" and board["uid"] == "llmserve-gateway"
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "team", "model"}
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]}
    assert set(panels) == {
        "Tokens per second by team and model", "Requests per second by team and model",
        "Time to first token (streams)", "Time per output token (streams)", "Request duration",
        "Responses per second by class", "Refused per second (401, 403, 429)", "Server errors per second",
        "Share of the quota spent"}
    [tokens] = panels["Tokens per second by team and model"]
    assert tokens.startswith("sum by (team_id, gen_ai_request_model, gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{")
    assert all("histogram_quantile" in e and "by (gen_ai_request_model, le)" in e
               for e in panels["Time to first token (streams)"] + panels["Time per output token (streams)"])
    refused = " ".join(panels["Refused per second (401, 403, 429)"])
    assert all(m in refused for m in ("envoy_http_api_key_auth_unauthorized", "envoy_http_rbac_denied",
                                      "envoy_cluster_ratelimit_over_limit"))
    assert "Share of the quota spent" not in {p["title"] for p in dashboards.gateway_dashboard(NO_QUOTAS)["panels"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboards_quota_panel_reads_the_recorded_series(rules):
    recorded = {r["record"] for r in _gateway_rules(rules) if "record" in r}
    assert recorded == RECORDS
    [panel] = [p for p in dashboards.gateway_dashboard(GATEWAY)["panels"] if p["title"] == "Share of the quota spent"]
    used = {n for t in panel["targets"] for n in re.findall(r"team:[a-z_]+:[a-z0-9_]+", t["expr"])}
    assert used <= recorded and len(panel["targets"]) == 2


@needs_promtool
def test_the_dashboards_queries_parse(tmp_path):
    """Every query of the dashboard as a recording rule: promtool parses it (Grafana's `$team` and
    `$model` sit inside regular expressions)."""
    board = dashboards.gateway_dashboard(GATEWAY)
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [
        {"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------
# The PodMonitor


@pytest.fixture(scope="module")
def monitor_run() -> tuple[mockrun.Run, dict]:
    def program():
        parent = pulumi.ComponentResource("llmserve:test:Parent", "gw")
        release = k8s.core.v1.ConfigMap("prometheus", metadata={"name": "stand-in"})  # the chart's release
        gateway_monitoring.gateway_pod_monitor(parent, "gw", gateway.PROXY_PODS, release)

    run = mockrun.run_mocked(program, "test", {"aws:region": "us-east-1"})
    [monitor] = [r for r in run.resources if r.type.endswith(":PodMonitor")]
    return run, monitor


def test_the_pod_monitor_matches_its_crd_and_scrapes_both_ports(monitor_run):
    _, registration = monitor_run
    monitor = mockrun.reveal(registration.inputs)
    validate_custom_resource(monitor)
    assert monitor["metadata"]["namespace"] == ENVOY_GATEWAY_NAMESPACE == gateway.PROXY_NAMESPACE
    assert monitor["metadata"]["name"] == gateway_monitoring.MONITOR_NAME
    assert SELECTED.items() <= monitor["metadata"]["labels"].items()  # Prometheus selects it
    assert monitor["spec"]["selector"] == {"matchLabels": gateway.PROXY_PODS}
    assert "namespaceSelector" not in monitor["spec"]  # its own namespace: the proxies'
    assert {(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]} == {
        ("aigw-admin", "/metrics"), ("metrics", "/stats/prometheus")}


def test_the_target_down_alert_watches_the_pod_monitors_job(rules, monitor_run):
    """The Prometheus Operator names a PodMonitor's scrape job `<namespace>/<name>`."""
    metadata = mockrun.reveal(monitor_run[1].inputs)["metadata"]
    [down] = [r for r in _gateway_rules(rules) if r.get("alert") == "GatewayTargetDown"]
    assert f'up{{job="{metadata["namespace"]}/{metadata["name"]}"}}' in down["expr"]


def test_the_pod_monitor_waits_for_the_crds_and_belongs_to_its_parent(monitor_run):
    run, registration = monitor_run
    urns = {r.name: r.urn for r in run.resources}
    assert registration.parent == urns["gw"]
    assert urns["prometheus"] in registration.dependencies


def test_prometheus_looks_for_pod_monitors_in_every_namespace():
    """kube-prometheus-stack's default, which infra/monitoring.py keeps: {} is every namespace."""
    from components.config import MonitoringConfig
    from components.infra.monitoring import prometheus_stack_values
    values = prometheus_stack_values(MonitoringConfig(), "gp3")
    spec = values["prometheus"]["prometheusSpec"]
    assert "podMonitorNamespaceSelector" not in spec and "podMonitorSelector" not in spec
    chart = yaml.safe_load((ROOT / "tests" / "data" / "charts" / "kube-prometheus-stack" / "values.yaml").read_text())
    assert chart["prometheus"]["prometheusSpec"]["podMonitorNamespaceSelector"] == {}
    assert chart["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValues"] is True


def test_the_rules_with_a_gateway_match_the_prometheusrule_crd(rules):
    validate_custom_resource({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                              "metadata": {"name": "llmserve", "namespace": "monitoring"}, "spec": rules})
