"""The gateway's alert rules (in stacks with a `gateway`), a PrometheusRule group that
alerts.rule_groups adds: they read the AI Gateway's GenAI metrics and Envoy's stats, both
scraped from the proxies by serving/gateway_monitoring.py. Pure functions, no Pulumi."""

from __future__ import annotations

from ..config import AlertThresholds
from ..config.gateway import GatewayConfig
from ..infra.gateway_controllers import ENVOY_GATEWAY_NAMESPACE
from .gateway_monitoring import MONITOR_NAME
from .rule import alert as _alert

# The gateway (components/serving/gateway.py, docs/gateway.md): Envoy Gateway's proxies, the AI
# Gateway's ext_proc beside each Envoy, both scraped by serving/gateway_monitoring.py.
#
# The ext_proc's GenAI metrics (envoyproxy/ai-gateway v1.1.0 internal/metrics/genai.go; their
# Prometheus names as its examples/monitoring/grafana-dashboard.json queries them):
# gen_ai.client.token.usage is the histogram gen_ai_client_token_usage_{bucket,sum,count}, one
# observation per token type of each response (internal/metrics/metrics_impl.go RecordTokenUsage),
# labelled gen_ai_token_type, gen_ai_request_model (the request's `model`) and team_id (the
# x-team-id header the key check sets, through the controller's metricsRequestHeaderAttributes,
# infra/gateway_controllers.py). A response's tokens are its `input` plus its `output`:
# `cached_input` and `cache_creation_input` are parts of `input` (the OpenAI schema's
# prompt_tokens count the cached ones, internal/translator/openai_openai.go; metrics.go
# ExtractTokenUsageFromExplicitCaching adds them into `input` for the schemas that count them
# apart) and `reasoning` is a part of `output` (completion_tokens). Input plus output is the
# response's total_tokens, what a quota is charged (gateway.py TOKENS_METADATA).
GATEWAY_TOKENS = 'gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"}'
TEAM_LABEL = "team_id"
# Envoy's stats as /stats/prometheus writes them, under Envoy's default tag extraction
# (envoyproxy/envoy source/common/config/well_known_names.cc: `http.<prefix>.` becomes the label
# envoy_http_conn_manager_prefix, `cluster.<name>.` envoy_cluster_name, `_rq_<d>xx`
# envoy_response_code_class="<d>"); EG v1.8.3 runs Envoy v1.38 (api/v1alpha1/shared_types.go).
# The Gateway's listeners are the connection managers `http-<port>` (`https-<port>` with TLS at
# Envoy: EG v1.8.3 internal/xds/translator/listener.go hcmStatPrefix); the proxy's stats and
# readiness listeners (`eg-stats-http`, `eg-ready-http`: internal/xds/bootstrap/bootstrap.yaml.tpl,
# internal/xds/translator/listener_ready.go) answer Prometheus and the kubelet, not clients.
GATEWAY_LISTENERS = 'envoy_http_conn_manager_prefix=~"https?-[0-9]+"'
# Every response to a client, by class (the connection manager's downstream_rq_1xx..5xx, local
# replies included).
GATEWAY_RESPONSES = "envoy_http_downstream_rq_xx"
# The refusals, by the filter that makes them. EG v1.8.3 orders the filters api_key_auth, the AI
# Gateway's ext_proc, rbac, ratelimit, router (internal/xds/translator/httpfilters.go); each answers
# with a local reply before the router, so a refused request goes to no engine and into no GenAI
# metric (the ext_proc records the requests it sends upstream: AIGW
# internal/extproc/processor_impl.go).
# 401, no key or an unknown one: api_key_auth's `unauthorized`. 403, a team asking for a model it
# may not use: rbac's `denied` (the SecurityPolicy's authorization; api_key_auth's own `forbidden`
# counts keys whose client a route does not allow, and EG configures no allowed clients)
# (envoyproxy/envoy docs/root/configuration/http/http_filters/api_key_auth_filter.rst,
# rbac_filter.rst: both under `http.<prefix>.`). 429, over a quota: `over_limit` of the route's
# cluster; `error` when the ratelimit service did not answer (rate_limit_filter.rst:
# `cluster.<route target cluster>.ratelimit.`).
GATEWAY_UNAUTHORIZED = "envoy_http_api_key_auth_unauthorized"
GATEWAY_FORBIDDEN = "envoy_http_rbac_denied"
GATEWAY_OVER_LIMIT = "envoy_cluster_ratelimit_over_limit"
GATEWAY_RATE_LIMIT_ERRORS = "envoy_cluster_ratelimit_error"
# The scrape job of the proxies' PodMonitor: the Prometheus Operator names a PodMonitor's job
# `<namespace>/<name>`.
GATEWAY_SCRAPE_JOB = f"{ENVOY_GATEWAY_NAMESPACE}/{MONITOR_NAME}"
# Each team's quotas as series (`team_id`, a constant), and the tokens it spent over each window.
GATEWAY_QUOTA = "team:gateway_token_quota:per_"  # + minute | day
GATEWAY_SPENT = {"minute": "team:gateway_tokens:increase1m", "day": "team:gateway_tokens:increase1d"}
# GatewayTeamNearQuota: a team has spent this share of a quota. No setting yet.
QUOTA_NEAR = 0.8
# GatewayAuthFailures: over 10 minutes, at least this share of the gateway's responses are
# refusals with one code, and at least this many per second. No setting yet.
AUTH_FAILURE_RATIO = 0.05
AUTH_FAILURE_PER_SECOND = 0.1


def team_quotas(gateway: GatewayConfig) -> dict[str, dict[str, int]]:
    """The quotas by window (`minute`, `day`), each by team: the teams that have one."""
    quotas = {"minute": {t.name: t.tokens_per_minute for t in gateway.teams if t.tokens_per_minute},
              "day": {t.name: t.tokens_per_day for t in gateway.teams if t.tokens_per_day}}
    return {window: teams for window, teams in quotas.items() if teams}


def _spent_share(window: str, spent: str, comparison: str) -> str:
    """Per team, `spent` (a series by team_id) over the window's quota, kept when `comparison`
    holds, labelled `window`."""
    return (f'label_replace({spent} / on ({TEAM_LABEL}) {GATEWAY_QUOTA}{window} {comparison}, '
            f'"window", "{window}", "", "")')


def gateway_rules(gateway: GatewayConfig, t: AlertThresholds, runbook_url: str) -> list[dict]:
    """The gateway's group: its 5xx share and its refusals (Envoy's stats), and with token quotas
    each team's quota and spending as recorded series, then the quota alerts.

    The rate limiter counts fixed windows (a clock minute, a UTC day: envoyproxy/ratelimit
    src/limiter/base_limiter.go, the cache key per unit); Prometheus measures the last minute and
    the last 24 hours. A team's spending over a sliding window reaches its quota whenever it is
    refused, but can reach it, across two fixed windows, without being refused."""
    responses = f"sum(rate({GATEWAY_RESPONSES}{{{GATEWAY_LISTENERS}}}[10m]))"

    def refused(code: str, selector: str) -> str:
        rate = f"sum(rate({selector}[10m]))"
        return (f'label_replace({rate} / {responses} > {AUTH_FAILURE_RATIO} and {rate} > '
                f'{AUTH_FAILURE_PER_SECOND}, "code", "{code}", "", "")')

    rules = [
        _alert("GatewayServerErrors",
               f'sum(rate({GATEWAY_RESPONSES}{{{GATEWAY_LISTENERS}, envoy_response_code_class="5"}}[5m])) '
               f"/ sum(rate({GATEWAY_RESPONSES}{{{GATEWAY_LISTENERS}}}[5m])) > {t.failure_ratio}",
               "5m", "critical", "The gateway answers with server errors",
               f"More than {t.failure_ratio:.0%} of the gateway's responses are 5xx: an engine that "
               "fails or is overloaded, a model with no ready replica, a route timeout, or the AI "
               "Gateway's ext_proc failing.", runbook_url),
        _alert("GatewayAuthFailures",
               f"{refused('401', f'{GATEWAY_UNAUTHORIZED}{{{GATEWAY_LISTENERS}}}')} or "
               f"{refused('403', f'{GATEWAY_FORBIDDEN}{{{GATEWAY_LISTENERS}}}')}",
               "10m", "warning", "The gateway refuses many requests with {{ $labels.code }}",
               f"More than {AUTH_FAILURE_RATIO:.0%} of the gateway's responses over 10 minutes are "
               "{{ $labels.code }} (401: no API key or an unknown one; 403: a team asking for a model "
               "it may not use): a client with an old or wrong key, a team's new model not allowed "
               "yet, or someone trying keys.", runbook_url),
        _alert("GatewayTargetDown",
               f'up{{job="{GATEWAY_SCRAPE_JOB}"}} == 0',
               "10m", "warning", "{{ $labels.pod }}: Prometheus cannot scrape the gateway",
               "A gateway proxy's metrics ({{ $labels.container }}) have been unreachable for 10 "
               "minutes: the gateway's alerts and dashboard are blind to it.", runbook_url),
    ]
    quotas = team_quotas(gateway)
    if not quotas:
        return rules
    records = [{"record": f"{GATEWAY_QUOTA}{window}", "expr": f"vector({tokens})", "labels": {TEAM_LABEL: team}}
               for window, teams in quotas.items() for team, tokens in teams.items()]
    records += [{"record": GATEWAY_SPENT[window],
                 "expr": f"sum by ({TEAM_LABEL}) (increase({GATEWAY_TOKENS}[{'1m' if window == 'minute' else '1d'}]))"}
                for window in quotas]
    # Near: the minute's spending averaged over 5 minutes (a steady pace, not one burst); the day's
    # over the last 24 hours. Exhausted: a minute at the quota within the last 5, or the last 24
    # hours; and the rate limiter refusing requests now (its refusals carry no team).
    near = {"minute": _spent_share("minute", f"avg_over_time({GATEWAY_SPENT['minute']}[5m])", f"> {QUOTA_NEAR}"),
            "day": _spent_share("day", GATEWAY_SPENT["day"], f"> {QUOTA_NEAR}")}
    spent = {"minute": _spent_share("minute", f"max_over_time({GATEWAY_SPENT['minute']}[5m])", ">= 1"),
             "day": _spent_share("day", GATEWAY_SPENT["day"], ">= 1")}
    quota_alerts = [
        _alert("GatewayTeamNearQuota", " or ".join(near[window] for window in quotas),
               "15m", "warning", "{{ $labels.team_id }} is near its token quota per {{ $labels.window }}",
               f"The team {{{{ $labels.team_id }}}} has spent more than {QUOTA_NEAR:.0%} of its tokens "
               "per {{ $labels.window }} (prompt and output, over the last minute on average over "
               "5 minutes, or over the last 24 hours) for 15 minutes: at this pace the gateway will "
               "answer it 429 until the window ends.", runbook_url),
        _alert("GatewayTeamQuotaExhausted",
               f"({' or '.join(spent[window] for window in quotas)}) "
               f"and on () sum(rate({GATEWAY_OVER_LIMIT}[5m])) > 0",
               "5m", "info", "{{ $labels.team_id }} has spent its token quota per {{ $labels.window }}",
               "The team {{ $labels.team_id }} has spent its whole quota of tokens per "
               "{{ $labels.window }} and the gateway answers requests 429 (over quota): the team "
               "waits for the next window, or its quota is raised.", runbook_url),
        # Fail open (docs/gateway.md): while the ratelimit service cannot answer (Redis), requests
        # pass without being counted, or get 500 with failClosed.
        _alert("GatewayQuotaNotEnforced",
               f"sum(rate({GATEWAY_RATE_LIMIT_ERRORS}[5m])) > 0",
               "10m", "warning", "The gateway cannot reach its rate limit service",
               "Envoy's calls to the rate limit service fail: the teams' token quotas are not "
               "counted and requests pass without them (with failClosed they get 500).", runbook_url),
    ]
    return [*records, *rules, *quota_alerts]
