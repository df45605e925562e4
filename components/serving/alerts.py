"""Alert rules for TGI, vLLM, the GPUs and the gateway, as PrometheusRule groups. Pure functions,
no Pulumi.

Metric names: TGI's as exported, without `_seconds` or `_total` suffixes (docs/tgi.md);
vLLM's as its `/metrics` writes them, with `:` in the name and `_total` on counters
(prometheus_client; vllm-project/vllm@v0.33.0:vllm/v1/metrics/loggers.py);
DCGM exporter's DCGM_FI_DEV_GPU_UTIL (percent), DCGM_FI_DEV_FB_USED / _FB_FREE (MiB),
DCGM_FI_DEV_XID_ERRORS (the last XID error code); kube-state-metrics'
kube_deployment_status_replicas_available and kube_deployment_spec_replicas. The PodMonitor of
each model puts `namespace`, `pod`, `model` and `slot` on TGI's and vLLM's series.

The SLOs (`slo_groups`) follow the SRE workbook's multiwindow, multi-burn-rate alerts
(https://sre.google/workbook/alerting-on-slos/): error ratios recorded per model at each window,
then a page when two windows both burn the 30-day budget fast, a warning when they burn it slowly.

The gateway's group (in stacks with a `gateway`) is built by gateway_alerts.py.
"""

from __future__ import annotations

from typing import Optional

from ..config import AlertThresholds
from ..config.gateway import GatewayConfig
from ..config.monitoring import BURN_RATES, SLO_DAYS, SloConfig, le_label
from .gateway_alerts import gateway_rules
from .rule import alert as _alert

PER_MODEL = "namespace, model"
# XID codes of failing hardware (NVIDIA's XID catalog, https://docs.nvidia.com/deploy/xid-errors/):
# 48 double-bit ECC, 63/64 row remapping, 74 NVLink, 79 fallen off the bus, 92 high single-bit
# ECC rate, 94/95 contained/uncontained ECC, 119/120 GSP timeouts.
HARDWARE_XIDS = (48, 63, 64, 74, 79, 92, 94, 95, 119, 120)
_LAST_XID = "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS)"
NEW_XID = f"({_LAST_XID} > 0 and max by (Hostname, gpu) (changes(DCGM_FI_DEV_XID_ERRORS[15m])) > 0)"
HARDWARE_XID_MATCH = " or ".join(f"{_LAST_XID} == {x}" for x in HARDWARE_XIDS)
# tgi_request_failure's `err` values that are the service's fault from the user's view (TGI v3.3.7:
# router/src/infer/mod.rs, router/src/server.rs, backends/v3/src/backend.rs): `overloaded` (every
# MAX_CONCURRENT_REQUESTS permit taken), `generation` (a shard failed), `incomplete` (the answer
# ended before its last token). Not counted: `validation` and `template` (the request or its
# messages are wrong), `dropped` (the client went away).
SERVICE_FAILURES = ("overloaded", "generation", "incomplete")
ERRORS = "model:tgi_request_errors:ratio_rate"  # + window
SLOW_QUEUE = "model:tgi_request_queue_slow:ratio_rate"


def _minutes(window: str) -> int:
    return int(window[:-1]) * {"m": 1, "h": 60, "d": 1440}[window[-1]]


WINDOWS = sorted({w for _, long, short, _ in BURN_RATES for w in (long, short)}, key=_minutes)


def rule_groups(t: AlertThresholds, namespace: str, runbook_url: str,
                slo: SloConfig = SloConfig(), gateway: Optional[GatewayConfig] = None) -> list[dict]:
    """The PrometheusRule's groups: serving health per model, the GPUs, then the SLOs; with
    `gateway` (the stack's `gateway` section, None without one) also the gateway's group
    (`gateway_rules`: its errors, refusals and the teams' quotas)."""
    tgi = [
        _alert("TGIHighRequestLatency",
               f"histogram_quantile(0.95, sum by ({PER_MODEL}, le) "
               f"(rate(tgi_request_duration_bucket[5m]))) > {t.p95_latency_seconds}",
               "10m", "warning", "{{ $labels.model }}: p95 request latency is high",
               f"95% of requests to {{{{ $labels.model }}}} take longer than "
               f"{t.p95_latency_seconds} s (queue and generation).", runbook_url),
        _alert("TGIQueueBacklog",
               f"max by ({PER_MODEL}) (tgi_queue_size) > {t.queue_size}",
               "10m", "warning", "{{ $labels.model }}: requests are queueing",
               f"A replica of {{{{ $labels.model }}}} has more than {t.queue_size} requests "
               "waiting for 10 minutes: the autoscaler is at its maximum or GPU nodes do not come.",
               runbook_url),
        # Queue time: from the request's arrival in TGI's queue to its batch's prefill (TGI has no
        # time to first token: docs/tgi.md), recorded for successful requests when they end.
        _alert("TGIHighQueueTime",
               f"histogram_quantile(0.95, sum by ({PER_MODEL}, le) "
               f"(rate(tgi_request_queue_duration_bucket[5m]))) > {t.p95_queue_seconds}",
               "10m", "warning", "{{ $labels.model }}: requests wait long for their first token",
               f"95% of requests to {{{{ $labels.model }}}} wait more than {t.p95_queue_seconds} s in "
               "TGI's queue before their prefill: the replicas are full.", runbook_url),
        _alert("TGIRequestFailures",
               # The SLO's recorded ratio (slo_groups): the service's failures over the requests
               # that ended, each counted once.
               f"{ERRORS}5m > {t.failure_ratio}",
               "5m", "critical", "{{ $labels.model }}: requests are failing",
               f"More than {t.failure_ratio:.0%} of the requests to {{{{ $labels.model }}}} fail for "
               f"the service's reasons ({', '.join(SERVICE_FAILURES)}; the client's not counted).",
               runbook_url),
        _alert("TGISlowTokenGeneration",
               f"histogram_quantile(0.95, sum by ({PER_MODEL}, le) "
               f"(rate(tgi_request_mean_time_per_token_duration_bucket[10m]))) > {t.time_per_token_seconds}",
               "15m", "warning", "{{ $labels.model }}: tokens are generated slowly",
               f"95% of the requests to {{{{ $labels.model }}}} get more than "
               f"{t.time_per_token_seconds} s per output token: the batches are too large for "
               "the GPUs.", runbook_url),
        _alert("ModelNoReadyReplicas",
               f'kube_deployment_status_replicas_available{{namespace="{namespace}"}} == 0 '
               f'and on (namespace, deployment) kube_deployment_spec_replicas{{namespace="{namespace}"}} > 0',
               "15m", "critical", "{{ $labels.deployment }}: no replica is ready",
               "The deployment {{ $labels.deployment }} has had no ready replica for 15 minutes: "
               "its endpoint is down.", runbook_url),
        # kube-state-metrics: a GPU pod that cannot be placed (no node the autoscaler can add,
        # no capacity of the instance types), a download that gave up, a target not scraped.
        _alert("GPUPodPending",
               f'max by (namespace, pod) (kube_pod_status_phase{{namespace="{namespace}", phase="Pending"}}) > 0 '
               f'and on (namespace, pod) max by (namespace, pod) '
               f'(kube_pod_container_resource_requests{{namespace="{namespace}", resource="nvidia_com_gpu"}}) > 0',
               "20m", "warning", "{{ $labels.pod }} waits for a GPU",
               "The pod has asked for GPUs for 20 minutes and no node has them: the node group may "
               "be at maxSize, or EC2 has no capacity of its instance types.", runbook_url),
        _alert("ModelDownloadFailed",
               f'kube_job_status_failed{{namespace="{namespace}", job_name=~".+-download-.+"}} > 0',
               "0m", "critical", "{{ $labels.job_name }}: the model download failed",
               "The Job that fills the model cache failed: its slot cannot start. Read the Job's "
               "logs (the Hub, the token of a gated model, the cache volume).", runbook_url),
        _alert("ServingTargetDown",
               f'up{{namespace="{namespace}"}} == 0',
               "10m", "warning", "{{ $labels.pod }}: Prometheus cannot scrape it",
               "A serving pod's metrics have been unreachable for 10 minutes: its alerts and its "
               "autoscaler are blind.", runbook_url),
    ]
    gpu = [
        _alert("GPUSaturated",
               f"avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL) > {t.gpu_utilization_percent}",
               "30m", "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is saturated",
               f"The GPU has been over {t.gpu_utilization_percent}% busy for 30 minutes: add "
               "replicas or larger GPUs.", runbook_url),
        # DCGM_FI_DEV_XID_ERRORS holds the last XID code and keeps it: alert when it changes
        # (a new error), not while it stays, and page only for the codes that mean hardware.
        _alert("GPUXidHardwareError",
               f"{NEW_XID} and on (Hostname, gpu) ({HARDWARE_XID_MATCH})",
               "0m", "critical", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reports a new hardware XID error",
               "The driver reported an XID that means a failing GPU (bus loss, uncorrectable ECC, "
               "NVLink, GSP): drain the node; EKS node auto-repair replaces it.", runbook_url),
        _alert("GPUXidError",
               f"{NEW_XID} unless on (Hostname, gpu) ({HARDWARE_XID_MATCH})",
               "0m", "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reports a new XID error",
               "The driver reported an XID error that is usually the application's (e.g. 13, 31, "
               "43): look at the pod's logs before the node.", runbook_url),
        # max_over_time: not one sample over 0% in the whole window, so a GPU that served a single
        # request in it stays quiet; the GPU must have reported at the window's start (a new node
        # is not idle yet) and still report now (a removed node is not idle).
        _alert("GPUIdle",
               f"max by (Hostname, gpu) (max_over_time(DCGM_FI_DEV_GPU_UTIL[{t.gpu_idle_hours}h])) < 1 "
               f"and on (Hostname, gpu) max by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL offset {t.gpu_idle_hours}h) "
               "and on (Hostname, gpu) max by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)",
               "0m", "warning", "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} has been idle for hours",
               f"The GPU has not been busy once in {t.gpu_idle_hours} hours and costs money all the "
               "same: a GPU node kept by the node group's minSize, or a pod stuck on it without "
               "traffic.", runbook_url),
    ]
    return [{"name": "tgi", "rules": tgi}, {"name": "gpu", "rules": gpu}, *slo_groups(slo, runbook_url),
            {"name": "vllm", "rules": vllm_rules(t, runbook_url)}, *vllm_slo_groups(slo, runbook_url),
            *([{"name": "gateway", "rules": gateway_rules(gateway, t, runbook_url)}] if gateway else [])]


def _slo_records(errors: str, failed: str, ended: str, slow: str, histogram: str, le: str) -> list[dict]:
    """The recording rules of an engine's two SLOs at every window, per model: the share of the
    ended requests (selector `ended`) that failed (selector `failed`), and the share of a
    histogram's observations above its bucket `le`."""
    records = []
    for w in WINDOWS:
        bad, total = (f"sum by ({PER_MODEL}) (rate({selector}[{w}]))" for selector in (failed, ended))
        # A counter appears at its first increment: no failure yet is a ratio of 0, not none.
        records.append({"record": f"{errors}{w}", "expr": f"({bad} or {total} * 0) / {total}"})
        count = f"sum by ({PER_MODEL}) (rate({histogram}_count[{w}]))"
        fast = f'sum by ({PER_MODEL}) (rate({histogram}_bucket{{le="{le}"}}[{w}]))'
        records.append({"record": f"{slow}{w}", "expr": f"({count} - {fast}) / {count}"})
    return records


def slo_groups(slo: SloConfig, runbook_url: str) -> list[dict]:
    """The SLOs' error ratios per model at every window, then their burn-rate alerts."""
    errs = "|".join(SERVICE_FAILURES)
    le = le_label(slo.first_token_queue_seconds)
    # Requests that ended: successes (no `err`) and the service's failures. Not tgi_request_count:
    # the OpenAI routes count each request twice (server.rs v3.3.7, chat_completions and
    # completions, then generate_internal or generate_stream_internal).
    records = _slo_records(
        ERRORS, f'tgi_request_failure{{err=~"{errs}"}}',
        f'{{__name__=~"tgi_request_success|tgi_request_failure", err=~"|{errs}"}}',
        SLOW_QUEUE, "tgi_request_queue_duration", le)
    queue = f"{slo.first_token_queue_seconds:.3g} s"
    alerts = [
        *_burn_alerts("TGIAvailability", ERRORS, slo.availability_percent,
                      f"{slo.availability_percent}% of requests without a service failure", runbook_url),
        *_burn_alerts("TGIFirstToken", SLOW_QUEUE, slo.first_token_percent,
                      f"{slo.first_token_percent}% of requests queued at most {queue} before their "
                      "prefill", runbook_url),
    ]
    return [{"name": "tgi-slo-ratios", "rules": records}, {"name": "tgi-slo", "rules": alerts}]


def _burn_alerts(prefix: str, record: str, percent: float, objective: str, runbook_url: str) -> list[dict]:
    """One SLO's alert, twice: the page (critical) and the ticket (warning), each firing when a long
    and a short window both spend the budget faster than their burn rate. One name, so that
    Alertmanager's inhibition (infra/monitoring.py) holds the ticket back while the page fires."""
    budget = round(1 - percent / 100, 10)  # 99.5 -> 0.005, not 0.0050000000000000044
    out = []
    for severity, what in (("critical", "fast"), ("warning", "slowly")):
        pairs = [(long, short, rate) for sev, long, short, rate in BURN_RATES if sev == severity]
        expr = " or ".join(f"({record}{long} > ({rate} * {budget}) and {record}{short} > ({rate} * {budget}))"
                           for long, short, rate in pairs)
        spent = " or ".join(f"{rate * _minutes(long) / (SLO_DAYS * 1440):.0%} of it in {long}"
                            for long, _, rate in pairs)
        out.append(_alert(f"{prefix}BudgetBurn", expr, "0m", severity,
                          f"{{{{ $labels.model }}}} spends its {SLO_DAYS}-day error budget {what}",
                          f"{{{{ $labels.model }}}} is spending the error budget of its SLO ({objective}, "
                          f"over {SLO_DAYS} days): {spent}, and still now.", runbook_url))
    return out


# vLLM v0.33.0 (vllm-project/vllm@v0.33.0): the metrics of vllm/v1/metrics/loggers.py, labelled
# `model_name` and `engine` (one series per engine core: several per pod with data parallelism).
# Every request the engine finishes counts once in vllm:request_success_total by its
# `finished_reason` (vllm/v1/engine/__init__.py FinishReason, recorded in
# vllm/v1/engine/output_processor.py): `stop`, `length` and `repetition` are answers; `error` is
# the engine's failure, answered with HTTP 500 (a KV load failure, a paused engine, a failed
# preprocessing); `abort` is the client that went away (or a shutdown without drain), counted
# neither way, like TGI's `dropped`. A request refused by the API server's queue limits
# (--max-num-queued-reqs / --max-num-queued-tokens, unset by default) gets a 503 and counts in
# vllm:admission_rejections_total{reason}, labelled `model_name` only: the service's failure too,
# like TGI's `overloaded`.
VLLM_ANSWERED = ("stop", "length", "repetition")
VLLM_FAILED = "error"
VLLM_ENDED = "vllm:request_success_total|vllm:admission_rejections_total"
VLLM_ERRORS = "model:vllm_request_errors:ratio_rate"  # + window
VLLM_SLOW_FIRST_TOKEN = "model:vllm_time_to_first_token_slow:ratio_rate"
# The bounds of vllm:time_to_first_token_seconds (vllm/v1/metrics/buckets.py,
# TIME_TO_FIRST_TOKEN_BUCKETS; `--custom-histogram-buckets` would replace them, and the program
# does not set it).
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                     5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
# The first-token objective of vLLM's SLO: requests whose first token comes within this many
# seconds (queue, prefill and the first decode). A bucket bound, for an exact ratio. Fixed here:
# the stack's `slo.firstTokenQueueSeconds` is a TGI queue-time bound (config/monitoring.py), not
# a time to first token, and no setting has a vLLM one yet.
VLLM_FIRST_TOKEN_SECONDS = 2.5
# VLLMKVCacheExhausted: the KV cache this full while the scheduler preempts requests (it frees a
# running request's blocks and recomputes it later when a new token finds no free block:
# vllm/v1/core/sched/scheduler.py). A share of vllm:kv_cache_usage_perc (0 to 1); no setting yet.
KV_CACHE_FULL = 0.9
assert VLLM_FIRST_TOKEN_SECONDS in VLLM_TTFT_BUCKETS


def vllm_le(bound: float) -> str:
    """A bucket bound as vLLM's `/metrics` writes it in `le`: prometheus_client's floatToGoString
    (prometheus_client/utils.py), Python's repr of the float (`1.0`, `2.5`, `2560.0`), with an
    exponent only from 1e7 up, which no bound here reaches. Prometheus 3 stores `le` the same way
    (a float with `.0` on whole numbers), whatever the scrape format."""
    text = repr(float(bound))
    assert "e" not in text and text.find(".") <= 6, text
    return text


def vllm_rules(t: AlertThresholds, runbook_url: str) -> list[dict]:
    """The vLLM models' health, per model, with the thresholds of their TGI counterparts."""
    q = lambda metric, window: (  # noqa: E731
        f"histogram_quantile(0.95, sum by ({PER_MODEL}, le) (rate({metric}_bucket[{window}])))")
    return [
        _alert("VLLMHighRequestLatency",
               f"{q('vllm:e2e_request_latency_seconds', '5m')} > {t.p95_latency_seconds}",
               "10m", "warning", "{{ $labels.model }}: p95 request latency is high",
               f"95% of requests to {{{{ $labels.model }}}} take longer than "
               f"{t.p95_latency_seconds} s from arrival to their last token (queue, prefill and "
               "decode).", runbook_url),
        # Per pod first: a pod of several engine cores (data parallel) has one series each.
        _alert("VLLMQueueBacklog",
               f"max by ({PER_MODEL}) (sum by ({PER_MODEL}, pod) (vllm:num_requests_waiting)) > {t.queue_size}",
               "10m", "warning", "{{ $labels.model }}: requests are queueing",
               f"A replica of {{{{ $labels.model }}}} has more than {t.queue_size} requests "
               "waiting for 10 minutes: the autoscaler is at its maximum or GPU nodes do not come.",
               runbook_url),
        # vLLM measures the time to first token itself (arrival to first token, recorded when the
        # token comes): the threshold is TGI's for the queue time, its stand-in for it.
        _alert("VLLMHighTimeToFirstToken",
               f"{q('vllm:time_to_first_token_seconds', '5m')} > {t.p95_queue_seconds}",
               "10m", "warning", "{{ $labels.model }}: requests wait long for their first token",
               f"95% of requests to {{{{ $labels.model }}}} get their first token after more than "
               f"{t.p95_queue_seconds} s: the replicas are full, or the prompts are long.",
               runbook_url),
        _alert("VLLMRequestFailures",
               f"{VLLM_ERRORS}5m > {t.failure_ratio}",
               "5m", "critical", "{{ $labels.model }}: requests are failing",
               f"More than {t.failure_ratio:.0%} of the requests to {{{{ $labels.model }}}} fail for "
               "the service's reasons (finished with `error`, or refused by the queue limits; "
               "aborted by the client not counted).", runbook_url),
        # Inter-token latency: one observation per output token after the first.
        _alert("VLLMSlowTokenGeneration",
               f"{q('vllm:inter_token_latency_seconds', '10m')} > {t.time_per_token_seconds}",
               "15m", "warning", "{{ $labels.model }}: tokens are generated slowly",
               f"95% of the output tokens of {{{{ $labels.model }}}} come more than "
               f"{t.time_per_token_seconds} s after the previous one: the batches are too large "
               "for the GPUs.", runbook_url),
        _alert("VLLMKVCacheExhausted",
               f"max by ({PER_MODEL}) (vllm:kv_cache_usage_perc) > {KV_CACHE_FULL} "
               f"and on ({PER_MODEL}) sum by ({PER_MODEL}) (rate(vllm:num_preemptions_total[10m])) > 0",
               "15m", "warning", "{{ $labels.model }}: the KV cache is full and requests are preempted",
               f"A replica of {{{{ $labels.model }}}} has used more than {KV_CACHE_FULL:.0%} of its KV "
               "cache for 15 minutes while the scheduler preempts running requests to recompute "
               "them later: too many long sequences for the GPU memory.", runbook_url),
    ]


def vllm_slo_groups(slo: SloConfig, runbook_url: str) -> list[dict]:
    """vLLM's SLOs, with the same objectives and burn rates as TGI's: availability (the engine's
    failures over the requests that ended) and first token (vLLM's own time to first token)."""
    answered = "|".join(VLLM_ANSWERED)
    le = vllm_le(VLLM_FIRST_TOKEN_SECONDS)
    # One selector for both counters: the admission rejections have no `finished_reason`.
    records = _slo_records(
        VLLM_ERRORS, f'{{__name__=~"{VLLM_ENDED}", finished_reason=~"{VLLM_FAILED}|"}}',
        f'{{__name__=~"{VLLM_ENDED}", finished_reason=~"{answered}|{VLLM_FAILED}|"}}',
        VLLM_SLOW_FIRST_TOKEN, "vllm:time_to_first_token_seconds", le)
    alerts = [
        *_burn_alerts("VLLMAvailability", VLLM_ERRORS, slo.availability_percent,
                      f"{slo.availability_percent}% of requests without a service failure", runbook_url),
        *_burn_alerts("VLLMFirstToken", VLLM_SLOW_FIRST_TOKEN, slo.first_token_percent,
                      f"{slo.first_token_percent}% of requests with their first token within "
                      f"{VLLM_FIRST_TOKEN_SECONDS:g} s", runbook_url),
    ]
    return [{"name": "vllm-slo-ratios", "rules": records}, {"name": "vllm-slo", "rules": alerts}]
