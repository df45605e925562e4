"""The whole stack file: its sections, the rules across them, and what the program gets (`Stack`)."""

from __future__ import annotations

from typing import Optional

import pulumi
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .addons import AddonsConfig
from .cluster import (AUTONAME, CLUSTER_AND_GROUP_MAX, CLUSTER_NAME_MAX, NODE_GROUP_NAME_MAX,
                      WHY_CLUSTER_NAME, ClusterConfig)
from .errors import ConfigError
from .fields import Settings, Vocabulary, dns_label
from .gateway import GatewayConfig
from .images import PREFIX_MAX, UPSTREAMS, ImagesConfig
from .ingress import IngressConfig
from .models import SLOTS, STORE_WRITER, ModelConfig
from .monitoring import MonitoringConfig
from .node_groups import GpuNodeGroupConfig, SystemNodeGroupConfig, release_kubernetes_version
from .storage import StorageConfig


class StackConfig(Settings):
    cluster: ClusterConfig
    system_node_group: SystemNodeGroupConfig = SystemNodeGroupConfig()
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(min_length=1)
    storage: StorageConfig = StorageConfig()
    ingress: Optional[IngressConfig] = None
    gateway: Optional[GatewayConfig] = None
    monitoring: MonitoringConfig = MonitoringConfig()
    addons: AddonsConfig = AddonsConfig()
    images: ImagesConfig = ImagesConfig()
    models: list[ModelConfig] = []

    @property
    def exposed(self) -> bool:
        """The models are behind a load balancer: the ingress or the gateway."""
        return self.ingress is not None or self.gateway is not None

    @property
    def bottlerocket(self) -> bool:
        return self.gpu_node_groups[0].ami_type.startswith("BOTTLEROCKET")

    def _node_groups(self) -> list[tuple[str, SystemNodeGroupConfig | GpuNodeGroupConfig]]:
        return [("systemNodeGroup", self.system_node_group),
                *((f"gpuNodeGroups[{i}]", g) for i, g in enumerate(self.gpu_node_groups))]

    @property
    def warnings(self) -> list[str]:
        """What is allowed but worth saying on every run (the program logs them)."""
        return [f"{where}.releaseVersion: unset: its nodes stay on the AMI they were created with "
                "(no security fixes) until kubernetesVersion changes; pin a release version to "
                "roll them when you choose (docs/upgrade.md)"
                for where, group in self._node_groups() if group.release_version is None] + [
            f"models[{i}]: every slot runs on a CAPACITY_BLOCK node group ({', '.join(sorted(on))}): "
            "the model loses its capacity when the block ends (EKS scales the group to 0 forty "
            "minutes before; docs/capacity.md)"
            for i, m in enumerate(self.models)
            if (on := {s.node_group for s in m.resolved_slots()})
            <= {g.name for g in self.gpu_node_groups if g.capacity_type == "CAPACITY_BLOCK"}]

    def model_tag(self, group: str) -> dict[str, str]:
        """The `model` cost tag of a GPU group's instances and volumes: the models whose slots
        run there, sorted, joined by `+` (EC2 tag values allow letters, digits, spaces and
        `+ - = . _ : / @`, https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html
        #tag-restrictions)."""
        names = sorted({m.name for m in self.models for s in m.resolved_slots() if s.node_group == group})
        value = "+".join(names)
        # A tag value holds at most 256 characters (same page): too many models share the group.
        return {"model": value if len(value) <= 256 else f"shared by {len(names)} models"} if names else {}

    def engine_images(self, vocabulary: Vocabulary) -> list[str]:
        """Every image the models run: each slot's (its engine's default unless pinned), and the
        download Jobs' (the default engine's image, or a model's own on that engine)."""
        images = {s.image or vocabulary.engines[s.engine].default_image
                  for m in self.models for s in m.resolved_slots()}
        return sorted(images | ({vocabulary.default_image} if self.models else set()))

    @model_validator(mode="after")
    def _references(self) -> "StackConfig":
        errors = _duplicates("gpuNodeGroups", [g.name for g in self.gpu_node_groups])
        version = self.cluster.kubernetes_version
        for where, group in self._node_groups():
            built_for = group.release_version and release_kubernetes_version(group.release_version)
            if built_for and built_for != version:
                errors.append(f"{where}.releaseVersion: {group.release_version!r} is an AMI for "
                              f"Kubernetes {built_for}, but cluster.kubernetesVersion is {version}: "
                              f"use a {version}.<patch>-<date> release (docs/upgrade.md)")
        # The GPU operator is configured for the whole cluster (docs/eks.md: device plugin off
        # on Bottlerocket, which ships its own).
        for i, g in enumerate(self.gpu_node_groups):
            if g.ami_type.split("_")[0] != self.gpu_node_groups[0].ami_type.split("_")[0]:
                errors.append(f"gpuNodeGroups[{i}].amiType: {g.ami_type} mixes AMI families with "
                              f"gpuNodeGroups[0] ({self.gpu_node_groups[0].ami_type}); use one family")
        if self.addons.gpu_time_slicing_replicas and self.models:
            # TGI sizes its KV cache at warmup from the GPU's free memory minus (1 -
            # CUDA_MEMORY_FRACTION) x its total (text-generation-inference v3.3.7
            # server/text_generation_server/utils/import_utils.py; mem_get_info is device-wide):
            # the second pod on a time-sliced GPU finds no memory left and refuses to start.
            errors.append("addons.gpuTimeSlicingReplicas: TGI cannot share a GPU between pods (the "
                          "first pod's KV cache takes the memory the next one needs): give each "
                          "replica whole GPUs, or unset it")
        if self.addons.gpu_time_slicing_replicas and self.bottlerocket:
            errors.append("addons.gpuTimeSlicingReplicas: needs the GPU operator's device plugin, "
                          "which is off on Bottlerocket (it ships its own)")
        if self.monitoring.runbook_base_url is None:
            errors.append("monitoring.runbookBaseUrl: required: the absolute https URL of your "
                          "copy of docs/runbook.md, where every alert links (e.g. https://github.com/"
                          "acme/llmserve/blob/main/docs/runbook.md)")
        if self.monitoring.alerting is None:
            errors.append("monitoring.alerting: required: where Alertmanager sends each severity, "
                          "e.g. {critical: pagerduty, warning: slack, heartbeat: true}, or "
                          "{critical: none, warning: none, heartbeat: false} to page nobody")
        vpc = self.cluster.vpc
        # The load balancer sits in known subnets, whose addresses alone the pods behind it admit.
        for key, front in (("ingress", self.ingress), ("gateway", self.gateway)):
            if front and front.scheme == "internet-facing" and vpc.id and not vpc.public_subnet_ids:
                errors.append(f"{key}.scheme: an internet-facing load balancer needs public subnets: "
                              "set cluster.vpc.publicSubnetIds of the existing VPC, or use internal")
            if front and front.scheme == "internal" and vpc.id and not vpc.load_balancer_subnet_ids:
                errors.append(f"cluster.vpc.loadBalancerSubnetIds: required with an internal {key} on "
                              "an existing VPC: small subnets (/27 or larger, one per AZ) for the load "
                              f"balancers only; the {'serving' if key == 'ingress' else 'gateway'} pods "
                              "admit their addresses")
        errors += _duplicates("models", [m.name for m in self.models])
        # Each slot of a model has a Service `<model>-<slot>` (serving/exposure.py), and a model
        # on S3 a ServiceAccount `<model>-writer` (its download Jobs'), beside the model's own
        # `<model>`: no model may be named like another's.
        names = {m.name for m in self.models}
        owned = {**{slot: f"the Service of its {slot} slot" for slot in SLOTS},
                 STORE_WRITER: "the ServiceAccount of its S3 download Jobs"}
        for i, m in enumerate(self.models):
            for suffix, what in owned.items():
                if f"{m.name}-{suffix}" in names:
                    errors.append(f"models[{i}].name: {what} is named {m.name}-{suffix}, as the model "
                                  f"{m.name}-{suffix} is: rename one")
        if self.gateway is not None and self.ingress is not None:
            errors.append("ingress: not with gateway: the gateway is every model's one endpoint and "
                          "replaces the per-model Ingress (docs/gateway.md); remove ingress")
        if self.gateway and self.gateway.allowed_cidrs is None and vpc.id:
            errors.append("gateway.allowedCidrs: required on an existing VPC (cluster.vpc.id): the "
                          "networks of the gateway's clients (a new VPC defaults to its own CIDR)")
        names_list = [m.name for m in self.models]
        for i, team in enumerate(self.gateway.teams if self.gateway else []):
            for model in team.models or []:
                if model not in names_list:
                    errors.append(f"gateway.teams[{i}].models: {model!r} is not a model of the stack "
                                  f"({', '.join(names_list) or 'none'})")
        for i, m in enumerate(self.models):
            if self.exposed and m.replicas.min < 2 and m.evictions == "allow":
                # One replica and evictions allowed: every node roll, auto-repair or drain takes
                # the model down for a cold start (minutes).
                errors.append(f"models[{i}].replicas.min: {m.replicas.min} replica of a model behind "
                              "the ingress or gateway goes down on every node roll, drain or repair: set min to 2 "
                              "or more, or evictions: block (node rolls then wait until you move "
                              "the model with blue-green)")
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
    default_tags: dict[str, str] = {}  # aws:defaultTags.tags
    alerting_secrets: dict[str, pulumi.Output] = {}  # by stack setting (config/monitoring.py)
    registry_secrets: dict[str, pulumi.Output] = {}  # the cache's access tokens (config/images.py)
    team_keys: dict[str, pulumi.Output] = {}  # the gateway's keys set in config, by team (the rest generated)

    @property
    def cluster_name(self) -> str:
        return cluster_name(self.settings, self.project, self.stack)

    @property
    def cost_tags(self) -> dict[str, str]:
        """The tags AWS bills by, for what the provider's default tags do not reach: launch
        template tag specifications (instances, volumes), CSI-made volumes and controller-made
        load balancers. The stack's aws:defaultTags, with project and environment defaulting to
        the Pulumi project and stack."""
        return {"project": self.project, "environment": self.stack, **self.default_tags}


def cluster_name(settings: StackConfig, project: str, stack: str) -> str:
    return settings.cluster.name or f"{project}-{stack}"


def name_limits(settings: StackConfig, project: str, stack: str) -> list[str]:
    """Errors for names that would exceed what AWS allows (components/config/cluster.py)."""
    name = cluster_name(settings, project, stack)
    if settings.cluster.name is None:
        try:
            dns_label(name, CLUSTER_NAME_MAX, WHY_CLUSTER_NAME)
        except ValueError as exc:
            return [f"cluster.name: the default, {project}-<stack>, is {exc}: set cluster.name"]
    errors = []
    longest = max(len(u.prefix) for u in UPSTREAMS.values())
    if settings.images.pull_through_cache and len(name) + 1 + longest > PREFIX_MAX:
        errors.append(f"cluster.name: {name!r} is too long for images.pullThroughCache: the cache's "
                      f"repositories are named <cluster>/<registry>/..., and ECR allows {PREFIX_MAX} "
                      f"characters before the registry's path (at most {PREFIX_MAX - 1 - longest} "
                      "for the cluster's name): set a shorter cluster.name")
    for i, group in enumerate(settings.gpu_node_groups):
        if len(name) + len(group.name) > CLUSTER_AND_GROUP_MAX:
            errors.append(f"gpuNodeGroups[{i}].name: {group.name!r} with the cluster name {name!r} "
                          f"names the EKS node group {name}-{group.name}-ng-xxxxxxx, "
                          f"{len(name) + len(group.name) + AUTONAME + 4} characters; EKS allows "
                          f"{NODE_GROUP_NAME_MAX}: shorten it or cluster.name (together at most "
                          f"{CLUSTER_AND_GROUP_MAX})")
    return errors
