"""vLLM: the container's facts, the workload decisions derived from a plan and vLLM's memory model
for the planner, as `ENGINE` (engines/base.py). Pure functions, no Pulumi.

Facts: docs/vllm.md and vllm-project/vllm@v0.33.0 (paths below are in that repository).

Container (docker/Dockerfile): the image's entrypoint is `vllm serve`, so the pod gives arguments
only, the model first. It has no USER (root), but a `vllm` user, UID 2000 in group 0 with home
/home/vllm, which docs/deployment/docker.md documents (`--user 2000:0`): the pod runs as it, with
a read-only root filesystem and emptyDirs for /tmp (IPC sockets, compiler caches) and the home
($HOME/.cache/vllm: torch.compile and CUDA graph caches; Triton and FlashInfer caches). The model
cache is read through the EFS access point, whose POSIX user owns it whatever the pod's UID
(infra/model_cache.py).

Flags (vllm/engine/arg_utils.py, vllm/config/, vllm/entrypoints/common/cli_args.py): no
environment-to-flag mapping as TGI has; everything the plan decides is a flag.
`--tensor-parallel-size` = the GPUs requested, `--max-model-len` = the plan's maxTotalTokens,
`--gpu-memory-utilization` set to the planner's fraction, `--max-num-batched-tokens` and
`--max-num-seqs` to what vLLM picks by GPU memory (written out so the plan and the pod agree),
`--quantization` only when the slot asks (a pre-quantized checkpoint's method is read from its
config.json, and another value is an error: vllm/model_executor/layers/quantization/),
`--dtype` when set.

Offline from the shared cache (vllm/transformers_utils/repo_utils.py): with HF_HUB_OFFLINE=1 the
model id is replaced by its snapshot in huggingface_hub's cache (HF_HUB_CACHE, where the download
Job wrote it), at `--revision` (the locked commit). The metric label `model_name` is then the first
`--served-model-name`: the model's name, then its repo id (clients may send either as `model`).

API key (vllm/entrypoints/serve/middleware/): `VLLM_API_KEY` from the environment, the same Secret
TGI reads; a flag would put it on the process's command line. Only /v1 (and /v2, /inference,
/cohere) need it: /invocations, /pooling, /score, /rerank, /classify and /tokenize answer without
a key (docs/usage/security.md), so the Ingress exposes /v1 and /health only. Startup logs its
non-default arguments (vllm/entrypoints/common/startup.py); the key is not among them.

Shutdown (vllm/v1/engine/core.py): on SIGTERM with `--shutdown-timeout N` vLLM rejects new
requests and drains for up to N s (0, the default, aborts at once): N = the plan's generation cap,
as TGI's GRACEFUL_TERMINATION_TIMEOUT. Usage statistics are sent by default; VLLM_NO_USAGE_STATS=1
stops them (vllm/usage/usage_lib.py). A Service named `vllm` in the namespace would inject
VLLM_PORT=tcp://... into the pod, which vLLM refuses (vllm/envs.py): the pod takes no service links.

Memory (vllm/v1/worker/gpu_worker.py, vllm/utils/mem_utils.py, vllm/v1/core/kv_cache_planning.py):
the budget is gpu_memory_utilization x the CUDA-visible total; from it vLLM subtracts what its
profile run used since its snapshot (taken after NCCL and cuBLAS are set up): the weights, the
non-torch memory allocated since, the activation peak of a dummy
batch of max_num_batched_tokens, which includes a sampling warmup over max_num_seqs sequences, and
an estimate of the CUDA graphs; the rest is KV cache, and startup fails when it cannot hold one
sequence of max_model_len. Unset, max_model_len is the model's context. Tensor parallelism: the
attention heads divide by it; KV heads are split, or replicated when fewer than the shards, which
must then be a multiple of them (vllm/config/model.py, model_executor/layers/linear.py).
"""

from __future__ import annotations

import json
from typing import Optional

from ..config import Slot
from ..config.ingress import IDLE_TIMEOUT_MAX_SECONDS
from ..planning.catalog import GpuInstance
from ..planning.lock import LockEntry
from ..planning.cold_start import MMAP_EFS_MIBPS, VLLM_WARMUP_SECONDS, VLLM_WARMUP_SECONDS_PER_BILLION, Startup
from ..planning.planner import GIB, MemoryModel, Plan, Request
from .base import (DOWNLOAD_PATTERNS, MODEL_URI_ENV, SKIPPED_PATTERNS, Engine, drain_seconds,
                   startup_seconds)

DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"  # docker/Dockerfile at the tag; never `latest`
HTTP_PORT = 8000  # `--port` default; /metrics is served on it too
HOME = "/home/vllm"  # the image's vllm user
USER, GROUP = 2000, 0
CACHE_PATH = "/data"  # the model cache volume, as for TGI (the download Job's layout)
HUB_CACHE = f"{CACHE_PATH}/hub"
PUBLIC_ROUTES = (("/v1", "Prefix"), ("/health", "Exact"))
GPU_MEMORY_UTILIZATION = 0.92  # vLLM's default, set explicitly

# The port listens only once weights, profile, KV cache, compile and graphs are done, then
# /health answers 200, or 503 when the engine died (vllm/entrypoints/launchers/); the first start
# compiles (torch.compile) and captures CUDA graphs (docs/configuration/optimization.md): the
# startup probe waits longer than for TGI.
MIN_STARTUP_SECONDS = 600

# The cold start's vLLM side (planning/cold_start.py `Startup`, docs/cold-start.md):
# - the image compressed: 10 GB, an estimate (the tag's registry size was not found). Compressed
#   sizes of its kin: 8.6 GB for a v0.32-era derivative on Docker Hub (hub.docker.com/r/m11s/
#   vllm-openai), 9.35 GB for AWS's vLLM 0.22 image (aws-samples/karpenter-blueprints,
#   blueprints/soci-snapshotter/README.md); 28.6 GB unpacked (vllm-project/vllm#22377).
IMAGE_BYTES = 10 * 10**9
# - the process until it reads weights: 36 s, measured as "Replica init -> vLLM engine start
#   (tokenizer fetch, platform setup)" on a g6e.2xlarge (awslabs/data-on-eks,
#   data-stacks/ray-on-eks/examples/ray-batch-inference/README.md, 2026-07; vLLM 0.22 in Ray Serve).
PROCESS_START_SECONDS = 36
# - the weights: from EFS with the default loader (safetensors memory-mapped,
#   cold_start.MMAP_EFS_MIBPS); from S3 with the Run:ai model streamer 860 MiB/s per single-GPU pod at concurrency 32 (15 GiB
#   in 17.8 s on a g6e.2xlarge, same-region S3, data-on-eks as above). Tensor-parallel ranks
#   stream faster together (1.2-1.4 GiB/s each, anyscale/ray-serve-llm-perf-examples): 860 is
#   the replica's floor.
LOAD_MIBPS = {"efs": MMAP_EFS_MIBPS, "s3": 860}
# - from the weights to listening (profile, torch.compile, CUDA graphs, warmup): measured
#   (cold_start.VLLM_WARMUP_SECONDS and _PER_BILLION).
WARMUP_SECONDS, WARMUP_SECONDS_PER_BILLION = VLLM_WARMUP_SECONDS, VLLM_WARMUP_SECONDS_PER_BILLION
STARTUP = Startup(image=DEFAULT_IMAGE, image_bytes=IMAGE_BYTES, process_seconds=PROCESS_START_SECONDS,
                  load_mibps=LOAD_MIBPS, warmup_seconds=WARMUP_SECONDS,
                  warmup_seconds_per_billion=WARMUP_SECONDS_PER_BILLION)

# vLLM's serve defaults by GPU memory (vllm/engine/arg_utils.py): below 70 GiB, or an A100, 2048
# batched tokens and 256 sequences; from 70 GiB 8192 and 1024; from 160 GiB 16384 and 1024.
QUANTIZE = ("awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors",
            "fp8_per_tensor", "fp8_per_channel", "fp8_per_block")
PREQUANTIZED = {  # --quantization -> checkpoint quantization methods it loads
    "awq": frozenset({"awq"}), "awq_marlin": frozenset({"awq"}), "gptq": frozenset({"gptq"}),
    "gptq_marlin": frozenset({"gptq"}), "compressed-tensors": frozenset({"compressed-tensors"}),
}
# From 16-bit weights at load (docs/features/quantization/online.md): FP8 GEMMs from compute
# capability 8.9 (L4, L40S, H100), below that weight-only on the FP8 Marlin kernel, from 7.5
# (model_executor/kernels/linear/scaled_mm/marlin.py); plain `fp8` is deprecated for this.
ON_THE_FLY_BITS = {"fp8_per_tensor": 8, "fp8_per_channel": 8, "fp8_per_block": 8}
FP8_MIN_COMPUTE_CAPABILITY = {"fp8_per_tensor": 7.5, "fp8_per_block": 7.5,
                              # per-channel (PTPC) has no Marlin path: SM89+
                              # (model_executor/layers/quantization/online/fp8.py)
                              "fp8_per_channel": 8.9}
BF16_MIN_COMPUTE_CAPABILITY = 8.0  # vllm/platforms/cuda.py, check_if_supports_dtype
# What `quantization_config` methods it serves with --quantization unset (bitsandbytes and GGUF
# left the tree for plugins the image does not have).
LOADS = frozenset({"awq", "gptq", "fp8", "compressed-tensors", "modelopt", "mxfp4", "quark"})
# Estimates for the profile run, from vLLM's own logs of dense models on an H100 at 8192 batched
# tokens and 1024 sequences (llm-d/llm-d-benchmark, config_explorer/empirical-vllm-memory-
# results.md): activation peaks of 4.8-5.6 GiB even for Qwen3-0.6B, the sampling warmup's logits
# (sequences x vocabulary) dominating at about 30-37 bytes each; CUDA graphs -0.45 to 1.03 GiB.
SAMPLER_BYTES = 40
CUDA_GRAPH_BYTES = 1 * GIB


def max_num_batched_tokens_and_seqs(instance: GpuInstance) -> tuple[int, int]:
    gib = instance.cuda_memory_bytes / GIB
    if gib >= 160:
        return 16384, 1024
    if gib >= 70 and not instance.gpu.name.startswith("A100"):
        return 8192, 1024
    return 2048, 256


def max_num_seqs(plan: Plan) -> int:
    """The sequences that go with the plan's batched tokens (the same table)."""
    return 256 if plan.max_batch_prefill_tokens <= 2048 else 1024


def batch(entry: LockEntry, instance: GpuInstance, req: Request) -> tuple[int, int]:
    return max_num_batched_tokens_and_seqs(instance)


def rules(entry: LockEntry, instance: GpuInstance, num_shard: int, quantize: Optional[str],
          req: Request) -> Optional[str]:
    kv_heads = entry.config.num_key_value_heads
    if kv_heads >= num_shard and kv_heads % num_shard:
        return f"{kv_heads} KV heads cannot be split into {num_shard} shards"
    if kv_heads < num_shard and num_shard % kv_heads:
        return (f"{kv_heads} KV heads cannot be replicated over {num_shard} shards (vLLM needs the "
                "tensor-parallel size to be a multiple of them)")
    gpu = f"{instance.instance_type} has {instance.gpu.name} ({instance.gpu.compute_capability})"
    if req.quantize in ON_THE_FLY_BITS and instance.gpu.compute_capability < FP8_MIN_COMPUTE_CAPABILITY[req.quantize]:
        return (f"{req.quantize} needs compute capability {FP8_MIN_COMPUTE_CAPABILITY[req.quantize]} "
                f"or newer; {gpu}")
    if req.dtype == "bfloat16" and instance.gpu.compute_capability < BF16_MIN_COMPUTE_CAPABILITY:
        return f"bfloat16 needs compute capability {BF16_MIN_COMPUTE_CAPABILITY} or newer; {gpu}"
    return None


MEMORY = MemoryModel(
    engine="vllm", label="vLLM", quantize=QUANTIZE, quantize_with_dtype=QUANTIZE,
    prequantized=PREQUANTIZED, loads=LOADS, on_the_fly_bits=ON_THE_FLY_BITS,
    memory_fraction=GPU_MEMORY_UTILIZATION, batch=batch, rules=rules, startup=STARTUP,
    sampler_bytes=SAMPLER_BYTES, graph_bytes=CUDA_GRAPH_BYTES,
    total_from_capacity=False, kv_holds_prefill=False, input_limit=False,
    # The worker creates NCCL and the cuBLAS handles before the memory snapshot its profile run
    # starts from (vllm/v1/worker/gpu_worker.py, init_device); one max_model_len sequence needs
    # whole blocks of 16 tokens plus the reserved null block (vllm/v1/core/kv_cache_planning.py).
    runtime_in_share=False, block_tokens=16, reserved_blocks=1)


def shm_size_gib(num_shard: int) -> int:
    """/dev/shm for NCCL between tensor-parallel workers (docs/deployment/k8s.md): 1 GiB per GPU."""
    return max(1, num_shard)


# The S3 store (models[].store: s3): the model's commit under `<repo id>/<commit>/` of the stack's
# bucket, whose URI the pod gets in MODEL_URI (the bucket is named by AWS at creation; Kubernetes
# expands `$(MODEL_URI)` in the arguments). `--load-format runai_streamer` reads s3:// paths,
# config and tokenizer pulled to $HOME/.cache/vllm first (vllm/config/model.py
# maybe_pull_model_tokenizer_for_runai); the streamer signs its requests with boto3's credentials,
# Pod Identity's here (runai-model-streamer-s3 0.15.7 credentials.py). 32 concurrent reads: the
# fastest in NVIDIA's S3 benchmark (4.88 s for 15 GB; 16: 8.45 s, 64: 5.01 s; runai-model-streamer
# docs/src/benchmarks.md) and what data-on-eks measured 860 MiB/s with (docs/cold-start.md).
STREAMER_CONCURRENCY = 32
# The streamer's CPU buffer is min(this, the checkpoint): its default of 40 GB would hold a 7B
# model's whole 15 GB in the pod's memory at once (runai_model_streamer
# file_streamer/requests_iterator.py in 0.15.7). 5 GiB, vLLM's documented example
# (docs/models/extensions/runai_model_streamer.md), more than the largest tensor of the
# catalog's models (a 152k x 8192 bf16 embedding: 2.5 GB).
STREAMER_MEMORY_LIMIT = 5 * 1024**3


def serve_args(model: str, slot: Slot, plan: Plan, revision: str) -> list[str]:
    """`vllm serve` arguments of one slot, from its plan."""
    source = ([f"$({MODEL_URI_ENV})", "--load-format", "runai_streamer", "--model-loader-extra-config",
               json.dumps({"concurrency": STREAMER_CONCURRENCY, "memory_limit": STREAMER_MEMORY_LIMIT})]
              if slot.store == "s3"
              else [slot.id, "--revision", revision])
    args = [*source, "--served-model-name", model, slot.id,
            "--port", str(HTTP_PORT),
            "--tensor-parallel-size", str(plan.num_shard),
            "--max-model-len", str(plan.max_total_tokens),
            "--gpu-memory-utilization", str(GPU_MEMORY_UTILIZATION),
            "--max-num-batched-tokens", str(plan.max_batch_prefill_tokens),
            "--max-num-seqs", str(max_num_seqs(plan)),
            "--shutdown-timeout", str(drain_seconds(plan)),
            "--disable-access-log-for-endpoints", "/health,/metrics"]
    if slot.quantize:
        args += ["--quantization", slot.quantize]
    if slot.dtype:
        args += ["--dtype", slot.dtype]
    return args


def serve_env(model: str, slot: Slot, plan: Plan, revision: str) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",  # the download Job filled the cache; serving never reaches the Hub
        "HF_HUB_CACHE": HUB_CACHE,
        "HOME": HOME,
        "VLLM_NO_USAGE_STATS": "1",
        # Uvicorn closes a keep-alive connection idle for 5 s by default (vllm/envs.py,
        # VLLM_HTTP_TIMEOUT_KEEP_ALIVE); the ALB reuses its connections for up to its idle timeout
        # and answers 502 on one the pod just closed: the pod keeps them open longer than any ALB.
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(IDLE_TIMEOUT_MAX_SECONDS + 5),
        # The engine core's start (weights from EFS, profile, compile, graphs) within the probe's
        # budget, not the 600 s default (vllm/v1/engine/core_client.py).
        "VLLM_ENGINE_READY_TIMEOUT_S": str(startup_seconds(plan, MIN_STARTUP_SECONDS)),
    }


def store_script() -> str:
    """What an S3 store's download Job runs in vLLM's image (huggingface_hub, and boto3 with the
    Run:ai streamer's S3 extra): the locked commit's files one at a time from the Hub to the
    scratch disk and into the bucket (the disk holds one file, not the model), skipping those the
    bucket already holds at their size, so a retried Job resumes."""
    return (
        "import fnmatch, os\n"
        "import boto3\n"
        "from huggingface_hub import HfApi, hf_hub_download\n"
        "model, revision, bucket, prefix, scratch = (os.environ[k] for k in ('MODEL_ID', 'REVISION', 'BUCKET', "
        "'PREFIX', 'SCRATCH'))\n"
        f"allow, skip = {DOWNLOAD_PATTERNS!r}, {SKIPPED_PATTERNS!r}\n"
        "def wanted(name):\n"
        "    return any(fnmatch.fnmatch(name, p) for p in allow) and not any(fnmatch.fnmatch(name, p) for p in skip)\n"
        "s3 = boto3.client('s3')\n"
        "stored = {o['Key'][len(prefix):]: o['Size'] for page in s3.get_paginator('list_objects_v2')"
        ".paginate(Bucket=bucket, Prefix=prefix) for o in page.get('Contents', [])}\n"
        "info = HfApi().model_info(model, revision=revision, files_metadata=True)\n"
        "for f in sorted((s for s in info.siblings if wanted(s.rfilename)), key=lambda s: s.rfilename):\n"
        "    if stored.get(f.rfilename) == f.size:\n"
        "        continue\n"
        "    path = hf_hub_download(model, f.rfilename, revision=revision, local_dir=os.path.join(scratch, 'model'))\n"
        "    s3.upload_file(path, bucket, prefix + f.rfilename)\n"
        "    os.remove(path)\n"
        "    print('stored', f.rfilename, flush=True)\n"
        "print(f'model in s3://{bucket}/{prefix}')\n"
    )


_UID = (f"the image's vllm user is UID {USER} (docker/Dockerfile, docs/deployment/docker.md); a "
        "UID without its passwd entry and home is not documented to work")
ENGINE = Engine(
    name="vllm", container="vllm", memory=MEMORY,
    args=serve_args, env=serve_env, api_key_env="VLLM_API_KEY",
    ports=(("http", HTTP_PORT),), metrics_port="http",
    # vllm:num_requests_waiting, as prometheus-adapter names it for the HPA (infra/monitoring.py).
    queue_metric="vllm_num_requests_waiting",
    public_routes=PUBLIC_ROUTES, cache_path=CACHE_PATH, min_startup_seconds=MIN_STARTUP_SECONDS,
    shm_size_gib=shm_size_gib,
    security_context={"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                      "runAsUser": USER, "runAsGroup": GROUP},
    checkov_skips={
        "CKV_K8S_40": _UID,
        "CKV_K8S_43": "pinned to a release tag by the stack config (models[].image); give tag@sha256:... to pin bytes",
        "CKV_K8S_15": "the tag is pinned and never moves: IfNotPresent starts pods from the node's cached image "
                      "when the registry is unreachable",
        "CKV_K8S_35": "vLLM reads VLLM_API_KEY from its environment; --api-key would put the key on its "
                      "command line",
    },
    scratch=(("tmp", "/tmp"), ("home", HOME)),
    pod_spec={"enableServiceLinks": False},
    store_script=store_script,
)
