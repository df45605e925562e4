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


# The system node group's name (its label value, `llmserve/node-group`): no GPU group may take it.
SYSTEM_GROUP = "system"

# EC2 Capacity Blocks for ML and On-Demand Capacity Reservations (docs/capacity.md).
RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{17}$")
# The Resource Groups API's GroupArn pattern, a group name of letters, digits and `_ . -`
# (https://docs.aws.amazon.com/ARG/latest/APIReference/API_Group.html).
RESOURCE_GROUP_ARN = re.compile(r"^arn:aws(-[a-z]+)*:resource-groups:[a-z]{2}(-[a-z]+)+-\d{1,2}:\d{12}:"
                                r"group/[A-Za-z0-9_.-]{1,300}$")
AVAILABILITY_ZONE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}[a-z]$")  # us-east-1a
SNAPSHOT_ID = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")  # old ids 8 digits, new 17
# The catalog's instance types that EC2 offers as Capacity Blocks for ML (p5e.48xlarge and the
# trn types are offered too, but are not in the catalog): https://docs.aws.amazon.com/AWSEC2/
# latest/UserGuide/ec2-capacity-blocks.html; `aws ec2 describe-capacity-block-offerings` tells
# what a region has.
CAPACITY_BLOCK_TYPES = ("p4d.24xlarge", "p5.48xlarge", "p5en.48xlarge")


class CapacityReservationConfig(Settings):
    """The reserved capacity a GPU group launches into: one reservation (an On-Demand Capacity
    Reservation or a Capacity Block) by its id, or a resource group of reservations."""

    id: Optional[str] = None
    resource_group_arn: Optional[str] = None
    availability_zone: Optional[str] = None  # the group's subnets: only this AZ's
    # True: fail to launch rather than run outside the reservation (launch template preference
    # `capacity-reservations-only`). A Capacity Block launches only in its block anyway.
    reserved_only: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not RESERVATION_ID.match(v):
            raise ValueError(f"{v!r} is not a capacity reservation id (cr- and 17 hexadecimal digits)")
        return v

    @field_validator("resource_group_arn")
    @classmethod
    def _group(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not RESOURCE_GROUP_ARN.match(v):
            raise ValueError(f"{v!r} is not a resource group ARN (arn:aws:resource-groups:<region>:"
                             "<account>:group/<name>)")
        return v

    @field_validator("availability_zone")
    @classmethod
    def _zone(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not AVAILABILITY_ZONE.match(v):
            raise ValueError(f"{v!r} is not an availability zone name, e.g. us-east-1a")
        return v

    @model_validator(mode="after")
    def _target(self) -> "CapacityReservationConfig":
        if (self.id is None) == (self.resource_group_arn is None):
            raise ValueError("id: set exactly one of id (a reservation, cr-...) and resourceGroupArn "
                             "(a resource group of reservations)")
        if self.id and self.availability_zone is None:
            raise ValueError("availabilityZone: required with id: a reservation is in one AZ (`aws ec2 "
                             "describe-capacity-reservations --capacity-reservation-ids <id>` shows it)")
        return self


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
    capacity_type: Literal["ON_DEMAND", "SPOT", "CAPACITY_BLOCK"] = "ON_DEMAND"
    capacity_reservation: Optional[CapacityReservationConfig] = None
    # The TGI image is several GB compressed: 100 GiB or more of root volume (docs/eks.md).
    disk_size_gi_b: int = Field(200, ge=100, le=16384)
    # x86 only: every GPU instance of the catalog is x86; AL2_x86_64_GPU is end of life.
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    release_version: Optional[str] = None  # as in SystemNodeGroupConfig
    # SOCI parallel pull and unpack of images (AL2023: nodeadm's FastImagePull feature gate;
    # Bottlerocket: the soci snapshotter), docs/capacity.md.
    fast_image_pull: bool = False
    # Bottlerocket only: an EBS snapshot of a data volume that holds the engine images already
    # pulled (scripts/build-image-cache-snapshot.sh), restored as each node's /dev/xvdb.
    data_volume_snapshot_id: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == SYSTEM_GROUP:
            raise ValueError(f"'{SYSTEM_GROUP}' is the name of the system node group; choose another")
        return dns_label(v, 30)

    @field_validator("instance_types")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an instance type is listed twice")
        return v

    @field_validator("data_volume_snapshot_id")
    @classmethod
    def _snapshot(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not SNAPSHOT_ID.match(v):
            raise ValueError(f"{v!r} is not an EBS snapshot id (snap- and 8 or 17 hexadecimal digits)")
        return v

    @model_validator(mode="after")
    def _capacity(self) -> "GpuNodeGroupConfig":
        reservation, types = self.capacity_reservation, self.instance_types
        if reservation and self.capacity_type == "SPOT":
            raise ValueError("capacityReservation: reservations hold On-Demand capacity: not with "
                             "capacityType SPOT (use ON_DEMAND, or CAPACITY_BLOCK for a Capacity Block)")
        if self.capacity_type == "CAPACITY_BLOCK":
            if not (reservation and reservation.id):
                raise ValueError("capacityReservation.id: required with capacityType CAPACITY_BLOCK: "
                                 "the Capacity Block's reservation id (cr-...) and its availabilityZone")
            if len(types) != 1 or types[0] not in CAPACITY_BLOCK_TYPES:
                raise ValueError(f"instanceTypes: {types} with capacityType CAPACITY_BLOCK: list exactly "
                                 f"the Capacity Block's one instance type, one of {', '.join(CAPACITY_BLOCK_TYPES)}")
            if self.min_size != 0:
                raise ValueError(f"minSize: {self.min_size} with capacityType CAPACITY_BLOCK: must be 0 "
                                 "(EKS scales the group to 0 forty minutes before the block ends)")
        elif reservation and reservation.id and len(types) != 1:
            raise ValueError(f"instanceTypes: {types} with capacityReservation.id: a reservation is "
                             "for one instance type: list exactly that one")
        return self

    @model_validator(mode="after")
    def _data_volume(self) -> "GpuNodeGroupConfig":
        if self.data_volume_snapshot_id and not self.ami_type.startswith("BOTTLEROCKET"):
            raise ValueError(f"dataVolumeSnapshotId: a Bottlerocket data volume: needs amiType "
                             f"BOTTLEROCKET_x86_64_NVIDIA, not {self.ami_type}")
        if self.data_volume_snapshot_id and self.fast_image_pull:
            # "When a change in the selected snapshotter is detected across boots, Bottlerocket will
            # remove containers and existing images" (https://bottlerocket.dev/en/os/1.52.x/api/
            # settings/container-runtime/, snapshotter).
            raise ValueError("fastImagePull: not with dataVolumeSnapshotId: Bottlerocket's soci "
                             "snapshotter removes the images the snapshot holds (they were pulled with "
                             "overlayfs); choose one")
        return self

    @model_validator(mode="after")
    def _release(self) -> "GpuNodeGroupConfig":
        try:
            release_version(self.release_version, self.ami_type)
        except ValueError as exc:
            raise ValueError(f"releaseVersion: {exc}") from None
        return self
