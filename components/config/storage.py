"""`storage`: the EFS model cache."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .fields import Settings


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
