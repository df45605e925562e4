"""`monitoring`: Prometheus retention and volume, the runbook link, the alert thresholds, where alerts go (`alerting`)."""

from __future__ import annotations

import bisect
import re
from decimal import Decimal
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .fields import Settings


class AlertThresholds(Settings):
    """When the TGI and GPU alerts fire (components/serving/alerts.py)."""

    p95_latency_seconds: float = Field(30.0, gt=0)
    queue_size: int = Field(50, ge=1)
    failure_ratio: float = Field(0.05, gt=0, lt=1)
    time_per_token_seconds: float = Field(0.2, gt=0)
    gpu_utilization_percent: int = Field(95, ge=1, le=100)
    p95_queue_seconds: float = Field(5.0, gt=0)  # TGIHighQueueTime
    gpu_idle_hours: int = Field(3, ge=1, le=72)  # GPUIdle: never busy for this long


def _tgi_duration_buckets() -> tuple[float, ...]:
    """The bounds of TGI's duration histograms, computed as TGI does, in f64, so they are its
    bounds bit for bit: 0.0001 times 1.5 before each of 35 pushes, 0.00015 s to 145.6 s, for every
    metric whose name ends in `duration` (router/src/server.rs, huggingface/text-generation-inference
    at v3.3.7)."""
    bounds, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        bounds.append(value)
    return tuple(bounds)


TGI_DURATION_BUCKETS = _tgi_duration_buckets()


def le_label(bound: float) -> str:
    """A bucket bound as TGI's `/metrics` writes it in `le`: metrics-exporter-prometheus 0.15.3
    (TGI's Cargo.lock at v3.3.7) formats the f64 with Rust's `Display` (formatting.rs,
    write_metric_line), the shortest decimal that reads back as the same f64 and never an exponent
    (rust-lang/rust library/core/src/fmt/float.rs). Python's repr finds the same shortest digits."""
    return format(Decimal(repr(bound)), "f").removesuffix(".0")


# The SRE workbook's multiwindow, multi-burn-rate alerts for a 30-day SLO
# (https://sre.google/workbook/alerting-on-slos/): (severity, long window, short window, burn rate).
# A burn rate of 1 spends the budget in exactly 30 days; 14.4 over 1h spends 2% of it.
BURN_RATES = (("critical", "1h", "5m", 14.4), ("critical", "6h", "30m", 6.0),
              ("warning", "1d", "2h", 3.0), ("warning", "3d", "6h", 1.0))
SLO_DAYS = 30


class SloConfig(Settings):
    """Per-model objectives over 30 days, alerted on by burn rate (components/serving/alerts.py).
    Availability: requests that do not fail by the service's fault. First token: successful
    requests that wait at most `firstTokenQueueSeconds` in TGI's queue before their prefill starts
    (TGI exports no time to first token; docs/tgi.md)."""

    # At least 95: the fastest page fires at 14.4 times the error budget, which must stay below
    # 100% of the requests (a budget under 6.9%) for the page to be possible at all.
    availability_percent: float = Field(99.5, ge=95, lt=100)
    first_token_percent: float = Field(99.0, ge=95, lt=100)
    first_token_queue_seconds: float = TGI_DURATION_BUCKETS[22]  # 1.122274146401882 s

    @field_validator("first_token_queue_seconds")
    @classmethod
    def _bucket_bound(cls, v: float) -> float:
        # A ratio over a histogram is exact only at a bucket bound (its `le` series).
        if v not in TGI_DURATION_BUCKETS:
            i = bisect.bisect(TGI_DURATION_BUCKETS, v)
            near = TGI_DURATION_BUCKETS[max(i - 1, 0):i + 1]
            raise ValueError(f"{v!r} is not a bucket bound of tgi_request_queue_duration; nearest: "
                             f"{', '.join(le_label(b) for b in near)} (35 bounds, 0.00015 s times "
                             "1.5 each: docs/tgi.md)")
        return v


# Where each severity can go, and the secret stack setting each receiver reads (loaded as a Pulumi
# secret in config/load.py, mounted into Alertmanager by infra/monitoring.py).
RECEIVERS = ("pagerduty", "slack", "email")
RECEIVER_SECRETS = {"pagerduty": "pagerdutyRoutingKey", "slack": "slackWebhookUrl",
                    "email": "smtpPassword"}
HEARTBEAT_SECRET = "heartbeatUrl"
ALERTING_SECRETS = (*RECEIVER_SECRETS.values(), HEARTBEAT_SECRET)
_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")


class EmailConfig(Settings):
    """An SMTP relay (e.g. Amazon SES's SMTP endpoint); its password is `smtpPassword`."""

    to: list[str] = Field(min_length=1)
    from_address: str
    smarthost: str  # host:port
    auth_username: Optional[str] = None  # with it, the secret smtpPassword is required

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        for address in v:
            cls._from(address)
        return v

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        if not _ADDRESS.fullmatch(v):
            raise ValueError(f"{v!r} is not an email address, e.g. oncall@example.com")
        return v

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.-]+:\d{1,5}", v):
            raise ValueError(f"{v!r} is not host:port, e.g. email-smtp.us-east-1.amazonaws.com:587")
        return v


def _receivers(v):
    return [v] if isinstance(v, str) else v


class AlertingConfig(Settings):
    """Where Alertmanager sends each severity. Every field is required: a stack that pages nobody
    says so (`critical: none`)."""

    critical: list[Literal["pagerduty", "slack", "email", "none"]] = Field(min_length=1)
    warning: list[Literal["pagerduty", "slack", "email", "none"]] = Field(min_length=1)
    # The always-firing Watchdog alert sent to `heartbeatUrl` every minute: a dead man's switch
    # (healthchecks.io, Dead Man's Snitch...) that pages when the pings stop.
    heartbeat: bool
    email: Optional[EmailConfig] = None

    _lists = field_validator("critical", "warning", mode="before")(_receivers)

    @field_validator("critical", "warning")
    @classmethod
    def _alone(cls, v: list[str]) -> list[str]:
        if "none" in v and len(v) > 1:
            raise ValueError("none routes nowhere: give it alone, or only receivers")
        if len(set(v)) < len(v):
            raise ValueError("a receiver is listed twice")
        return v

    @model_validator(mode="after")
    def _email(self) -> "AlertingConfig":
        if "email" in self.critical + self.warning and self.email is None:
            raise ValueError("email: required when a severity routes to email: {to: [...], "
                             "fromAddress, smarthost: host:port, authUsername}")
        return self

    def receivers(self) -> set[str]:
        return set(self.critical + self.warning) - {"none"}

    def secrets(self) -> dict[str, str]:
        """The secret stack settings these routes need, each with why."""
        need = {RECEIVER_SECRETS[r]: f"monitoring.alerting routes to {r}" for r in sorted(self.receivers())
                if r != "email" or (self.email and self.email.auth_username)}
        if self.heartbeat:
            need[HEARTBEAT_SECRET] = "monitoring.alerting.heartbeat is true"
        return need


class MonitoringConfig(Settings):
    retention: str = "15d"
    storage_gi_b: int = Field(50, ge=10, le=16384)
    # Where a page's runbook link opens: your copy of docs/runbook.md at an absolute https URL
    # (an anchor per alert is appended). Required (config/stack.py): a relative path opens
    # nowhere from a pager.
    runbook_base_url: Optional[str] = None
    alerts: AlertThresholds = AlertThresholds()
    slo: SloConfig = SloConfig()
    # Required (config/stack.py): where alerts go, or explicitly nowhere.
    alerting: Optional[AlertingConfig] = None

    @field_validator("runbook_base_url")
    @classmethod
    def _runbook(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"https://[^\s/#?]+\.[^\s/#?]+(/[^\s#?]*)?", v):
            raise ValueError(f"{v!r} is not an absolute https URL without a fragment, e.g. "
                             "https://github.com/acme/llmserve/blob/main/docs/runbook.md")
        return v

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        if not re.fullmatch(r"[1-9]\d*(h|d|w|y)", v):
            raise ValueError(f"{v!r} is not a Prometheus retention such as 15d, 12h, 2w")
        return v
