"""`systemNodeGroup` and `gpuNodeGroups`: the managed node groups and their scaling bounds."""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .fields import INT32, GpuInstanceType, Settings, SystemInstanceType, dns_label

# AMI release versions of EKS managed node groups (CreateNodegroup `releaseVersion`). AL2023:
# <Kubernetes major.minor.patch>-<build date>, e.g. 1.36.2-20260818 (awslabs/amazon-eks-ami
# release v20260818; https://docs.aws.amazon.com/eks/latest/userguide/eks-linux-ami-versions.html).
# Bottlerocket: <Bottlerocket version>-<commit>, e.g. 1.34.0-18d04e52, which does not name the
# Kubernetes version (the SSM parameter `/aws/service/bottlerocket/aws-k8s-<k8s>-nvidia/x86_64/
# latest/image_version`; github.com/cloudposse/terraform-aws-eks-node-group/issues/209,
# github.com/hashicorp/terraform-provider-aws/pull/40903).
AL2023_RELEASE = re.compile(r"^(\d+\.\d+)\.\d+-\d{8}$")
BOTTLEROCKET_RELEASE = re.compile(r"^\d+\.\d+\.\d+-[0-9a-f]{8}$")
LATEST_RELEASE = {  # docs/upgrade.md, "Finding versions"
    "AL2023_x86_64_STANDARD": "/aws/service/eks/optimized-ami/<k8s>/amazon-linux-2023/x86_64/standard/recommended/release_version",
    "AL2023_x86_64_NVIDIA": "/aws/service/eks/optimized-ami/<k8s>/amazon-linux-2023/x86_64/nvidia/recommended/release_version",
    "BOTTLEROCKET_x86_64_NVIDIA": "/aws/service/bottlerocket/aws-k8s-<k8s>-nvidia/x86_64/latest/image_version",
}


def release_version(value: Optional[str], ami_type: str) -> Optional[str]:
    """The AMI release version, checked against the format of its AMI family."""
    if value is None:
        return value
    bottlerocket = ami_type.startswith("BOTTLEROCKET")
    if not (BOTTLEROCKET_RELEASE if bottlerocket else AL2023_RELEASE).match(value):
        example = "1.34.0-18d04e52" if bottlerocket else "1.35.3-20260415"
        raise ValueError(f"{value!r} is not an {ami_type} release version (e.g. {example}; "
                         f"`aws ssm get-parameter --name {LATEST_RELEASE[ami_type]}` gives the latest)")
    return value


def release_kubernetes_version(value: str) -> Optional[str]:
    """The Kubernetes minor an AL2023 release version is built for (Bottlerocket's do not say)."""
    match = AL2023_RELEASE.match(value)
    return match.group(1) if match else None


class ScalingBounds(Settings):
    min_size: int = Field(ge=0, le=INT32)
    max_size: int = Field(ge=1, le=INT32)
    desired_size: int = Field(ge=0, le=INT32)

    @model_validator(mode="after")
    def _bounds(self) -> "ScalingBounds":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"desiredSize: {self.desired_size} must be between minSize "
                             f"({self.min_size}) and maxSize ({self.max_size})")
        return self


class SystemNodeGroupConfig(ScalingBounds):
    """Small on-demand nodes for controllers (CoreDNS, load balancer controller, Prometheus)."""

    instance_types: list[SystemInstanceType] = Field(["m7i.large"], min_length=1)
    min_size: int = Field(2, ge=1, le=INT32)
    max_size: int = Field(3, ge=1, le=INT32)
    desired_size: int = Field(2, ge=1, le=INT32)
    # The download Jobs pull the TGI image (several GB) onto these nodes too.
    disk_size_gi_b: int = Field(100, ge=20, le=16384)
    # Unset: the nodes keep the AMI they were created with until kubernetesVersion changes.
    release_version: Optional[str] = None

    @field_validator("release_version")
    @classmethod
    def _release(cls, v: Optional[str]) -> Optional[str]:
        return release_version(v, "AL2023_x86_64_STANDARD")


class GpuNodeGroupConfig(ScalingBounds):
    name: str
    instance_types: list[GpuInstanceType] = Field(min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    # The TGI image is several GB compressed: 100 GiB or more of root volume (docs/eks.md).
    disk_size_gi_b: int = Field(200, ge=100, le=16384)
    # x86 only: every GPU instance of the catalog is x86; AL2_x86_64_GPU is end of life.
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    release_version: Optional[str] = None  # as in SystemNodeGroupConfig
    # SOCI parallel pull and unpack of images (AL2023: nodeadm's FastImagePull feature gate;
    # Bottlerocket: the soci snapshotter), docs/capacity.md.
    fast_image_pull: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "system":
            raise ValueError("'system' is the name of the system node group; choose another")
        return dns_label(v, 30)

    @field_validator("instance_types")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an instance type is listed twice")
        return v

    @model_validator(mode="after")
    def _release(self) -> "GpuNodeGroupConfig":
        try:
            release_version(self.release_version, self.ami_type)
        except ValueError as exc:
            raise ValueError(f"releaseVersion: {exc}") from None
        return self
