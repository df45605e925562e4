"""Building blocks shared by the sections' schemas: the base model, name and ARN checks, and the
names the contract takes from the layers above (`Vocabulary`)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel

from .cidrs import too_open

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
INT32 = 2**31 - 1  # Kubernetes' replica counts and most integer fields are int32
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


@dataclass(frozen=True)
class EngineVocabulary:
    """What one serving engine takes: its quantize modes, those that also take a dtype, its
    default image, and its name in messages."""

    quantize: tuple[str, ...]
    quantize_with_dtype: tuple[str, ...]
    default_image: str
    label: str
    stores: tuple[str, ...] = ("efs",)  # where it reads weights from (models[].store)


@dataclass(frozen=True)
class Vocabulary:
    """Values the contract accepts but other layers own: the GPU instance types of the planner's
    catalog and the engines (`engine:`, the first the default) with their quantize modes, dtype
    rule and default image. The callers of `validate_settings` and `load` pass
    `components.engines.vocabulary.VOCABULARY`."""

    gpu_instance_types: tuple[str, ...]
    engines: Mapping[str, EngineVocabulary]

    @property
    def default_engine(self) -> str:
        return next(iter(self.engines))

    @property
    def default_image(self) -> str:
        return self.engines[self.default_engine].default_image


def vocabulary(info: ValidationInfo) -> Vocabulary:
    if not isinstance(info.context, Vocabulary):
        raise TypeError("validate the settings with a Vocabulary as context (validate_settings)")
    return info.context


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True,
                              populate_by_name=False, allow_inf_nan=False)


def dns_label(value: str, max_len: int, why: str = "", letter_first: bool = False) -> str:
    if len(value) > max_len or not DNS_LABEL.match(value) or (letter_first and not value[0].isalpha()):
        first = "a letter" if letter_first else "a letter or digit"
        kind = "DNS-1035" if letter_first else "DNS-1123"
        raise ValueError(f"{value!r} is not a {kind} label of at most {max_len} characters "
                         f"(lowercase letters, digits and '-', starting with {first} and ending "
                         f"with a letter or digit){why}")
    return value


# A DNS name of two or more labels ending in a letters-only TLD, e.g. llm.example.com.
DNS_NAME = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}")
ACM_CERTIFICATE_ARN = re.compile(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+")


def certificate_arn(value: str) -> str:
    """An ACM certificate ARN (the ingress's and the gateway's TLS)."""
    if not ACM_CERTIFICATE_ARN.fullmatch(value):
        raise ValueError(f"{value!r} is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)")
    return value


def _cidr(value: str) -> str:
    # IPv4 only: the cluster, its VPC and load balancers are IPv4 (an IPv6 block would do nothing).
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR block, e.g. 203.0.113.0/24") from None
    if net.version == 6:
        raise ValueError(f"{value!r} is an IPv6 block; the cluster and its load balancers are IPv4")
    if net.prefixlen == 0:
        raise ValueError(f"{value!r} opens the Kubernetes API to the whole internet; list your "
                         "own networks, or none for a private-only endpoint")
    return value


def _subnet_id(value: str) -> str:
    if not re.match(r"^subnet-[0-9a-f]{8,17}$", value):
        raise ValueError(f"{value!r} is not a subnet id (subnet-0123abcd...)")
    return value


def _gpu_instance_type(value: str, info: ValidationInfo) -> str:
    allowed = vocabulary(info).gpu_instance_types
    if value not in allowed:
        raise ValueError(f"{value!r} is not a GPU instance type of the catalog; allowed: "
                         f"{', '.join(allowed)}")
    return value


def _system_instance_type(value: str, info: ValidationInfo) -> str:
    if not INSTANCE_TYPE.match(value):
        raise ValueError(f"{value!r} is not an EC2 instance type, e.g. m7i.large")
    if value in vocabulary(info).gpu_instance_types:
        raise ValueError(f"{value!r} is a GPU instance: system nodes run controllers only")
    return value


def _principal_arn(value: str) -> str:
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+", value):
        raise ValueError(f"{value!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/...)")
    return value


def _policy_arn(value: str) -> str:
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:policy/[\w+=,.@/-]+", value):
        raise ValueError(f"{value!r} is not a customer-managed IAM policy ARN "
                         "(arn:aws:iam::123456789012:policy/...)")
    return value


# An image reference as container runtimes parse it (distribution/reference, reference.go):
# [host[:port]/]path[:tag][@sha256:<64 hex>], path components lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# A first component is a registry host only with a dot or a port, or as localhost.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})+(?::[0-9]{{1,5}})?|{_LABEL}:[0-9]{{1,5}}|localhost)"
IMAGE_REFERENCE = re.compile(
    rf"(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?", re.ASCII)


def _image(value: str, info: ValidationInfo) -> str:
    """A container image reference that parses, pinned to a tag or a digest, never `latest`
    (docs/tgi.md)."""
    example = vocabulary(info).default_image
    ref = IMAGE_REFERENCE.fullmatch(value)
    if ref is None or len(value.split("@")[0].rsplit(":", 1)[0] if ref["tag"] else ref["path"]) > 255:
        raise ValueError(f"{value!r} is not an image reference: [registry/]name[:tag][@sha256:<64 hex>], "
                         f"e.g. {example}")
    if ref["digest"] is None and ref["tag"] in (None, "latest"):
        raise ValueError(f"{value!r} is not pinned: give a release tag or a digest, e.g. {example}")
    return value


def _open_to_few(cidrs: list[str]) -> list[str]:
    problem = too_open(cidrs)
    if problem:
        raise ValueError(problem)
    return cidrs


Cidr = Annotated[str, AfterValidator(_cidr)]
# A list of client or admin networks, judged by the public addresses it covers in all.
Cidrs = Annotated[list[Cidr], AfterValidator(_open_to_few)]
Image = Annotated[str, AfterValidator(_image)]
SubnetId = Annotated[str, AfterValidator(_subnet_id)]
GpuInstanceType = Annotated[str, AfterValidator(_gpu_instance_type)]
SystemInstanceType = Annotated[str, AfterValidator(_system_instance_type)]
PrincipalArn = Annotated[str, AfterValidator(_principal_arn)]
PolicyArn = Annotated[str, AfterValidator(_policy_arn)]
