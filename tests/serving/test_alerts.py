"""The alerts, as rendered, checked and unit-tested by promtool with synthetic series: each fires
when it should and stays quiet when it should. And the dashboard's signals."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from components.config import AlertThresholds
from components.serving import alerts, dashboards

from ..conftest import ROOT, TGI, stack_settings
from .conftest import rendered_rules as _rules

TGI_METRICS = {m for kind in TGI["metrics"].values() for m in kind}
HISTOGRAMS = set(TGI["metrics"]["histograms"])
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not __import__("os").environ.get("CI"),
    reason="promtool (Debian package prometheus) is not installed; .ci/run installs it")

M = 'namespace="llm", model="qwen-7b"'
IDLE_HOURS = AlertThresholds.model_validate(stack_settings("dev")["monitoring"].get("alerts", {})).gpu_idle_hours
IDLE = IDLE_HOURS * 60  # minutes


def _expand(text: str, labels: dict) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)


def _expected(rules: dict, name: str, labels: dict) -> dict:
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)
    return {"exp_labels": {**labels, **rule["labels"]},
            "exp_annotations": {k: _expand(v, labels) for k, v in rule["annotations"].items()}}


def _histogram(metric: str, slow_bucket: str, series_labels: str) -> list[dict]:
    """Requests that all fall in the bucket above `slow_bucket`, or below it."""
    return [
        {"series": f'{metric}_bucket{{{series_labels}, le="{slow_bucket}"}}', "values": "0+0x40"},
        {"series": f'{metric}_bucket{{{series_labels}, le="100"}}', "values": "0+10x40"},
        {"series": f'{metric}_bucket{{{series_labels}, le="+Inf"}}', "values": "0+10x40"},
    ]


def _fast(metric: str, fast_bucket: str, series_labels: str) -> list[dict]:
    return [
        {"series": f'{metric}_bucket{{{series_labels}, le="{fast_bucket}"}}', "values": "0+10x40"},
        {"series": f'{metric}_bucket{{{series_labels}, le="100"}}', "values": "0+10x40"},
        {"series": f'{metric}_bucket{{{series_labels}, le="+Inf"}}', "values": "0+10x40"},
    ]


CASES = {  # alert: (firing series, quiet series, labels of the alert, eval time)
    "TGIHighRequestLatency": (_histogram("tgi_request_duration", "1", M), _fast("tgi_request_duration", "1", M),
                              {"namespace": "llm", "model": "qwen-7b"}, "20m"),
    "TGIQueueBacklog": ([{"series": f"tgi_queue_size{{{M}, pod=\"p1\"}}", "values": "120x40"}],
                        [{"series": f"tgi_queue_size{{{M}, pod=\"p1\"}}", "values": "5x40"}],
                        {"namespace": "llm", "model": "qwen-7b"}, "20m"),
    "TGIHighQueueTime": (_histogram("tgi_request_queue_duration", "1", M), _fast("tgi_request_queue_duration", "1", M),
                         {"namespace": "llm", "model": "qwen-7b"}, "20m"),
    # 20 of 100 ended requests failed in the service. Quiet: client mistakes (validation) are
    # not the server failing, and the OpenAI routes' double count (tgi_request_count) is not used.
    "TGIRequestFailures": ([{"series": f"tgi_request_success{{{M}}}", "values": "0+80x40"},
                            {"series": f"tgi_request_count{{{M}}}", "values": "0+200x40"},
                            {"series": f'tgi_request_failure{{{M}, err="generation"}}', "values": "0+20x40"}],
                           [{"series": f"tgi_request_success{{{M}}}", "values": "0+100x40"},
                            {"series": f"tgi_request_count{{{M}}}", "values": "0+4000x40"},
                            {"series": f'tgi_request_failure{{{M}, err="generation"}}', "values": "0+4x40"},
                            {"series": f'tgi_request_failure{{{M}, err="validation"}}', "values": "0+50x40"}],
                           {"namespace": "llm", "model": "qwen-7b"}, "20m"),
    "TGISlowTokenGeneration": (_histogram("tgi_request_mean_time_per_token_duration", "0.05", M),
                               _fast("tgi_request_mean_time_per_token_duration", "0.05", M),
                               {"namespace": "llm", "model": "qwen-7b"}, "30m"),
    "ModelNoReadyReplicas": ([{"series": 'kube_deployment_status_replicas_available{namespace="llm", deployment="qwen-7b-blue"}', "values": "0x40"},
                            {"series": 'kube_deployment_spec_replicas{namespace="llm", deployment="qwen-7b-blue"}', "values": "1x40"}],
                           [{"series": 'kube_deployment_status_replicas_available{namespace="llm", deployment="qwen-7b-blue"}', "values": "1x40"},
                            {"series": 'kube_deployment_spec_replicas{namespace="llm", deployment="qwen-7b-blue"}', "values": "1x40"}],
                           {"namespace": "llm", "deployment": "qwen-7b-blue"}, "20m"),
    "GPUPodPending": ([{"series": 'kube_pod_status_phase{namespace="llm", pod="qwen-7b-blue-1", phase="Pending"}', "values": "1x40"},
                       {"series": 'kube_pod_container_resource_requests{namespace="llm", pod="qwen-7b-blue-1", container="tgi", resource="nvidia_com_gpu"}', "values": "1x40"}],
                      [{"series": 'kube_pod_status_phase{namespace="llm", pod="qwen-7b-blue-1", phase="Pending"}', "values": "0x40"},
                       {"series": 'kube_pod_container_resource_requests{namespace="llm", pod="qwen-7b-blue-1", container="tgi", resource="nvidia_com_gpu"}', "values": "1x40"},
                       {"series": 'kube_pod_status_phase{namespace="llm", pod="qwen-7b-download-1", phase="Pending"}', "values": "1x40"}],
                      {"namespace": "llm", "pod": "qwen-7b-blue-1"}, "30m"),
    "ModelDownloadFailed": ([{"series": 'kube_job_status_failed{namespace="llm", job_name="qwen-7b-download-0123456789"}', "values": "1x10"}],
                            [{"series": 'kube_job_status_failed{namespace="llm", job_name="qwen-7b-download-0123456789"}', "values": "0x10"}],
                            {"namespace": "llm", "job_name": "qwen-7b-download-0123456789"}, "5m"),
    "ServingTargetDown": ([{"series": 'up{namespace="llm", pod="qwen-7b-blue-1", job="llm/qwen-7b"}', "values": "0x30"}],
                          [{"series": 'up{namespace="llm", pod="qwen-7b-blue-1", job="llm/qwen-7b"}', "values": "1x30"}],
                          {"namespace": "llm", "pod": "qwen-7b-blue-1", "job": "llm/qwen-7b"}, "20m"),
    "GPUSaturated": ([{"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-1", gpu="0"}', "values": "100x40"}],
                     [{"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-1", gpu="0"}', "values": "60x40"}],
                     {"Hostname": "ip-10-0-1-1", "gpu": "0"}, "35m"),
    # A new hardware XID pages; the same code still there an hour later does not.
    "GPUXidHardwareError": ([{"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-1", gpu="0"}', "values": "0x5 79x55"}],
                            [{"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-1", gpu="0"}', "values": "79x60"},
                             {"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-2", gpu="0"}', "values": "0x5 13x55"}],
                            {"Hostname": "ip-10-0-1-1", "gpu": "0"}, "10m"),
    # A new application XID (13) warns; a hardware one is the other alert's.
    "GPUXidError": ([{"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-1", gpu="0"}', "values": "0x5 13x55"}],
                    [{"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-1", gpu="0"}', "values": "0x5 79x55"},
                     {"series": 'DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-0-1-2", gpu="0"}', "values": "0x60"}],
                    {"Hostname": "ip-10-0-1-1", "gpu": "0"}, "10m"),
    # Idle for the whole window; quiet: busy once in it, a node that came up within it, a node
    # that went away.
    "GPUIdle": ([{"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-1", gpu="0"}', "values": f"0x{IDLE + 20}"}],
                [{"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-1", gpu="0"}', "values": f"0x{IDLE - 60} 35 0x70"},
                 {"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-2", gpu="0"}', "values": f"_x30 0x{IDLE}"},
                 {"series": 'DCGM_FI_DEV_GPU_UTIL{Hostname="ip-10-0-1-3", gpu="0"}', "values": f"0x{IDLE - 10}"}],
                {"Hostname": "ip-10-0-1-1", "gpu": "0"}, f"{IDLE + 10}m"),
}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is required (apt-get install prometheus)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_rules_pass_promtool_check(rules_file):
    rules, path = rules_file
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{sum(len(g['rules']) for g in rules['groups'])} rules found" in result.stdout


def _alerts(rules: dict) -> list[dict]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_case_severity_summary_and_runbook(dev_run):
    rules = _alerts(_rules(dev_run))
    # The SLOs' burn-rate alerts have theirs in test_slo.py, vLLM's alerts in test_vllm_alerts.py,
    # the gateway's in test_gateway_monitoring.py.
    assert {r["alert"] for r in rules if not r["alert"].endswith("BudgetBurn")
            and not r["alert"].startswith(("VLLM", "Gateway"))} == set(CASES)
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["runbook_url"].startswith(
            "https://github.com/acme/llmserve/blob/main/docs/runbook.md#")


@needs_promtool
@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_when_it_should_and_stays_quiet_otherwise(rules_file, tmp_path, alert):
    fires_and_stays_quiet(rules_file, tmp_path, alert, CASES[alert])


def fires_and_stays_quiet(rules_file, tmp_path, alert: str, case: tuple) -> None:
    """promtool: the alert fires on the firing series, with its labels, and not on the quiet ones."""
    rules, path = rules_file
    firing, quiet, labels, at = case
    tests = {"rule_files": [str(path)], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": firing, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": [_expected(rules, alert, labels)]}]},
        {"interval": "1m", "input_series": quiet, "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": []}]},
    ]}
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def _tgi_metrics(text: str) -> set[str]:
    """TGI metric names used in text; a histogram's _bucket/_sum/_count series count as it."""
    names = set()
    for m in re.findall(r"(?<![\w:])tgi_[a-z_]+", text):  # not the recording rules' model:tgi_...
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        names.add(base if base in HISTOGRAMS else m)
    return names


def test_only_real_tgi_metrics_are_used(dev_run):
    used = _tgi_metrics(yaml.safe_dump(_rules(dev_run))) | _tgi_metrics(str(dashboards.dashboard("llm")))
    assert used >= {"tgi_request_duration", "tgi_queue_size", "tgi_request_count", "tgi_request_failure",
                    "tgi_request_mean_time_per_token_duration", "tgi_batch_current_size",
                    "tgi_request_generated_tokens"}
    for metric in used:
        assert metric in TGI_METRICS, metric
        assert not metric.endswith(("_seconds", "_total"))


def test_dashboard_shows_what_on_call_needs(dev_run):
    cm = next(r for r in dev_run.of_type("kubernetes:core/v1:ConfigMap") if r.inputs["metadata"]["name"] == "llmserve-dashboard")
    assert cm.inputs["metadata"]["labels"] == {"grafana_dashboard": "1"}
    import json
    board = json.loads(cm.inputs["data"]["llmserve-tgi.json"])
    titles = {p["title"] for p in board["panels"]}
    assert titles == {"Requests per second", "Request latency", "Queue size", "Batch size",
                      "Generated tokens per second", "Time per output token", "GPU utilization",
                      "GPU memory used", "SLO: bad requests (1h)"}
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert "DCGM_FI_DEV_GPU_UTIL" in exprs and "DCGM_FI_DEV_FB_USED" in exprs


def test_thresholds_come_from_config():
    thresholds = AlertThresholds.model_validate({"p95LatencySeconds": 12, "queueSize": 7})
    groups = alerts.rule_groups(thresholds, "llm", "https://x/runbook.md")
    exprs = {r.get("alert"): r["expr"] for g in groups for r in g["rules"]}
    assert exprs["TGIHighRequestLatency"].endswith("> 12.0")
    assert exprs["TGIQueueBacklog"].endswith("> 7")
    assert groups[0]["rules"][0]["annotations"]["runbook_url"] == "https://x/runbook.md#tgihighrequestlatency"


def test_every_alert_links_to_a_section_of_the_runbook(dev_run):
    """The anchor each page opens exists in docs/runbook.md (GitHub's anchors: the heading,
    lowercased)."""
    anchors = {line[3:].strip().lower() for line in (ROOT / "docs" / "runbook.md").read_text().splitlines()
               if line.startswith("## ")}
    for rule in _alerts(_rules(dev_run)):
        assert rule["annotations"]["runbook_url"].rsplit("#", 1)[1] in anchors, rule["alert"]
