"""The Grafana dashboard of the models and their GPUs (same metrics as components/serving/alerts.py).
Pure functions, no Pulumi."""

from __future__ import annotations

from .alerts import ERRORS, SLOW_QUEUE

DASHBOARD_FILE = "llmserve-tgi.json"  # its key in the dashboards ConfigMap


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
        ("GPU utilization", "percent", ("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}} GPU {{gpu}}")),
        ("GPU memory used", "percentunit",
         ("avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))",
          "{{Hostname}} GPU {{gpu}}")),
        # The SLOs' recording rules (alerts.slo_groups): the share of requests over the last hour
        # that failed by the service's fault, or waited in the queue beyond the objective.
        ("SLO: bad requests (1h)", "percentunit", (f"{ERRORS}1h{{{sel}}}", "{{model}} failed"),
         (f"{SLOW_QUEUE}1h{{{sel}}}", "{{model}} queued too long")),
    ]
    return {
        "uid": "llmserve-tgi", "title": "LLM serving (TGI)", "schemaVersion": 39, "version": 1,
        "editable": False, "tags": ["llmserve", "tgi"], "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "model", "type": "query", "label": "Model", "multi": True, "includeAll": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": f'label_values(tgi_request_count{{namespace="{namespace}"}}, model)',
             "refresh": 2},
        ]},
        "panels": [_panel(i, title, unit, *targets) for i, (title, unit, *targets) in enumerate(panels)],
    }
