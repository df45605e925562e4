"""A replica's cold start, by stage (`ColdStart`, docs/cold-start.md has every number with its source and
conditions, and which are estimates): a replica on a new node waits for the node (the Cluster
Autoscaler's reaction, EC2's launch to node Ready), its GPUs (the device plugin advertises
nvidia.com/gpu), the engine's image (its compressed size over the pull rate of the registry it
comes from), then the container's own start: the process, the weights (over the rate of the
engine's loader from the model store, never above the store's ceiling) and the warmup (compile,
CUDA graphs). A node that has the image pays only the container's start, which the startup probe
covers (engines/base.py). The engine's side comes with its `MemoryModel` (`Startup`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping

from .catalog import MIB

if TYPE_CHECKING:
    from .planner import Request

# Cold start by stage (docs/cold-start.md). Node: the Cluster Autoscaler scans
# for unschedulable pods every 10 s with "no more than 30 sec latency on small clusters (less
# than 100 nodes ...)" (kubernetes/autoscaler, cluster-autoscaler/FAQ.md: its upper bound taken);
# EC2 launch to node Ready measured at 40 s on a g6e.2xlarge with the AL2023 AMI, and node Ready
# to nvidia.com/gpu advertised at 36 s with the GPU operator's device plugin on the AMI's own
# driver, as infra/addons.py runs it (awslabs/data-on-eks,
# data-stacks/ray-on-eks/examples/ray-batch-inference/README.md, "Measured cold-start timings",
# 2026-07-10: launched by Karpenter there, by the node group's Auto Scaling group here).
AUTOSCALER_SECONDS = 30
NODE_READY_SECONDS = 40
GPU_REGISTRATION_SECONDS = 36
# How long the Cluster Autoscaler waits for a node it asked for before it gives up on the group
# (`--max-node-provision-time`, default 15 min, FAQ.md): no node stage is shorter in Pulumi's wait
# (engines/base.py).
MAX_NODE_PROVISION_SECONDS = 900
# Image: kubelet's pull (download and unpack) of the image's compressed bytes. Measured from
# same-region ECR, a 9,354,342,327-byte vLLM image (AWS DLC vLLM 0.22.0, gp3 root volume at
# 1,000 MiB/s; aws-samples/karpenter-blueprints, blueprints/soci-snapshotter/README.md,
# 2026-06): 2 m 10.8 s with containerd's default pull, 39.6 s with SOCI parallel pull on AL2023
# (fastImagePull). From ghcr.io or Docker Hub through the NAT gateways nothing was measured: an
# estimate, the slow end of "pulling a 10 GB image from a registry to an instance takes 7-10
# minutes" (tensorfuse.io/docs/blogs/snapshotter_graphs), with SOCI's gain measured on ECR on top.
_ECR, _ECR_SOCI = 9_354_342_327 / 130.813, 9_354_342_327 / 39.553  # ~72 and ~237 MB/s
PULL_BYTES_PER_SECOND = {  # (through the ECR pull-through cache, SOCI parallel pull) -> bytes/s
    (True, False): _ECR, (True, True): _ECR_SOCI,
    (False, False): 10e9 / 600, (False, True): 10e9 / 600 * _ECR_SOCI / _ECR,  # ~17, ~55 MB/s
}
# Weights: the engine's loader rate (`Startup.load_mibps`), never above its store's ceiling. EFS's
# per-client read ceiling (docs/eks.md: elastic with the CSI driver's efs-proxy 1,500 MiB/s;
# provisioned 500 MiB/s, or less if provisioned lower; bursting on a small file system ~100 MiB/s).
EFS_READ_MIBPS = {"elastic": 1500, "provisioned": 500, "bursting": 100}
# Safetensors memory-mapped from EFS, as TGI's loader and vLLM's default one read them: measured
# at ~177 MiB/s per node on EFS elastic (modelplaneai/modelplane#204: 894 GiB in ~43 min on two
# p5en.48xlarge, vLLM); mmap on a network file system reads page by page (huggingface/
# safetensors#562). Far below EFS's 1,500 MiB/s per client.
MMAP_EFS_MIBPS = 175
# From the weights to listening (profile, torch.compile, CUDA graphs, warmup), vLLM without a
# compile cache: 33.8 s for an 8.0B model on an L40S (awslabs/data-on-eks data-stacks/ray-on-eks/
# examples/ray-batch-inference/README.md, 2026-07), 91.8 s for Llama-3-70B at tensor parallel 4 on
# H100s (anyscale/ray-serve-llm-perf-examples, replica_initialization/experiment_terminal_output,
# 2025-10): the line through both, 27 s + 0.93 s per billion parameters (above the 170.5 s
# measured for Qwen3-235B-A22B at 8).
VLLM_WARMUP_SECONDS, VLLM_WARMUP_SECONDS_PER_BILLION = 27, 0.93


@dataclass(frozen=True)
class Startup:
    """An engine's side of the cold start (engines/tgi.py and engines/vllm.py cite the numbers)."""

    image: str  # its pinned release, which a slot runs unless it pins another
    image_bytes: int  # that image compressed, what a pull transfers (a pinned image counts as big)
    process_seconds: int  # from the container's start to the weights: imports, CUDA, NCCL
    load_mibps: Mapping[str, int]  # model store -> the effective rate of its loader, per replica
    warmup_seconds: float  # from the weights to listening (compile, CUDA graphs): a fixed part
    warmup_seconds_per_billion: float  # and per billion parameters


@dataclass(frozen=True)
class ColdStart:
    """A replica's start by stage, in seconds (cold_start.py), and where its image and
    weights come from."""

    node_seconds: int  # the autoscaler's reaction and EC2's launch, to node Ready
    gpu_seconds: int  # node Ready to nvidia.com/gpu advertised
    image_seconds: int  # the engine's image pulled onto the node
    process_seconds: int  # the container's start to the weights
    weights_seconds: int  # the weights read from the model store
    warmup_seconds: int  # compile, CUDA graphs, warmup: until it listens
    image_from: str  # "ECR cache" or "upstream", "+SOCI" with fastImagePull
    weights_from: str  # the model store ("EFS elastic", "S3")

    @property
    def warm_node_seconds(self) -> int:
        """On a node that has the image: the container's start, what the startup probe covers."""
        return self.process_seconds + self.weights_seconds + self.warmup_seconds

    @property
    def new_node_seconds(self) -> int:
        """On a node the autoscaler adds for it: every stage."""
        return self.node_seconds + self.gpu_seconds + self.image_seconds + self.warm_node_seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "new_node_seconds": self.new_node_seconds,
                "warm_node_seconds": self.warm_node_seconds}


# The node's disk bounds the pull too: the rates above were measured writing to gp3 at 1,000
# MiB/s, and a pull writes the image unpacked, about 3 times its compressed size (vLLM's: 28.6 GB
# unpacked, vllm-project/vllm#22377, against 8.6-9.4 GB compressed). GPU groups get gp3's
# baseline 125 MiB/s, or 600 MiB/s with fastImagePull (infra/node_group.py).
GP3_BASELINE_MIBPS, FAST_PULL_DISK_MIBPS = 125, 600
UNPACKED_PER_COMPRESSED = 3


def image_pull_seconds(image_bytes: int, pull_through_cache: bool, fast_image_pull: bool) -> int:
    disk = (FAST_PULL_DISK_MIBPS if fast_image_pull else GP3_BASELINE_MIBPS) * MIB / UNPACKED_PER_COMPRESSED
    return math.ceil(image_bytes / min(PULL_BYTES_PER_SECOND[pull_through_cache, fast_image_pull], disk))


def load_mibps(req: Request, startup: Startup) -> int:
    """The engine's loader from the request's store, at most the store's ceiling (EFS's per
    client). A store the engine cannot load from is refused by the rules; its plan counts the
    engine's slowest loader."""
    rate = startup.load_mibps.get(req.model_store, min(startup.load_mibps.values()))
    if req.model_store == "efs":
        ceiling = EFS_READ_MIBPS[req.throughput_mode]
        if req.throughput_mode == "provisioned" and req.provisioned_mibps:
            ceiling = min(ceiling, req.provisioned_mibps)
        rate = min(rate, ceiling)
    return rate


def cold_start(stored_bytes: int, parameters: int, req: Request, startup: Startup) -> ColdStart:
    """The stages of a replica's start (cold_start.py) for weights of this size as stored."""
    store = f"EFS {req.throughput_mode}" if req.model_store == "efs" else req.model_store.upper()
    return ColdStart(
        node_seconds=AUTOSCALER_SECONDS + NODE_READY_SECONDS, gpu_seconds=GPU_REGISTRATION_SECONDS,
        image_seconds=image_pull_seconds(startup.image_bytes, req.pull_through_cache, req.fast_image_pull),
        process_seconds=startup.process_seconds,
        weights_seconds=math.ceil(stored_bytes / (load_mibps(req, startup) * MIB)),
        warmup_seconds=math.ceil(startup.warmup_seconds + startup.warmup_seconds_per_billion * parameters / 1e9),
        image_from=("ECR cache" if req.pull_through_cache else "upstream") + ("+SOCI" if req.fast_image_pull else ""),
        weights_from=store)
