"""The stack configuration: read once from Pulumi config, validated with pydantic, passed to components.

Every setting lives under the project's namespace (`llmserve:<key>`) and is spelled in camelCase so
that `pulumi config set --path 'models[0].quantize' awq` works. Unknown keys are rejected. Any
invalid setting raises `ConfigError`, whose lines each name the setting's path and what is allowed,
before a single resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pulumi
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)
from pydantic.alias_generators import to_camel

from . import planner
from .catalog import CATALOG
from .planner import BITSANDBYTES, QUANTIZE
from .modellock import LOCK_FILE, Lock

PROJECT = "llmserve"

# EKS standard support (docs/eks.md): 1.34 leaves standard support on 2026-12-02,
# so new clusters start on 1.35 or newer. Extended support costs six times as much per hour.
KUBERNETES_VERSIONS = ("1.35", "1.36")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)  # the values CloudWatch Logs accepts
SECRET_KEYS = ("hfToken", "apiKey")
# TGI's newest release (docs/tgi.md: git tags go to v3.3.7; the image is published under
# the same tag on ghcr.io).
DEFAULT_TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"
SLOTS = ("blue", "green")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HF_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. Pulumi prints a RunError without a traceback."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {e}" for e in errors))


def _dns_label(value: str, max_len: int) -> str:
    if len(value) > max_len or not DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label of at most {max_len} characters "
                         "(lowercase letters, digits and '-', starting and ending with a letter "
                         "or digit)")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR block, e.g. 203.0.113.0/24") from None
    if net.prefixlen == 0:
        raise ValueError(f"{value!r} opens the Kubernetes API to the whole internet; list your "
                         "own networks, or none for a private-only endpoint")
    return value


def _subnet_id(value: str) -> str:
    if not re.match(r"^subnet-[0-9a-f]{8,17}$", value):
        raise ValueError(f"{value!r} is not a subnet id (subnet-0123abcd...)")
    return value


def _gpu_instance_type(value: str) -> str:
    if value not in CATALOG:
        raise ValueError(f"{value!r} is not a GPU instance type of the catalog; allowed: "
                         f"{', '.join(CATALOG)}")
    return value


def _system_instance_type(value: str) -> str:
    if not INSTANCE_TYPE.match(value):
        raise ValueError(f"{value!r} is not an EC2 instance type, e.g. m7i.large")
    if value in CATALOG:
        raise ValueError(f"{value!r} is a GPU instance: system nodes run controllers only")
    return value


def _role_arn(value: str) -> str:
    if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", value):
        raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::123456789012:role/...)")
    return value


def _image(value: str) -> str:
    """A container image pinned to a tag or digest, never `latest` (docs/tgi.md)."""
    name, _, tag = value.rpartition(":") if "@" not in value else (value, "", "digest")
    if not name or "/" in tag or tag in ("", "latest"):
        raise ValueError(f"{value!r} is not pinned: give a release tag or a digest, e.g. "
                         f"{DEFAULT_TGI_IMAGE}")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
Image = Annotated[str, AfterValidator(_image)]
SubnetId = Annotated[str, AfterValidator(_subnet_id)]
GpuInstanceType = Annotated[str, AfterValidator(_gpu_instance_type)]
SystemInstanceType = Annotated[str, AfterValidator(_system_instance_type)]
RoleArn = Annotated[str, AfterValidator(_role_arn)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True,
                              populate_by_name=False)


class VpcConfig(Settings):
    """Either a new VPC (`cidr`, `azCount`) or an existing one (`id`, subnet ids)."""

    cidr: Optional[str] = None
    az_count: int = Field(2, ge=2, le=6)
    single_nat_gateway: bool = False
    id: Optional[str] = None
    private_subnet_ids: list[SubnetId] = []
    public_subnet_ids: list[SubnetId] = []

    @field_validator("cidr")
    @classmethod
    def _vpc_cidr(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            net = ipaddress.IPv4Network(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 network in CIDR form, e.g. 10.0.0.0/16") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"{v!r}: the prefix must be /16 to /20 (room for one private and "
                             "one public subnet per AZ, pods take VPC addresses)")
        return v

    @model_validator(mode="after")
    def _new_or_existing(self) -> "VpcConfig":
        existing = self.id is not None
        if existing and self.cidr is not None:
            raise ValueError("set either cidr (a new VPC) or id (an existing VPC), not both")
        if not existing:
            if self.cidr is None:
                raise ValueError("set cidr for a new VPC, or id with privateSubnetIds for an "
                                 "existing one")
            if self.private_subnet_ids or self.public_subnet_ids:
                raise ValueError("privateSubnetIds and publicSubnetIds belong to an existing "
                                 "VPC: set id too, or remove them")
        elif len(set(self.private_subnet_ids)) < 2:
            raise ValueError("privateSubnetIds: an existing VPC needs private subnets in at "
                             "least 2 AZs")
        if existing and not re.match(r"^vpc-[0-9a-f]{8,17}$", self.id):
            raise ValueError(f"id: {self.id!r} is not a VPC id (vpc-0123abcd...)")
        return self


class ClusterConfig(Settings):
    name: Optional[str] = None
    kubernetes_version: str = "1.35"
    public_access_cidrs: list[Cidr] = []
    admin_role_arns: list[RoleArn] = []
    log_retention_days: int = 90
    deletion_protection: bool = False
    vpc: VpcConfig

    @field_validator("name")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _dns_label(v, 40)

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise ValueError(f"write the version as a string in quotes ('{v}'): YAML reads "
                             "1.30 as the number 1.3")
        if v not in KUBERNETES_VERSIONS:
            raise ValueError(f"{v!r} is not one of {', '.join(KUBERNETES_VERSIONS)} (EKS "
                             "standard support; 1.34 leaves it on 2026-12-02)")
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"{v} is not one of {', '.join(map(str, LOG_RETENTION_DAYS))} "
                             "(the values CloudWatch Logs accepts)")
        return v


class ScalingBounds(Settings):
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=1)
    desired_size: int = Field(ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "ScalingBounds":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"desiredSize: {self.desired_size} must be between minSize "
                             f"({self.min_size}) and maxSize ({self.max_size})")
        return self


class SystemNodeGroupConfig(ScalingBounds):
    """Small on-demand nodes for controllers (CoreDNS, load balancer controller, Prometheus)."""

    instance_types: list[SystemInstanceType] = Field(["m7i.large"], min_length=1)
    min_size: int = Field(2, ge=1)
    max_size: int = Field(3, ge=1)
    desired_size: int = Field(2, ge=1)
    # The download Jobs pull the TGI image (several GB) onto these nodes too.
    disk_size_gi_b: int = Field(100, ge=20, le=16384)


class GpuNodeGroupConfig(ScalingBounds):
    name: str
    instance_types: list[GpuInstanceType] = Field(min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    # The TGI image is several GB compressed: 100 GiB or more of root volume (docs/eks.md).
    disk_size_gi_b: int = Field(200, ge=100, le=16384)
    # x86 only: every GPU instance of the catalog is x86; AL2_x86_64_GPU is end of life.
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "system":
            raise ValueError("'system' is the name of the system node group; choose another")
        return _dns_label(v, 30)

    @field_validator("instance_types")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an instance type is listed twice")
        return v


class StorageConfig(Settings):
    throughput_mode: Literal["elastic", "bursting", "provisioned"] = "elastic"
    provisioned_throughput_mibps: Optional[int] = Field(None, ge=1, le=10240)
    backup: bool = False
    protect: bool = False

    @model_validator(mode="after")
    def _provisioned(self) -> "StorageConfig":
        if (self.throughput_mode == "provisioned") != (self.provisioned_throughput_mibps is not None):
            raise ValueError("provisionedThroughputMibps: required with throughputMode "
                             "'provisioned' and allowed only with it")
        return self


class Replicas(Settings):
    min: int = Field(1, ge=1)
    max: int = Field(1, ge=1)
    # The HPA adds replicas when the average of TGI's tgi_queue_size per pod is above this.
    target_queue_size: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _order(self) -> "Replicas":
        if self.min > self.max:
            raise ValueError(f"max: {self.max} is less than min ({self.min})")
        return self


class ModelSettings(Settings):
    """What a model slot runs. At the model level these are the defaults of its slots."""

    id: Optional[str] = None
    revision: Optional[str] = None
    quantize: Optional[Literal[QUANTIZE]] = None  # type: ignore[valid-type]
    dtype: Optional[Literal["float16", "bfloat16"]] = None
    node_group: Optional[str] = None
    max_input_tokens: Optional[int] = Field(None, ge=1)
    max_total_tokens: Optional[int] = Field(None, ge=2)
    image: Optional[Image] = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (len(v) > 96 or not HF_REPO_ID.match(v) or ".." in v or "--" in v):
            raise ValueError(f"{v!r} is not a Hugging Face model repo id, e.g. "
                             "mistralai/Mistral-7B-Instruct-v0.3")
        return v


@dataclass(frozen=True)
class Slot:
    """A model slot with every setting resolved (slot over model over defaults)."""

    slot: str
    id: str
    revision: str
    quantize: Optional[str]
    dtype: Optional[str]
    node_group: str
    max_input_tokens: Optional[int]
    max_total_tokens: Optional[int]
    image: str


class ModelConfig(ModelSettings):
    name: str
    id: str
    node_group: str
    replicas: Replicas = Replicas()
    # Blue-green: each slot overrides the model's settings; the Service sends traffic to `active`.
    slots: dict[Literal[SLOTS], ModelSettings] = {}  # type: ignore[valid-type]
    active: Optional[Literal[SLOTS]] = None  # type: ignore[valid-type]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, 40)

    @model_validator(mode="after")
    def _slots(self) -> "ModelConfig":
        configured = list(self.slots) or ["blue"]
        if self.active is not None and self.active not in configured:
            raise ValueError(f"active: {self.active!r} is not a configured slot; slots: "
                             f"{', '.join(configured)}")
        if len(configured) > 1 and self.active is None:
            raise ValueError("active: required with two slots (blue or green)")
        for slot in self.resolved_slots():
            where = f"slots.{slot.slot}." if self.slots else ""
            # docs/tgi.md: "Only 1 can be set between dtype and quantize" (bitsandbytes excepted).
            if slot.dtype and slot.quantize and slot.quantize not in BITSANDBYTES:
                raise ValueError(f"{where}dtype: cannot be set together with quantize "
                                 f"{slot.quantize!r} (TGI allows dtype only with the bitsandbytes modes)")
            if slot.max_input_tokens is not None and slot.max_total_tokens is not None \
                    and slot.max_input_tokens >= slot.max_total_tokens:
                raise ValueError(f"{where}maxInputTokens: {slot.max_input_tokens} must be less than "
                                 f"maxTotalTokens ({slot.max_total_tokens})")
        return self

    def resolved_slots(self) -> list[Slot]:
        """The slots, each setting taken from the slot, else the model, else the default."""
        out = []
        for name, override in (self.slots or {"blue": ModelSettings()}).items():
            value = {f: getattr(override, f) if f in override.model_fields_set else getattr(self, f)
                     for f in ModelSettings.model_fields}
            out.append(Slot(slot=name, id=value["id"], revision=value["revision"] or "main",
                            quantize=value["quantize"], dtype=value["dtype"],
                            node_group=value["node_group"],
                            max_input_tokens=value["max_input_tokens"],
                            max_total_tokens=value["max_total_tokens"],
                            image=value["image"] or DEFAULT_TGI_IMAGE))
        return out

    @property
    def active_slot(self) -> str:
        return self.active or next(iter(self.slots), "blue")


class IngressConfig(Settings):
    """One ALB (AWS Load Balancer Controller) for every model, host `<model>.<domain>`."""

    domain: str
    certificate_arn: str
    scheme: Literal["internal", "internet-facing"] = "internal"
    allowed_cidrs: list[Cidr] = Field(min_length=1)
    # Streamed generations outlive the ALB's 60 s default idle timeout (docs/eks.md).
    idle_timeout_seconds: int = Field(600, ge=60, le=4000)
    # AWS WAFv2 rate-based rule: requests per client IP per 5 minutes; none: no WAF.
    rate_limit_per_5min: Optional[int] = Field(None, ge=10, le=2_000_000_000)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}", v):
            raise ValueError(f"{v!r} is not a DNS domain, e.g. llm.example.com")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, v: str) -> str:
        if not re.fullmatch(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+", v):
            raise ValueError(f"{v!r} is not an ACM certificate ARN "
                             "(arn:aws:acm:REGION:ACCOUNT:certificate/ID)")
        return v


class AlertThresholds(Settings):
    """When the TGI and GPU alerts fire (components/alerts.py)."""

    p95_latency_seconds: float = Field(30.0, gt=0)
    queue_size: int = Field(50, ge=1)
    failure_ratio: float = Field(0.05, gt=0, lt=1)
    time_per_token_seconds: float = Field(0.2, gt=0)
    gpu_utilization_percent: int = Field(95, ge=1, le=100)


class MonitoringConfig(Settings):
    retention: str = "15d"
    storage_gi_b: int = Field(50, ge=10, le=16384)
    # Where alerts link to: your repository's docs/runbook.md (an anchor per alert is appended).
    runbook_url: str = "docs/runbook.md"
    alerts: AlertThresholds = AlertThresholds()

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        if not re.fullmatch(r"[1-9]\d*(h|d|w|y)", v):
            raise ValueError(f"{v!r} is not a Prometheus retention such as 15d, 12h, 2w")
        return v


class AddonsConfig(Settings):
    # NVIDIA device plugin time-slicing: each GPU advertised this many times. GPUs are shared,
    # their memory is not: the planner's sizing assumes a GPU per shard.
    gpu_time_slicing_replicas: Optional[int] = Field(None, ge=2, le=48)


class StackConfig(Settings):
    cluster: ClusterConfig
    system_node_group: SystemNodeGroupConfig = SystemNodeGroupConfig()
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(min_length=1)
    storage: StorageConfig = StorageConfig()
    ingress: Optional[IngressConfig] = None
    monitoring: MonitoringConfig = MonitoringConfig()
    addons: AddonsConfig = AddonsConfig()
    models: list[ModelConfig] = []

    @property
    def bottlerocket(self) -> bool:
        return self.gpu_node_groups[0].ami_type.startswith("BOTTLEROCKET")

    @model_validator(mode="after")
    def _references(self) -> "StackConfig":
        errors = _duplicates("gpuNodeGroups", [g.name for g in self.gpu_node_groups])
        # The GPU operator is configured for the whole cluster (docs/eks.md: device plugin off
        # on Bottlerocket, which ships its own).
        for i, g in enumerate(self.gpu_node_groups):
            if g.ami_type.split("_")[0] != self.gpu_node_groups[0].ami_type.split("_")[0]:
                errors.append(f"gpuNodeGroups[{i}].amiType: {g.ami_type} mixes AMI families with "
                              f"gpuNodeGroups[0] ({self.gpu_node_groups[0].ami_type}); use one family")
        if self.addons.gpu_time_slicing_replicas and self.bottlerocket:
            errors.append("addons.gpuTimeSlicingReplicas: needs the GPU operator's device plugin, "
                          "which is off on Bottlerocket (it ships its own)")
        errors += _duplicates("models", [m.name for m in self.models])
        groups = [g.name for g in self.gpu_node_groups]
        for i, m in enumerate(self.models):
            for slot in m.resolved_slots():
                where = f"models[{i}]" + (f".slots.{slot.slot}" if m.slots else "")
                if slot.node_group not in groups:
                    errors.append(f"{where}.nodeGroup: {slot.node_group!r} is not one of "
                                  f"{', '.join(groups)} (the names of gpuNodeGroups)")
        if errors:
            raise ConfigError(errors)
        return self


def _duplicates(key: str, names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i, n in enumerate(names):
        if n in seen:
            out.append(f"{key}[{i}].name: {n!r} is used twice; names must be unique")
        seen.add(n)
    return out


class Stack(BaseModel):
    """What the program gets: the validated settings plus the secrets as Pulumi secret Outputs."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    project: str
    stack: str
    region: str
    settings: StackConfig
    hf_token: Optional[pulumi.Output] = None
    api_key: Optional[pulumi.Output] = None

    @property
    def cluster_name(self) -> str:
        return self.settings.cluster.name or f"{self.project}-{self.stack}"


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: dict, model: type[BaseModel] | None) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "literal_error":
        allowed = ctx["expected"].replace("'", "").replace(" or ", ", ")
        return f"{err['input']!r} is not one of {allowed}"
    if kind == "extra_forbidden":
        allowed = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        return "unknown setting" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return f"{err['input']!r} is not allowed: {err['msg'][0].lower()}{err['msg'][1:]}"


def _owner(loc: tuple) -> type[BaseModel] | None:
    """The model that holds the setting at loc (for listing the allowed keys)."""
    model: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        ann = field.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model


def validate_settings(raw: dict[str, Any]) -> StackConfig:
    """Validates the project's config keys (already JSON-decoded). Raises ConfigError."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path, message = _path(err["loc"]), _message(err, _owner(err["loc"]))
            # A rule across fields names the field it is about: "models[0]" + "dtype: ..."
            field = re.match(r"^([a-z][A-Za-z]*): (.*)$", message)
            if field:
                path, message = f"{path}.{field[1]}" if path else field[1], field[2]
            errors.append(f"{path}: {message}")
        raise ConfigError(errors) from None


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def project_keys(values: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The `llmserve:*` values of config in the engine's form (`ns:key` -> string); by default
    what the engine passed the program (explicit config and env)."""
    if values is None:
        from pulumi.runtime import config as rc

        values = {**rc.get_config_env(), **rc.CONFIG.get()}
    return {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")}


def settings_of(values: dict[str, Any]) -> StackConfig:
    """The validated settings of config in the engine's form, without running the program
    (secrets are not settings). Raises ConfigError."""
    raw = project_keys(values)
    return validate_settings({k: _decode(v) for k, v in raw.items() if k not in SECRET_KEYS})


def load() -> Stack:
    """Reads and validates the stack's config. Raises ConfigError before anything is built."""
    raw = project_keys()
    errors = []
    for key in SECRET_KEYS:
        value = raw.pop(key, None)
        if value is not None and (isinstance(_decode(value), (dict, list)) or not str(value).strip()):
            errors.append(f"{key}: must be a non-empty string (set it with "
                          f"`pulumi config set --secret {key}`)")
    region = pulumi.Config("aws").get("region")
    if not region:
        errors.append("aws:region: required (e.g. `pulumi config set aws:region us-east-1`)")
    try:
        settings = validate_settings({k: _decode(v) for k, v in raw.items()})
    except ConfigError as exc:
        errors += exc.errors
    if errors:
        raise ConfigError(errors)
    config = pulumi.Config(PROJECT)
    return Stack(project=pulumi.get_project(), stack=pulumi.get_stack(), region=region,
                 settings=settings, hf_token=config.get_secret("hfToken"),
                 api_key=config.get_secret("apiKey"))


def slot_request(slot: Slot, storage: StorageConfig) -> planner.Request:
    return planner.Request(quantize=slot.quantize, dtype=slot.dtype,
                           max_input_tokens=slot.max_input_tokens,
                           max_total_tokens=slot.max_total_tokens,
                           throughput_mode=storage.throughput_mode,
                           provisioned_mibps=storage.provisioned_throughput_mibps)


Plans = dict[str, dict[str, planner.Plan]]  # model name -> slot -> plan


def plan_models(settings: StackConfig, lock: Lock, stack: str) -> tuple[Plans, list[str]]:
    """Plans each model slot on the instance types of its node group. Returns the plans (fitting
    or not), and one error line per slot that is not locked or does not fit."""
    groups = {g.name: g for g in settings.gpu_node_groups}
    plans: Plans = {}
    errors = []
    for i, model in enumerate(settings.models):
        for slot in model.resolved_slots():
            where = f"models[{i}]" + (f".slots.{slot.slot}" if model.slots else "")
            entry = lock.find(slot.id, slot.revision)
            if entry is None:
                locked = [e.requested_revision or "main" for k, e in lock.models.items()
                          if k.split("@")[0] == slot.id]
                errors.append(
                    f"{where}.revision: {slot.id} at {slot.revision!r} is not in {LOCK_FILE} "
                    f"(locked: {', '.join(repr(r) for r in locked)}): run `python -m components lock "
                    f"--stack {stack}`" if locked else
                    f"{where}.id: {slot.id} is not in {LOCK_FILE}: run "
                    f"`python -m components lock --stack {stack}`")
                continue
            group = groups[slot.node_group]
            request = slot_request(slot, settings.storage)
            plan = planner.plan_node_group(slot.id, entry, group.instance_types, request)
            plans.setdefault(model.name, {})[slot.slot] = plan
            if not plan.fits:
                best = planner.cheapest(slot.id, entry, request)
                hint = (f"the cheapest catalog instance that fits: {best.instance_type} with "
                        f"{best.num_shard} shard(s), ${best.hourly_usd}/h per replica" if best
                        else "no catalog instance fits it")
                errors.append(f"{where}: {slot.id} does not fit node group {group.name} "
                              f"({plan.instance_type}, {plan.num_shard} shard(s)): {plan.reason}; {hint}")
    return plans, errors


def read_lock(path: Path) -> Lock:
    from .modellock import LockError, read

    try:
        return read(path)
    except LockError as exc:
        raise ConfigError([str(exc)]) from None


def load_plans(stack: Stack, lock: Lock) -> Plans:
    """The plan of every model slot of the stack, from the lock only (no network). Raises
    ConfigError for a model that is not locked, does not fit, or is gated without hfToken."""
    plans, errors = plan_models(stack.settings, lock, stack.stack)
    for i, model in enumerate(stack.settings.models):
        for slot in model.resolved_slots():
            entry = lock.find(slot.id, slot.revision)
            if entry is not None and entry.gated and stack.hf_token is None:
                errors.append(f"hfToken: required: models[{i}] ({slot.id}) is gated (`pulumi "
                              "config set --secret hfToken hf_...` with a token that accepted "
                              "its license)")
    if errors:
        raise ConfigError(errors)
    return plans
