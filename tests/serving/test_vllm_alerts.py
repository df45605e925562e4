"""vLLM's alerts, SLOs and dashboard: each alert promtool-tested with synthetic series that make it
fire and stay quiet, the burn-rate alerts with traffic of a set bad share, and every metric one
that vLLM v0.33.0 exports, under the name it exports."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components.config import AlertThresholds
from components.config.monitoring import SloConfig
from components.serving import alerts, dashboards

from ..conftest import ROOT
from .test_alerts import _alerts, _rules, fires_and_stays_quiet, needs_promtool
from .test_slo import PAGE, PAGES, PER_MINUTE, TICKET, WARNS, _budget, _check, _phases, _thresholds

# vLLM v0.33.0's facts as data (tests/data/vllm.yaml, read in vllm-project/vllm@v0.33.0:
# vllm/v1/metrics/loggers.py and buckets.py): the metrics as /metrics writes them (counters with
# `_total`), the ones gone, and each histogram's `le` strings.
VLLM = yaml.safe_load((ROOT / "tests" / "data" / "vllm.yaml").read_text())
METRICS = VLLM["metrics"]
COUNTERS = {*METRICS["counters"], *METRICS["counters_other_labels"]}
HISTOGRAMS = set(METRICS["histograms"])
REAL = {*METRICS["gauges"], *COUNTERS, *HISTOGRAMS}
GONE = set(METRICS["gone"])
TTFT_LE = VLLM["histogram_buckets_le"]["time_to_first_token"]

URL = "https://github.com/acme/llmserve/blob/main/docs/runbook.md"
# The PodMonitor's labels and vLLM's own (`model_name` is --served-model-name, `engine` the core).
M = 'namespace="llm", model="qwen-7b", pod="qwen-7b-blue-1", slot="blue", model_name="qwen-7b"'
E0, E1 = f'{M}, engine="0"', f'{M}, engine="1"'
MODEL = {"namespace": "llm", "model": "qwen-7b"}
AVAILABILITY, FIRST_TOKEN = "VLLMAvailabilityBudgetBurn", "VLLMFirstTokenBudgetBurn"


def _hist(metric: str, counts: dict[str, int], labels: str = E0, steps: int = 40) -> list[dict]:
    """A histogram whose requests per minute fall at most at each bound (cumulative as exported)."""
    series, total = [], 0
    for le, n in counts.items():
        total += n
        series.append({"series": f'{metric}_bucket{{{labels}, le="{le}"}}', "values": f"0+{total}x{steps}"})
    series.append({"series": f'{metric}_bucket{{{labels}, le="+Inf"}}', "values": f"0+{total}x{steps}"})
    series.append({"series": f"{metric}_count{{{labels}}}", "values": f"0+{total}x{steps}"})
    return series


def _ended(labels: str = E0, **per_minute: int) -> list[dict]:
    """vllm:request_success_total by finished_reason (every reason exported from the start)."""
    return [{"series": f'vllm:request_success_total{{{labels}, finished_reason="{r}"}}',
             "values": f"0+{per_minute.get(r, 0)}x40"}
            for r in ("stop", "length", "abort", "error", "repetition")]


def _rejected(per_minute: int) -> list[dict]:
    # Labelled model_name and reason only: no engine (loggers.py, vllm:admission_rejections).
    return [{"series": f'vllm:admission_rejections_total{{{M}, reason="{r}"}}', "values": f"0+{n}x40"}
            for r, n in (("max_num_queued_reqs", per_minute), ("max_num_queued_tokens", 0))]


OTHER = 'namespace="llm", model="llama-8b", pod="llama-8b-blue-1", slot="blue", model_name="llama-8b", engine="0"'
CASES = {  # alert: (firing series, quiet series, labels of the alert, eval time)
    "VLLMHighRequestLatency": (_hist("vllm:e2e_request_latency_seconds", {"30.0": 0, "40.0": 10}),
                               _hist("vllm:e2e_request_latency_seconds", {"15.0": 10, "30.0": 0}),
                               MODEL, "20m"),
    # Two engine cores of one pod, 30 waiting each: 60 in the replica's queues.
    "VLLMQueueBacklog": ([{"series": f"vllm:num_requests_waiting{{{E0}}}", "values": "30x40"},
                          {"series": f"vllm:num_requests_waiting{{{E1}}}", "values": "30x40"}],
                         [{"series": f"vllm:num_requests_waiting{{{E0}}}", "values": "20x40"},
                          {"series": f"vllm:num_requests_waiting{{{E1}}}", "values": "20x40"},
                          {"series": f"vllm:num_requests_running{{{E0}}}", "values": "256x40"}],
                         MODEL, "20m"),
    "VLLMHighTimeToFirstToken": (_hist("vllm:time_to_first_token_seconds", {"5.0": 0, "7.5": 10}),
                                 _hist("vllm:time_to_first_token_seconds", {"1.0": 10, "2.5": 0}),
                                 MODEL, "20m"),
    # 20 of 100 ended requests failed: 10 with `error`, 10 refused by the queue limit; the
    # client's aborts (1000) neither fail nor dilute. Quiet: 4% errors, and aborts are no failures.
    "VLLMRequestFailures": ([*_ended(stop=70, length=10, error=10, abort=1000), *_rejected(10)],
                            [*_ended(stop=90, length=6, error=4, abort=500), *_rejected(0)],
                            MODEL, "20m"),
    "VLLMSlowTokenGeneration": (_hist("vllm:inter_token_latency_seconds", {"0.2": 0, "0.3": 100}),
                                _hist("vllm:inter_token_latency_seconds", {"0.05": 100, "0.2": 0}),
                                MODEL, "30m"),
    # Quiet: a full cache without preemptions (vLLM fills it by design), and preemptions in a
    # model whose cache is not full (another cause: the alert is about memory).
    "VLLMKVCacheExhausted": ([{"series": f"vllm:kv_cache_usage_perc{{{E0}}}", "values": "0.97x40"},
                              {"series": f"vllm:num_preemptions_total{{{E0}}}", "values": "0+5x40"}],
                             [{"series": f"vllm:kv_cache_usage_perc{{{E0}}}", "values": "0.97x40"},
                              {"series": f"vllm:num_preemptions_total{{{E0}}}", "values": "7x40"},
                              {"series": f"vllm:kv_cache_usage_perc{{{OTHER}}}", "values": "0.5x40"},
                              {"series": f"vllm:num_preemptions_total{{{OTHER}}}", "values": "0+5x40"}],
                             MODEL, "30m"),
}


def _vllm_alerts(rules: dict) -> list[dict]:
    return [r for r in _alerts(rules) if r["alert"].startswith("VLLM")]


def test_every_vllm_alert_has_a_case_severity_summary_and_runbook(dev_run):
    rules = _rules(dev_run)
    groups = {g["name"]: g["rules"] for g in rules["groups"]}
    assert {"tgi", "gpu", "tgi-slo-ratios", "tgi-slo", "vllm", "vllm-slo-ratios", "vllm-slo", "gateway"} == set(groups)
    found = _vllm_alerts(rules)
    assert {r["alert"] for r in found if not r["alert"].endswith("BudgetBurn")} == set(CASES)
    assert {r["alert"] for r in found if r["alert"].endswith("BudgetBurn")} == {AVAILABILITY, FIRST_TOKEN}
    for r in found:
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]
        assert r["annotations"]["runbook_url"] == f"{URL}#{r['alert'].lower()}"


@needs_promtool
@pytest.mark.parametrize("alert", sorted(CASES))
def test_vllm_alert_fires_when_it_should_and_stays_quiet_otherwise(rules_file, tmp_path, alert):
    fires_and_stays_quiet(rules_file, tmp_path, alert, CASES[alert])


def test_the_synthetic_histograms_use_vllms_bounds():
    """The cases' buckets are vLLM's own, written as it writes them."""
    family = {name: VLLM["histogram_buckets_le"].get(f) for name, f in METRICS["histograms"].items()}
    for firing, quiet, _, _ in CASES.values():
        for s in firing + quiet:
            m = re.fullmatch(r'(vllm:\w+)_bucket\{.*le="([^"]+)"\}', s["series"])
            if m:
                assert m[2] == "+Inf" or m[2] in family[m[1]], s["series"]


def test_thresholds_come_from_config():
    t = AlertThresholds.model_validate({"p95LatencySeconds": 12, "queueSize": 7, "failureRatio": 0.02,
                                        "timePerTokenSeconds": 0.1, "p95QueueSeconds": 3})
    exprs = {r.get("alert"): r["expr"] for g in alerts.rule_groups(t, "llm", URL) for r in g["rules"]}
    assert exprs["VLLMHighRequestLatency"].endswith("> 12.0")
    assert exprs["VLLMQueueBacklog"].endswith("> 7")
    assert exprs["VLLMRequestFailures"].endswith("> 0.02")
    assert exprs["VLLMSlowTokenGeneration"].endswith("> 0.1")
    assert exprs["VLLMHighTimeToFirstToken"].endswith("> 3.0")


def _vllm_metrics(text: str) -> set[str]:
    """vLLM metric names used in text; a histogram's _bucket/_sum/_count series count as it."""
    names = set()
    for m in re.findall(r"(?<![\w:])vllm:[a-z0-9_]+", text):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        names.add(base if base in HISTOGRAMS else m)
    return names


def test_only_real_vllm_metrics_are_used(dev_run):
    used = _vllm_metrics(yaml.safe_dump(_rules(dev_run))) | _vllm_metrics(json.dumps(dashboards.vllm_dashboard("llm")))
    assert used >= {"vllm:e2e_request_latency_seconds", "vllm:num_requests_waiting", "vllm:num_requests_running",
                    "vllm:request_success_total", "vllm:admission_rejections_total",
                    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                    "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total", "vllm:prompt_tokens_total",
                    "vllm:generation_tokens_total"}
    assert not used & GONE
    for metric in used:
        assert metric in REAL, metric
        if metric in COUNTERS:
            assert metric.endswith("_total")
    # TGI's names are not vLLM's: no rule of the vllm groups reads a tgi_ series.
    vllm_groups = [g for g in _rules(dev_run)["groups"] if g["name"].startswith("vllm")]
    assert "tgi_" not in yaml.safe_dump(vllm_groups)


def test_first_token_bucket_is_written_as_vllm_exports_it(dev_run):
    assert list(alerts.VLLM_TTFT_BUCKETS) == VLLM["histogram_buckets"]["time_to_first_token"]
    assert [alerts.vllm_le(b) for b in alerts.VLLM_TTFT_BUCKETS] == TTFT_LE
    records = {r["record"]: r["expr"] for g in _rules(dev_run)["groups"] for r in g["rules"] if "record" in r}
    for w in alerts.WINDOWS:
        assert f'vllm:time_to_first_token_seconds_bucket{{le="2.5"}}[{w}]' in records[f"{alerts.VLLM_SLOW_FIRST_TOKEN}{w}"]


# The SLOs, with test_slo.py's promtool harness (_check) and the SRE workbook's burn rates.
def _traffic(step_minutes: int, *phases: tuple[float, int], rejected: bool = False) -> list[dict]:
    """Requests that end: a share failing by the service's fault (`error`, or refused by the queue
    limit when `rejected`), the rest answered (`stop`); as many again aborted by their clients."""
    n = PER_MINUTE * step_minutes
    steps = sum(k for _, k in phases)
    bad = _phases(n, *phases)
    return [
        {"series": f'vllm:request_success_total{{{E0}, finished_reason="stop"}}', "values": _phases(n, *((1 - s, k) for s, k in phases))},
        {"series": f'vllm:request_success_total{{{E0}, finished_reason="error"}}', "values": _phases(n, (0, steps)) if rejected else bad},
        {"series": f'vllm:request_success_total{{{E0}, finished_reason="abort"}}', "values": _phases(n, *((1, k) for _, k in phases))},
        {"series": f'vllm:admission_rejections_total{{{M}, reason="max_num_queued_reqs"}}', "values": bad if rejected else _phases(n, (0, steps))},
    ]


def _first_tokens(step_minutes: int, *phases: tuple[float, int]) -> list[dict]:
    """Requests whose first token comes after the objective (in the bucket above it) by share, the
    others within it; none in the bucket below, so that only the objective's bucket counts."""
    n = PER_MINUTE * step_minutes
    objective = TTFT_LE.index(alerts.vllm_le(alerts.VLLM_FIRST_TOKEN_SECONDS))
    metric = "vllm:time_to_first_token_seconds"
    steps = sum(k for _, k in phases)
    return [
        {"series": f'{metric}_bucket{{{E0}, le="{TTFT_LE[objective - 1]}"}}', "values": _phases(n, (0, steps))},
        {"series": f'{metric}_bucket{{{E0}, le="{TTFT_LE[objective]}"}}', "values": _phases(n, *((1 - s, k) for s, k in phases))},
        {"series": f'{metric}_bucket{{{E0}, le="{TTFT_LE[objective + 1]}"}}', "values": _phases(n, *((1, k) for _, k in phases))},
        {"series": f'{metric}_bucket{{{E0}, le="+Inf"}}', "values": _phases(n, *((1, k) for _, k in phases))},
        {"series": f"{metric}_count{{{E0}}}", "values": _phases(n, *((1, k) for _, k in phases))},
    ]


SLOS = {"default": SloConfig(), "strict": SloConfig.model_validate({"availabilityPercent": 99.9,
                                                                   "firstTokenPercent": 97})}


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
@pytest.mark.parametrize("rejected", [False, True], ids=["errors", "rejections"])
def test_failures_at_twice_the_fastest_burn_page(tmp_path, slo, rejected):
    share = min(1, 2 * PAGE["1h", "5m"] * _budget(slo.availability_percent))
    _check(tmp_path, slo, _traffic(1, (share, 70), rejected=rejected), 1, "65m", AVAILABILITY, PAGES)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_failures_below_the_fastest_burn_warn_without_paging(tmp_path, slo):
    share = 0.9 * PAGE["1h", "5m"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(1, (0, 300), (share, 70)), 1, "365m", AVAILABILITY, WARNS)


@needs_promtool
def test_a_day_of_slow_burn_warns_without_paging(tmp_path):
    slo = SLOS["default"]
    share = 1.5 * TICKET["1d", "2h"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(10, (share, 160)), 10, "26h", AVAILABILITY, WARNS)


@needs_promtool
def test_three_days_within_the_budget_stay_quiet(tmp_path):
    slo = SLOS["default"]
    share = 0.8 * TICKET["3d", "6h"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(10, (share, 440)), 10, "3d", AVAILABILITY, [])


@needs_promtool
def test_client_aborts_alone_stay_quiet(tmp_path):
    # No failure at all, every other request aborted by its client: a ratio of 0, not none.
    _check(tmp_path, SLOS["default"], _traffic(1, (0, 70)), 1, "65m", AVAILABILITY, [])


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_late_first_tokens_page_at_the_fastest_burn(tmp_path, slo):
    share = min(1, 2 * PAGE["1h", "5m"] * _budget(slo.first_token_percent))
    _check(tmp_path, slo, _first_tokens(1, (share, 70)), 1, "65m", FIRST_TOKEN, PAGES)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_first_tokens_within_the_objective_stay_quiet(tmp_path, slo):
    share = 0.5 * _budget(slo.first_token_percent)
    _check(tmp_path, slo, _first_tokens(1, (share, 70)), 1, "65m", FIRST_TOKEN, [])


@needs_promtool
def test_a_day_of_late_first_tokens_warns_without_paging(tmp_path):
    slo = SLOS["strict"]
    share = 1.5 * TICKET["1d", "2h"] * _budget(slo.first_token_percent)
    _check(tmp_path, slo, _first_tokens(10, (share, 160)), 10, "26h", FIRST_TOKEN, WARNS)


def test_the_vllm_burn_alerts_page_and_warn_at_the_workbook_rates(dev_run):
    groups = {g["name"]: g["rules"] for g in _rules(dev_run)["groups"]}
    records = {r["record"] for r in groups["vllm-slo-ratios"]}
    burns = {(r["alert"], r["labels"]["severity"]): r for r in groups["vllm-slo"]}
    assert set(burns) == {(a, s) for a in (AVAILABILITY, FIRST_TOKEN) for s in PAGES}
    slo = SloConfig()  # dev sets no `slo`
    for name, percent, record in ((AVAILABILITY, slo.availability_percent, alerts.VLLM_ERRORS),
                                  (FIRST_TOKEN, slo.first_token_percent, alerts.VLLM_SLOW_FIRST_TOKEN)):
        for severity, pairs in (("critical", PAGE), ("warning", TICKET)):
            thresholds = _thresholds(burns[name, severity]["expr"])
            assert len(thresholds) == 2 * len(pairs)
            for (long, short), rate in pairs.items():
                assert {record + long, record + short} <= records
                assert thresholds[long] == thresholds[short] == [pytest.approx(rate * _budget(percent))]


def test_the_vllm_dashboard_shows_what_on_call_needs(dev_run):
    cm = next(r for r in dev_run.of_type("kubernetes:core/v1:ConfigMap")
              if r.inputs["metadata"]["name"] == "llmserve-dashboard")
    assert set(cm.inputs["data"]) == {"llmserve-tgi.json", "llmserve-vllm.json", "llmserve-gateway.json"}
    board = json.loads(cm.inputs["data"]["llmserve-vllm.json"])
    assert board["uid"] == "llmserve-vllm" != json.loads(cm.inputs["data"]["llmserve-tgi.json"])["uid"]
    titles = [p["title"] for p in board["panels"]]
    assert set(titles) == {"Requests per second", "Request latency", "Time to first token",
                           "Inter-token latency", "Requests running and waiting", "KV cache usage",
                           "Tokens per second", "Preemptions per second", "GPU utilization",
                           "GPU memory used", "SLO: bad requests (1h)"}
    assert len({(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]}) == len(titles)
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert "DCGM_FI_DEV_GPU_UTIL" in exprs and "DCGM_FI_DEV_FB_USED" in exprs
    assert f"{alerts.VLLM_ERRORS}1h" in exprs and f"{alerts.VLLM_SLOW_FIRST_TOKEN}1h" in exprs
    assert "vllm:num_requests_running" in board["templating"]["list"][1]["query"]
