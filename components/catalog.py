"""GPU instance catalog: the facts the config and the planner need about each instance type.

Source: ../shared/reference/eks.md ("GPU instances", us-east-1 on-demand Linux prices from the
Karpenter pricing data of 2026-07-20). g4dn.12xlarge (4 x T4, $3.912/h) is not in that table: its
price is AWS's us-east-1 on-demand Linux list price, as quoted alike by several public pricing
tables found with the search tool (2026-11); re-check before relying on it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstance:
    instance_type: str
    gpus: int
    gpu_model: str
    gpu_memory_gb: int  # per GPU, as sold (GB)
    hourly_usd: float  # on-demand, us-east-1


CATALOG: dict[str, GpuInstance] = {
    i.instance_type: i
    for i in (
        GpuInstance("g4dn.xlarge", 1, "T4", 16, 0.526),
        GpuInstance("g4dn.12xlarge", 4, "T4", 16, 3.912),
        GpuInstance("g5.xlarge", 1, "A10G", 24, 1.006),
        GpuInstance("g5.2xlarge", 1, "A10G", 24, 1.212),
        GpuInstance("g5.12xlarge", 4, "A10G", 24, 5.672),
        GpuInstance("g5.48xlarge", 8, "A10G", 24, 16.288),
        GpuInstance("g6.xlarge", 1, "L4", 24, 0.8048),
        GpuInstance("g6.12xlarge", 4, "L4", 24, 4.6016),
        GpuInstance("g6e.xlarge", 1, "L40S", 48, 1.861),
        GpuInstance("g6e.12xlarge", 4, "L40S", 48, 10.4926),
        GpuInstance("p4d.24xlarge", 8, "A100", 40, 21.9576),
        GpuInstance("p4de.24xlarge", 8, "A100", 80, 27.4471),
        GpuInstance("p5.4xlarge", 1, "H100", 80, 6.88),
        GpuInstance("p5.48xlarge", 8, "H100", 80, 55.04),
        GpuInstance("p5en.48xlarge", 8, "H200", 141, 63.296),
    )
}
