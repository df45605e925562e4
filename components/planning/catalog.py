"""GPU instance catalog: the facts the config and the planner need about each instance type.

Instance types, GPU counts and models, and prices: docs/eks.md ("GPU instances",
us-east-1 on-demand Linux, Karpenter pricing data of 2026-07-20). g4dn.12xlarge (4 x T4,
$3.912/h) is not in that table: its price is AWS's us-east-1 on-demand Linux list price, as
quoted alike by several public pricing tables found with the search tool (2026-11); re-check
before relying on it.

GPU memory is the total `nvidia-smi` reports, not the marketing size: T4 15360, A10G 23028, L4
23034, L40S 46068, A100 40GB 40960, A100 80GB 81920, H100 81559 MiB (all listed in
modal-labs/modal-client PR #2797; the A10G, T4 and H100 values also in
huggingface/text-generation-inference issues #2671, #1354, #2572), H200 143771 MiB (nvidia-smi
outputs found with the search tool). The planner uses the memory CUDA makes visible
(`torch.cuda.mem_get_info`'s total, which TGI and vLLM both size from), less than nvidia-smi's:
measured on an H100 80GB HBM3 (driver 580), 81079 MiB against nvidia-smi's 81559 MiB (issue #12;
vLLM's logs of an H100 in llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md
show the same, 79.18 GiB). The other GPUs are not measured here; the reserve is about the same in
size, not in proportion, where PyTorch's out-of-memory messages quote a total (T4 14.56 GiB of
15360 MiB, Zheng-Chong/CatVTON#133; L40S 44.53 GiB of 46068 MiB, Wan-Video/Wan2.1#205: 451 and 469
MiB), so they are counted with the H100's 480 MiB less. Compute capability: NVIDIA's table
(developer.nvidia.com/cuda-gpus). TGI picks flashinfer attention, which supports chunked prefill,
on compute capability 8.0 and newer, and paged attention (no chunking) below (launcher
`resolve_attention`, v3.3.7). FP8 (`QUANTIZE=fp8`) is counted only on Hopper (H100, H200): TGI
documents fp8 for H100 and newer; Ada (L4, L40S) supports FP8 in hardware but is treated as
unverified (docs/eks.md).

Memory bandwidth per GPU (GB/s, 10^9 bytes), NVIDIA's datasheet peaks (specifications on
nvidia.com/en-us/data-center/<tesla-t4|l4|l40s|a100|h100|h200>/): T4 320 (board spec: "up to 320
GBytes/s"), L4 300, L40S 864, A100 40GB SXM 1555 and A100 80GB SXM 2039 (A100 datasheet
nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf), H100 SXM 3350, H200 4800; p4d, p4de, p5 and
p5en carry the SXM parts. A10G 600: AWS's variant of the A10, same 24 GB GDDR6 at 600 GB/s
(baseten.co, "NVIDIA A10 vs A10G for ML model inference"). Decode is memory-bound: this bounds
how fast a replica generates (planner.py).

vCPUs and memory (GiB) per instance: AWS's accelerated computing instance specifications
(aws.amazon.com/ec2/instance-types, G4dn/G5/G6/G6e/P4/P5 pages); they size the TGI pods.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
H100_CUDA_MIB = 81079  # measured (issue #12): what CUDA makes visible of the H100's 81559 MiB
CUDA_RESERVE_MIB = 81559 - H100_CUDA_MIB  # assumed for the GPUs not measured


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int  # total as reported by nvidia-smi
    compute_capability: float
    fp8: bool
    memory_bandwidth_gbps: int  # peak, GB/s (datasheet)

    @property
    def cuda_memory_mib(self) -> int:
        """The total the engines size from (torch.cuda.mem_get_info), not nvidia-smi's."""
        return H100_CUDA_MIB if self.name == "H100" else self.memory_mib - CUDA_RESERVE_MIB

    @property
    def chunked_prefill(self) -> bool:
        return self.compute_capability >= 8.0


GPUS: dict[str, Gpu] = {g.name: g for g in (
    Gpu("T4", 15360, 7.5, fp8=False, memory_bandwidth_gbps=320),
    Gpu("A10G", 23028, 8.6, fp8=False, memory_bandwidth_gbps=600),
    Gpu("L4", 23034, 8.9, fp8=False, memory_bandwidth_gbps=300),
    Gpu("L40S", 46068, 8.9, fp8=False, memory_bandwidth_gbps=864),
    Gpu("A100-40GB", 40960, 8.0, fp8=False, memory_bandwidth_gbps=1555),
    Gpu("A100-80GB", 81920, 8.0, fp8=False, memory_bandwidth_gbps=2039),
    Gpu("H100", 81559, 9.0, fp8=True, memory_bandwidth_gbps=3350),
    Gpu("H200", 143771, 9.0, fp8=True, memory_bandwidth_gbps=4800),
)}


@dataclass(frozen=True)
class GpuInstance:
    instance_type: str
    gpus: int
    gpu: Gpu
    hourly_usd: float  # on-demand, us-east-1
    vcpus: int
    memory_gib: int

    @property
    def gpu_memory_bytes(self) -> int:
        return self.gpu.memory_mib * MIB

    @property
    def cuda_memory_bytes(self) -> int:
        return self.gpu.cuda_memory_mib * MIB


def _instance(instance_type: str, gpus: int, gpu: str, hourly_usd: float, vcpus: int,
              memory_gib: int) -> GpuInstance:
    return GpuInstance(instance_type, gpus, GPUS[gpu], hourly_usd, vcpus, memory_gib)


CATALOG: dict[str, GpuInstance] = {
    i.instance_type: i
    for i in (
        _instance("g4dn.xlarge", 1, "T4", 0.526, 4, 16),
        _instance("g4dn.12xlarge", 4, "T4", 3.912, 48, 192),
        _instance("g5.xlarge", 1, "A10G", 1.006, 4, 16),
        _instance("g5.2xlarge", 1, "A10G", 1.212, 8, 32),
        _instance("g5.12xlarge", 4, "A10G", 5.672, 48, 192),
        _instance("g5.48xlarge", 8, "A10G", 16.288, 192, 768),
        _instance("g6.xlarge", 1, "L4", 0.8048, 4, 16),
        _instance("g6.12xlarge", 4, "L4", 4.6016, 48, 192),
        _instance("g6e.xlarge", 1, "L40S", 1.861, 4, 32),
        _instance("g6e.12xlarge", 4, "L40S", 10.4926, 48, 384),
        _instance("p4d.24xlarge", 8, "A100-40GB", 21.9576, 96, 1152),
        _instance("p4de.24xlarge", 8, "A100-80GB", 27.4471, 96, 1152),
        _instance("p5.4xlarge", 1, "H100", 6.88, 16, 256),
        _instance("p5.48xlarge", 8, "H100", 55.04, 192, 2048),
        _instance("p5en.48xlarge", 8, "H200", 63.296, 192, 2048),
    )
}
