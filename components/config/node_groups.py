"""`systemNodeGroup` and `gpuNodeGroups`: the managed node groups and their scaling bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .fields import INT32, GpuInstanceType, Settings, SystemInstanceType, dns_label


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
        return dns_label(v, 30)

    @field_validator("instance_types")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an instance type is listed twice")
        return v
