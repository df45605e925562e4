"""`monitoring`: Prometheus retention and volume, the runbook link, the alert thresholds."""

from __future__ import annotations

import re
from typing import Optional

from pydantic import Field, field_validator

from .fields import Settings


class AlertThresholds(Settings):
    """When the TGI and GPU alerts fire (components/serving/alerts.py)."""

    p95_latency_seconds: float = Field(30.0, gt=0)
    queue_size: int = Field(50, ge=1)
    failure_ratio: float = Field(0.05, gt=0, lt=1)
    time_per_token_seconds: float = Field(0.2, gt=0)
    gpu_utilization_percent: int = Field(95, ge=1, le=100)


class MonitoringConfig(Settings):
    retention: str = "15d"
    storage_gi_b: int = Field(50, ge=10, le=16384)
    # Where a page's runbook link opens: your copy of docs/runbook.md at an absolute https URL
    # (an anchor per alert is appended). Required (config/stack.py): a relative path opens
    # nowhere from a pager.
    runbook_base_url: Optional[str] = None
    alerts: AlertThresholds = AlertThresholds()

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
