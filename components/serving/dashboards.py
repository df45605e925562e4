"""The Grafana dashboards of the models and their GPUs, one per engine (same metrics as
components/serving/alerts.py). Pure functions, no Pulumi."""

from __future__ import annotations

from typing import Optional

from ..config.gateway import GatewayConfig
from .alerts import ERRORS, SLOW_QUEUE, VLLM_ERRORS, VLLM_FIRST_TOKEN_SECONDS, VLLM_SLOW_FIRST_TOKEN
from .gateway_alerts import (GATEWAY_FORBIDDEN, GATEWAY_LISTENERS, GATEWAY_OVER_LIMIT, GATEWAY_QUOTA,
                             GATEWAY_RESPONSES, GATEWAY_SPENT, GATEWAY_TOKENS, GATEWAY_UNAUTHORIZED, team_quotas)

DASHBOARD_FILE = "llmserve-tgi.json"  # its key in the dashboards ConfigMap
VLLM_DASHBOARD_FILE = "llmserve-vllm.json"
GATEWAY_DASHBOARD_FILE = "llmserve-gateway.json"


def _panel(i: int, title: str, unit: str, *targets: tuple[str, str]) -> dict:
    return {
        "id": i + 1, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + n), "expr": expr, "legendFormat": legend}
                    for n, (expr, legend) in enumerate(targets)],
    }


def dashboard(namespace: str) -> dict:
    """One dashboard for every model (variable `model`): traffic, latency, queue, batch,
    throughput, time per token, GPU utilization and memory, and the SLOs' bad-request ratios."""
    sel = f'namespace="{namespace}", model=~"$model"'
    q = lambda quantile, metric: (  # noqa: E731
        f"histogram_quantile({quantile}, sum by (model, le) (rate({metric}_bucket{{{sel}}}[5m])))",
        f"{{{{model}}}} p{int(quantile * 100)}")
    panels = [
        ("Requests per second", "reqps", (f"sum by (model) (rate(tgi_request_count{{{sel}}}[5m]))", "{{model}}"),
         (f"sum by (model) (rate(tgi_request_failure{{{sel}}}[5m]))", "{{model}} failed")),
        ("Request latency", "s", q(0.5, "tgi_request_duration"), q(0.95, "tgi_request_duration"),
         q(0.99, "tgi_request_duration")),
        ("Queue size", "short", (f"sum by (model) (tgi_queue_size{{{sel}}})", "{{model}}")),
        ("Batch size", "short", (f"sum by (model) (tgi_batch_current_size{{{sel}}})", "{{model}}")),
        ("Generated tokens per second", "short",
         (f"sum by (model) (rate(tgi_request_generated_tokens_sum{{{sel}}}[5m]))", "{{model}}")),
        ("Time per output token", "s", q(0.5, "tgi_request_mean_time_per_token_duration"),
         q(0.95, "tgi_request_mean_time_per_token_duration")),
        *GPU_PANELS,
        # The SLOs' recording rules (alerts.slo_groups): the share of requests over the last hour
        # that failed by the service's fault, or waited in the queue beyond the objective.
        ("SLO: bad requests (1h)", "percentunit", (f"{ERRORS}1h{{{sel}}}", "{{model}} failed"),
         (f"{SLOW_QUEUE}1h{{{sel}}}", "{{model}} queued too long")),
    ]
    return _board("tgi", "TGI", f'label_values(tgi_request_count{{namespace="{namespace}"}}, model)', panels)


# DCGM exporter's, for every GPU node whatever its engine.
GPU_PANELS = (
    ("GPU utilization", "percent", ("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}} GPU {{gpu}}")),
    ("GPU memory used", "percentunit",
     ("avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))",
      "{{Hostname}} GPU {{gpu}}")),
)


def _board(engine: str, title: str, models: str, panels: list) -> dict:
    return {
        "uid": f"llmserve-{engine}", "title": f"LLM serving ({title})", "schemaVersion": 39, "version": 1,
        "editable": False, "tags": ["llmserve", engine], "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "model", "type": "query", "label": "Model", "multi": True, "includeAll": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": models, "refresh": 2},
        ]},
        "panels": [_panel(i, title, unit, *targets) for i, (title, unit, *targets) in enumerate(panels)],
    }


def vllm_dashboard(namespace: str) -> dict:
    """The vLLM models' dashboard (variable `model`): requests by how they finished, latency, time
    to first token, inter-token latency, running and waiting requests, KV cache and preemptions,
    token throughput, the GPUs, and the SLOs' bad-request ratios. vLLM's metric names as exported
    (vllm-project/vllm@v0.33.0:vllm/v1/metrics/loggers.py)."""
    sel = f'namespace="{namespace}", model=~"$model"'
    q = lambda quantile, metric: (  # noqa: E731
        f"histogram_quantile({quantile}, sum by (model, le) (rate({metric}_bucket{{{sel}}}[5m])))",
        f"{{{{model}}}} p{int(quantile * 100)}")
    panels = [
        ("Requests per second", "reqps",
         (f"sum by (model, finished_reason) (rate(vllm:request_success_total{{{sel}}}[5m]))",
          "{{model}} {{finished_reason}}"),
         (f"sum by (model) (rate(vllm:admission_rejections_total{{{sel}}}[5m]))", "{{model}} refused")),
        ("Request latency", "s", q(0.5, "vllm:e2e_request_latency_seconds"),
         q(0.95, "vllm:e2e_request_latency_seconds"), q(0.99, "vllm:e2e_request_latency_seconds")),
        ("Time to first token", "s", q(0.5, "vllm:time_to_first_token_seconds"),
         q(0.95, "vllm:time_to_first_token_seconds"), q(0.99, "vllm:time_to_first_token_seconds")),
        ("Inter-token latency", "s", q(0.5, "vllm:inter_token_latency_seconds"),
         q(0.95, "vllm:inter_token_latency_seconds")),
        ("Requests running and waiting", "short",
         (f"sum by (model) (vllm:num_requests_running{{{sel}}})", "{{model}} running"),
         (f"sum by (model) (vllm:num_requests_waiting{{{sel}}})", "{{model}} waiting")),
        ("KV cache usage", "percentunit",
         (f"max by (model, pod) (vllm:kv_cache_usage_perc{{{sel}}})", "{{model}} {{pod}}")),
        ("Tokens per second", "short",
         (f"sum by (model) (rate(vllm:prompt_tokens_total{{{sel}}}[5m]))", "{{model}} prompt"),
         (f"sum by (model) (rate(vllm:generation_tokens_total{{{sel}}}[5m]))", "{{model}} generated")),
        ("Preemptions per second", "short",
         (f"sum by (model) (rate(vllm:num_preemptions_total{{{sel}}}[5m]))", "{{model}}")),
        *GPU_PANELS,
        ("SLO: bad requests (1h)", "percentunit", (f"{VLLM_ERRORS}1h{{{sel}}}", "{{model}} failed"),
         (f"{VLLM_SLOW_FIRST_TOKEN}1h{{{sel}}}",
          f"{{{{model}}}} first token after {VLLM_FIRST_TOKEN_SECONDS:g} s")),
    ]
    return _board("vllm", "vLLM", f'label_values(vllm:num_requests_running{{namespace="{namespace}"}}, model)',
                  panels)


def gateway_dashboard(gateway: GatewayConfig) -> dict:
    """The gateway's dashboard (variables `team`, `model`): tokens and requests per second by team
    and model, time to first token, time per output token and request duration per model (the AI
    Gateway's GenAI metrics, alerts.py), the refusals (401, 403, 429) and the 5xx (Envoy's stats),
    and with quotas the share of each team's quota it spent.

    The ext_proc records a response's tokens when the engine reports them: a stream reports them
    only when asked to (`stream_options.include_usage`), which the AI Gateway asks for itself on
    routes with token costs, i.e. in stacks with quotas (AIGW v1.1.0 internal/endpointspec/
    endpointspec.go); the time to first token and per output token are measured on streams only
    (internal/metrics/metrics_impl.go RecordTokenLatency). Requests refused by the gateway reach
    neither: they are counted by Envoy only."""
    sel = 'team_id=~"$team", gen_ai_request_model=~"$model"'
    tokens = GATEWAY_TOKENS.replace("}", f", {sel}}}")
    requests = f"gen_ai_server_request_duration_seconds_count{{{sel}}}"
    q = lambda quantile, metric: (  # noqa: E731
        f"histogram_quantile({quantile}, sum by (gen_ai_request_model, le) (rate({metric}_bucket{{{sel}}}[5m])))",
        f"{{{{gen_ai_request_model}}}} p{int(quantile * 100)}")
    listeners = f"{{{GATEWAY_LISTENERS}}}"
    panels = [
        # Prompt (input) and output tokens: cached and reasoning tokens are parts of them.
        ("Tokens per second by team and model", "short",
         (f"sum by (team_id, gen_ai_request_model, gen_ai_token_type) (rate({tokens}[5m]))",
          "{{team_id}} {{gen_ai_request_model}} {{gen_ai_token_type}}")),
        ("Requests per second by team and model", "reqps",
         (f"sum by (team_id, gen_ai_request_model) (rate({requests}[5m]))",
          "{{team_id}} {{gen_ai_request_model}}"),
         (f'sum by (team_id, gen_ai_request_model) (rate(gen_ai_server_request_duration_seconds_count{{{sel}, error_type!=""}}[5m]))',
          "{{team_id}} {{gen_ai_request_model}} failed")),
        ("Time to first token (streams)", "s", q(0.5, "gen_ai_server_time_to_first_token_seconds"),
         q(0.95, "gen_ai_server_time_to_first_token_seconds")),
        ("Time per output token (streams)", "s", q(0.5, "gen_ai_server_time_per_output_token_seconds"),
         q(0.95, "gen_ai_server_time_per_output_token_seconds")),
        ("Request duration", "s", q(0.5, "gen_ai_server_request_duration_seconds"),
         q(0.95, "gen_ai_server_request_duration_seconds")),
        ("Responses per second by class", "reqps",
         (f"sum by (envoy_response_code_class) (rate({GATEWAY_RESPONSES}{listeners}[5m]))",
          "{{envoy_response_code_class}}xx")),
        ("Refused per second (401, 403, 429)", "reqps",
         (f"sum(rate({GATEWAY_UNAUTHORIZED}{listeners}[5m]))", "401 no or unknown key"),
         (f"sum(rate({GATEWAY_FORBIDDEN}{listeners}[5m]))", "403 model not allowed"),
         (f"sum by (envoy_cluster_name) (rate({GATEWAY_OVER_LIMIT}[5m]))", "429 over quota {{envoy_cluster_name}}")),
        # 5xx to clients (every cause, the gateway's own included), and those of each route's
        # cluster (the engines', the router's timeouts and resets).
        ("Server errors per second", "reqps",
         (f'sum(rate({GATEWAY_RESPONSES}{{{GATEWAY_LISTENERS}, envoy_response_code_class="5"}}[5m]))', "5xx to clients"),
         ('sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}[5m]))',
          "5xx {{envoy_cluster_name}}")),
    ]
    quotas = team_quotas(gateway)
    if quotas:
        team = '{team_id=~"$team"}'
        spent = {"minute": f"avg_over_time({GATEWAY_SPENT['minute']}{team}[5m])",
                 "day": f"{GATEWAY_SPENT['day']}{team}"}
        panels.append(("Share of the quota spent", "percentunit",
                       *((f"{spent[window]} / on (team_id) {GATEWAY_QUOTA}{window}",
                          f"{{{{team_id}}}} per {window}") for window in quotas)))
    variable = lambda name, label, query: {  # noqa: E731
        "name": name, "type": "query", "label": label, "multi": True, "includeAll": True,
        "datasource": {"type": "prometheus", "uid": "${datasource}"}, "query": query, "refresh": 2}
    return {
        "uid": "llmserve-gateway", "title": "LLM gateway", "schemaVersion": 39, "version": 1,
        "editable": False, "tags": ["llmserve", "gateway"], "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            variable("team", "Team", "label_values(gen_ai_server_request_duration_seconds_count, team_id)"),
            variable("model", "Model", "label_values(gen_ai_server_request_duration_seconds_count, gen_ai_request_model)"),
        ]},
        "panels": [_panel(i, title, unit, *targets) for i, (title, unit, *targets) in enumerate(panels)],
    }


def all_dashboards(namespace: str, gateway: Optional[GatewayConfig] = None) -> dict[str, dict]:
    """Every dashboard by its file in the ConfigMap; with `gateway` (the stack's `gateway`
    section, None without one) also the gateway's."""
    boards = {DASHBOARD_FILE: dashboard(namespace), VLLM_DASHBOARD_FILE: vllm_dashboard(namespace)}
    if gateway is not None:
        boards[GATEWAY_DASHBOARD_FILE] = gateway_dashboard(gateway)
    return boards
