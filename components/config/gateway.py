"""`gateway`: one OpenAI-compatible endpoint for every model (Envoy AI Gateway over Envoy Gateway,
docs/gateway.md): clients send `model` in the body, each team has its own key."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .fields import DNS_NAME, Cidrs, Settings, certificate_arn, dns_label

# A team's key is a Pulumi secret: `teamKeys.<team>` (config/load.py), generated when unset.
TEAM_KEYS = "teamKeys"


class TeamConfig(Settings):
    # The team's id: the client id of its key, the `x-team-id` header the engines' logs and the
    # gateway's metrics carry (a DNS label: a Secret data key and a label value).
    name: str
    # The models it may use (their `name`s); unset: every model. Others answer 403.
    models: Optional[list[str]] = Field(None, min_length=1)
    # Token quotas (prompt and output tokens together, over all its models); unset: none.
    tokens_per_minute: Optional[int] = Field(None, ge=1, le=4_294_967_295)
    tokens_per_day: Optional[int] = Field(None, ge=1, le=4_294_967_295)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v, 40)


class GatewayConfig(Settings):
    # The name clients use (a DNS name you point at the load balancer); also the route's hostname.
    hostname: str
    scheme: Literal["internal", "internet-facing"] = "internal"
    # Who may reach the load balancer. Internal: unset, the VPC.
    allowed_cidrs: Optional[Cidrs] = Field(None, min_length=1)
    # TLS at the load balancer with an ACM certificate for `hostname`.
    certificate_arn: Optional[str] = None
    teams: list[TeamConfig] = Field(min_length=1)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if not DNS_NAME.fullmatch(v) or len(v) > 253:
            raise ValueError(f"{v!r} is not a DNS name, e.g. llm.example.com")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else certificate_arn(v)

    @model_validator(mode="after")
    def _exposure(self) -> "GatewayConfig":
        if self.scheme == "internet-facing" and self.allowed_cidrs is None:
            raise ValueError("allowedCidrs: required with scheme internet-facing: the networks of your "
                             "clients (the whole internet is refused)")
        if self.scheme == "internet-facing" and self.certificate_arn is None:
            raise ValueError("certificateArn: required with scheme internet-facing: the teams' keys "
                             "cross the internet only over TLS (an ACM certificate for the hostname)")
        names = [t.name for t in self.teams]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"teams[{i}].name: {name!r} is used twice; names must be unique")
        return self

    @property
    def quotas(self) -> bool:
        """Some team has a token quota: the stack needs the rate limit's Redis (ElastiCache)."""
        return any(t.tokens_per_minute or t.tokens_per_day for t in self.teams)

    @property
    def warnings(self) -> list[str]:
        return [] if self.certificate_arn else [
            "gateway.certificateArn: unset: the teams' keys reach the internal load balancer without "
            "TLS, readable by anyone on the path inside the VPC; set an ACM certificate for "
            "gateway.hostname"]
