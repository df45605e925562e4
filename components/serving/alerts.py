"""Alert rules for TGI and the GPUs, as PrometheusRule groups. Pure functions, no Pulumi.

Metric names: TGI's as exported, without `_seconds` or `_total` suffixes (docs/tgi.md);
DCGM exporter's DCGM_FI_DEV_GPU_UTIL (percent), DCGM_FI_DEV_FB_USED / _FB_FREE (MiB),
DCGM_FI_DEV_XID_ERRORS (the last XID error code); kube-state-metrics'
kube_deployment_status_replicas_available and kube_deployment_spec_replicas. The PodMonitor of
each model puts `namespace`, `pod`, `model` and `slot` on TGI's series.
"""

from __future__ import annotations

from ..config import AlertThresholds

PER_MODEL = "namespace, model"
# XID codes of failing hardware (NVIDIA's XID catalog, https://docs.nvidia.com/deploy/xid-errors/):
# 48 double-bit ECC, 63/64 row remapping, 74 NVLink, 79 fallen off the bus, 92 high single-bit
# ECC rate, 94/95 contained/uncontained ECC, 119/120 GSP timeouts.
HARDWARE_XIDS = (48, 63, 64, 74, 79, 92, 94, 95, 119, 120)
_LAST_XID = "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS)"
NEW_XID = f"({_LAST_XID} > 0 and max by (Hostname, gpu) (changes(DCGM_FI_DEV_XID_ERRORS[15m])) > 0)"
HARDWARE_XID_MATCH = " or ".join(f"{_LAST_XID} == {x}" for x in HARDWARE_XIDS)


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           runbook_url: str) -> dict:
    return {
        "alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description,
                        "runbook_url": f"{runbook_url}#{name.lower()}"},
    }


def rule_groups(t: AlertThresholds, namespace: str, runbook_url: str) -> list[dict]:
    """The PrometheusRule's groups: serving health per model, then the GPUs."""
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
        _alert("TGIRequestFailures",
               f'sum by ({PER_MODEL}) (rate(tgi_request_failure{{err!="validation"}}[5m])) / '
               f"sum by ({PER_MODEL}) (rate(tgi_request_count[5m])) > {t.failure_ratio}",
               "5m", "critical", "{{ $labels.model }}: requests are failing",
               f"More than {t.failure_ratio:.0%} of the requests to {{{{ $labels.model }}}} fail "
               "(client validation errors not counted).", runbook_url),
        _alert("TGISlowTokenGeneration",
               f"histogram_quantile(0.95, sum by ({PER_MODEL}, le) "
               f"(rate(tgi_request_mean_time_per_token_duration_bucket[10m]))) > {t.time_per_token_seconds}",
               "15m", "warning", "{{ $labels.model }}: tokens are generated slowly",
               f"95% of the requests to {{{{ $labels.model }}}} get more than "
               f"{t.time_per_token_seconds} s per output token: the batches are too large for "
               "the GPUs.", runbook_url),
        _alert("TGINoReadyReplicas",
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
    ]
    return [{"name": "tgi", "rules": tgi}, {"name": "gpu", "rules": gpu}]
