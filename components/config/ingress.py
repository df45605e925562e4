"""`ingress`: the shared ALB in front of the models."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from .fields import DNS_NAME, Cidrs, Settings, certificate_arn


# The most an ALB allows (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/
# edit-load-balancer-attributes.html, connection idle timeout: 1-4000 s).
IDLE_TIMEOUT_MAX_SECONDS = 4000


class IngressConfig(Settings):
    """One ALB (AWS Load Balancer Controller) for every model, host `<model>.<domain>`."""

    domain: str
    certificate_arn: str
    scheme: Literal["internal", "internet-facing"] = "internal"
    allowed_cidrs: Cidrs = Field(min_length=1)
    # Streamed generations outlive the ALB's 60 s default idle timeout (docs/eks.md).
    idle_timeout_seconds: int = Field(600, ge=60, le=IDLE_TIMEOUT_MAX_SECONDS)
    # AWS WAFv2 rate-based rule: requests per client IP per 5 minutes; none: no WAF.
    rate_limit_per_5min: Optional[int] = Field(None, ge=10, le=2_000_000_000)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not DNS_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a DNS domain, e.g. llm.example.com")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, v: str) -> str:
        return certificate_arn(v)
