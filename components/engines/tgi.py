"""Text Generation Inference: the container's facts, the workload decisions derived from a plan
(environment, probes, resources, timeouts) and TGI's memory model for the planner, as `ENGINE`
(engines/base.py). Pure functions, no Pulumi.

Facts: docs/tgi.md and huggingface/text-generation-inference v3.3.7
(launcher/src/main.rs defaults: PORT, PROMETHEUS_PORT 9000, GRACEFUL_TERMINATION_TIMEOUT 90).

Shutdown, from the plan's generation cap (planner.py): on SIGTERM the launcher signals the router,
which stops accepting and finishes what is in flight, and kills it after
GRACEFUL_TERMINATION_TIMEOUT seconds (`terminate`, Duration::from_secs), then stops the shards the
same way. Drain = the cap, so the longest request still finishes; the pod's grace period (which
counts the preStop too) = preStop + drain + a margin for the shards to exit; the ALB keeps a
deregistering target for preStop + drain (exposure.py).

Memory, per GPU (shard), after TGI v3.3.7's warmup (server/.../flash_causal_lm.py `warmup`,
utils/import_utils.py `get_cuda_free_memory`): TGI loads the weights, runs one prefill of
MAX_BATCH_PREFILL_TOKENS, then takes the free memory minus (1 - CUDA_MEMORY_FRACTION x
TGI_WIGGLE_ROOM) of the GPU's total, and turns it all into KV-cache blocks; the prefill's
activations are left in PyTorch's caching allocator when it measures (planning/planner.py counts
them). KV heads are split over the shards; a single KV head (MQA) is replicated on every shard,
and otherwise the KV heads must divide by the shards ("`num_key_value_heads` must be divisible by
`num_shards`", flash_llama_modeling.py). The router then needs the capacity to hold
MAX_TOTAL_TOKENS and the prefill batch (backends/v3/src/main.rs). Unset, MAX_TOTAL_TOKENS is
min(capacity, context) and MAX_INPUT_TOKENS is MAX_TOTAL_TOKENS - 1 (warmup).
"""

from __future__ import annotations

import math
from typing import Optional

from ..config import Slot
from ..planning.catalog import GpuInstance
from ..planning.lock import LockEntry
from ..planning.cold_start import (MMAP_EFS_MIBPS, VLLM_WARMUP_SECONDS, VLLM_WARMUP_SECONDS_PER_BILLION, Startup,
                                   image_pull_seconds)
from ..planning.planner import MIB, MemoryModel, Plan, Request
from .base import DOWNLOAD_PATTERNS, SKIPPED_PATTERNS, Engine, drain_seconds
from .base import Resources, pod_resources  # noqa: F401 (their home before base.py)


# TGI's newest release (docs/tgi.md: git tags go to v3.3.7; the image is published under
# the same tag on ghcr.io).
DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"

# The image listens on PORT=80, which needs CAP_NET_BIND_SERVICE; with every capability dropped
# the server listens on an unprivileged port instead.
HTTP_PORT = 8080
# What clients may reach through the load balancer (router/src/server.rs, docs/tgi.md): the
# inference routes (API key required), the OpenAI-compatible /v1 routes, /health and /info.
# /metrics and /docs stay inside the cluster.
PUBLIC_ROUTES = (("/generate", "Exact"), ("/generate_stream", "Exact"), ("/invocations", "Exact"),
                 ("/tokenize", "Exact"), ("/v1", "Prefix"), ("/health", "Exact"), ("/info", "Exact"))
METRICS_PORT = 9000  # PROMETHEUS_PORT default (since v3.3.0)
CACHE_PATH = "/data"  # HF_HOME of the image; the model cache volume is mounted here
HUB_CACHE = f"{CACHE_PATH}/hub"
# While TGI loads and warms up nothing listens (connection refused), then /health answers 200,
# or 503 when a shard is unhealthy (docs/tgi.md): the startup probe waits at least this long.
MIN_STARTUP_SECONDS = 300
HUB_DOWNLOAD_MIBPS = 100  # a conservative rate from the Hub into EFS

# The cold start's TGI side (planning/cold_start.py `Startup`, docs/cold-start.md); no stage of it
# was found measured for TGI, so every number is an estimate, on the slow side:
# - the image compressed: 8 GB. Its registry size was not found; `docker images` shows 16.9 GB
#   unpacked for 3.3.6, and vLLM's images compress to about a third (28.6 GB unpacked,
#   vllm-project/vllm#22377, against 8.6-9.4 GB compressed, engines/vllm.py): half is taken.
IMAGE_BYTES = 8 * 10**9
# - the process until it reads weights (the launcher, one shard process per GPU, NCCL): 30 s. A
#   7B shard was seen ready ~10 s after start from local disk, load included
#   (huggingface/text-generation-inference#676 and users' logs).
PROCESS_START_SECONDS = 30
# - the weights from EFS: TGI memory-maps the safetensors files (safetensors safe_open,
#   server/text_generation_server/utils/weights.py), as vLLM's default loader does, whose rate
#   was measured (cold_start.MMAP_EFS_MIBPS). No S3 loader.
LOAD_MIBPS = {"efs": MMAP_EFS_MIBPS}
# - warmup (a prefill of MAX_BATCH_PREFILL_TOKENS, CUDA graphs of batch sizes 1-32): vLLM's
#   measured start after the weights (cold_start.VLLM_WARMUP_SECONDS, 27 s + 0.93 s per billion
#   parameters), which also counts torch.compile, TGI does not compile: an upper bound. TGI users'
#   logs show 3-11 s for 7B models.
WARMUP_SECONDS, WARMUP_SECONDS_PER_BILLION = VLLM_WARMUP_SECONDS, VLLM_WARMUP_SECONDS_PER_BILLION
STARTUP = Startup(image=DEFAULT_IMAGE, image_bytes=IMAGE_BYTES, process_seconds=PROCESS_START_SECONDS,
                  load_mibps=LOAD_MIBPS, warmup_seconds=WARMUP_SECONDS,
                  warmup_seconds_per_billion=WARMUP_SECONDS_PER_BILLION)


def image(pinned: Optional[str]) -> str:
    """The image a setting pins (a slot's, a model's), else TGI's pinned release."""
    return pinned or DEFAULT_IMAGE


def launcher_env(slot: Slot, plan: Plan, revision: str) -> dict[str, str]:
    """The launcher settings of one slot (docs/tgi.md), from the plan. MAX_BATCH_TOTAL_TOKENS
    is left to TGI: flash models size it from the memory left after warmup."""
    env = {
        "MODEL_ID": slot.id,
        "REVISION": revision,
        "NUM_SHARD": str(plan.num_shard),
        "MAX_INPUT_TOKENS": str(plan.max_input_tokens),
        "MAX_TOTAL_TOKENS": str(plan.max_total_tokens),
        "MAX_BATCH_PREFILL_TOKENS": str(plan.max_batch_prefill_tokens),
        "HUGGINGFACE_HUB_CACHE": HUB_CACHE,
        "HF_HUB_OFFLINE": "1",  # the download Job filled the cache; serving never reaches the Hub
        "PORT": str(HTTP_PORT),
        "USAGE_STATS": "off",
        "JSON_OUTPUT": "true",
        "GRACEFUL_TERMINATION_TIMEOUT": str(drain_seconds(plan)),
    }
    if plan.quantize:
        env["QUANTIZE"] = plan.quantize
    if slot.dtype:
        env["DTYPE"] = slot.dtype
    return env


def shm_size_gib(num_shard: int) -> int:
    """/dev/shm for NCCL between shards: 1 GiB is the documented minimum; 1 GiB per shard."""
    return max(1, num_shard)


def download_seconds(weights_bytes: int) -> int:
    return math.ceil(weights_bytes / (HUB_DOWNLOAD_MIBPS * MIB))


def job_timeout_seconds(weights_bytes: int, image_bytes: int = IMAGE_BYTES, transfers: int = 1) -> int:
    """How long `pulumi up` waits for a download Job: its image's pull (the slowest the planner
    knows: from upstream, without SOCI, as the system nodes pull) plus the weights' transfers (1:
    into EFS; 2: through a scratch disk into S3, at the same conservative rate), both doubled for
    a slow registry or Hub, but not forever on a broken one."""
    return 2 * (image_pull_seconds(image_bytes, False, False) + transfers * download_seconds(weights_bytes))


def cache_request_gib(weights_bytes: int) -> int:
    """EFS is elastic and ignores the size; a request sized to the weights documents intent."""
    return max(10, math.ceil(2 * weights_bytes / 2**30))


def download_script() -> str:
    """What the download Job runs: the pinned revision's weights, config and tokenizer into the
    shared cache with huggingface_hub (hf_transfer on: the image sets HF_HUB_ENABLE_HF_TRANSFER).

    huggingface_hub writes no `refs/<revision>` file when the revision is already a commit, but
    TGI's router, offline, finds config.json and the tokenizer's chat template through that file
    (hf-hub's cache, router/src/server.rs): the script writes it."""
    return (
        "import os\n"
        "from huggingface_hub import snapshot_download\n"
        "model, revision = os.environ['MODEL_ID'], os.environ['REVISION']\n"
        "cache = os.environ['HUGGINGFACE_HUB_CACHE']\n"
        "path = snapshot_download(\n"
        "    model, revision=revision, cache_dir=cache,\n"
        f"    allow_patterns={DOWNLOAD_PATTERNS!r},\n"
        f"    ignore_patterns={SKIPPED_PATTERNS!r},\n"
        ")\n"
        "refs = os.path.join(cache, 'models--' + model.replace('/', '--'), 'refs')\n"
        "os.makedirs(refs, exist_ok=True)\n"
        "with open(os.path.join(refs, revision), 'w') as f:\n"
        "    f.write(os.path.basename(path))\n"
        "print('model in cache at', path)\n"
    )


# The checks of checkov the TGI image knowingly fails, with their reasons (serving/security.py
# puts them on the objects).
_ROOT = ("the TGI image runs as root and fails under any other UID (libpython under /root, "
         "huggingface/text-generation-inference#3082); privileges, capabilities and the token are dropped instead")
CHECKOV_SKIPS = {
    "CKV_K8S_23": _ROOT,
    "CKV_K8S_40": _ROOT,
    "CKV_K8S_22": "TGI writes to /tmp and to kernel and compiler caches under the root filesystem",
    "CKV_K8S_43": "pinned to a release tag by the stack config (models[].image); give tag@sha256:... to pin bytes",
    "CKV_K8S_15": "the tag is pinned and never moves: IfNotPresent starts pods from the node's cached image "
                  "when the registry is unreachable",
}
SECRET_ENV_SKIP = {"CKV_K8S_35": "TGI reads API_KEY from its environment only (launcher setting)"}


# The planner's side (planning/planner.py): TGI's quantize modes and rules (docs/tgi.md).
QUANTIZE = ("awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin",
            "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8")
BITSANDBYTES = ("bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4")
PREQUANTIZED = {  # QUANTIZE -> checkpoint quantization methods it loads
    "awq": frozenset({"awq"}), "gptq": frozenset({"gptq"}), "marlin": frozenset({"marlin", "gptq"}),
    "exl2": frozenset({"exl2"}), "compressed-tensors": frozenset({"compressed-tensors"}),
}
ON_THE_FLY_BITS = {"eetq": 8, "fp8": 8, "bitsandbytes": 8, "bitsandbytes-nf4": 4, "bitsandbytes-fp4": 4}
CUDA_MEMORY_FRACTION = 1.0  # TGI default (utils/dist.py)
WIGGLE_ROOM = 0.90  # TGI_WIGGLE_ROOM default (models/globals.py)
# The launcher's usual MAX_BATCH_PREFILL_TOKENS when unset (4096, at most the context). With
# chunked prefill (flashinfer, compute capability 8.0+) prompts longer than that are split;
# without it a whole prompt must fit one prefill.
DEFAULT_MAX_BATCH_PREFILL_TOKENS = 4096


def batch(entry: LockEntry, instance: GpuInstance, req: Request) -> tuple[int, int]:
    """(MAX_BATCH_PREFILL_TOKENS, sequences of the warmup's sampling: none counted)."""
    prefill = min(DEFAULT_MAX_BATCH_PREFILL_TOKENS, entry.config.max_position_embeddings)
    if req.max_input_tokens and not instance.gpu.chunked_prefill:
        prefill = max(prefill, req.max_input_tokens)  # a whole prompt in one prefill
    return prefill, 0


def rules(entry: LockEntry, instance: GpuInstance, num_shard: int, quantize: Optional[str],
          req: Request) -> Optional[str]:
    kv_heads = entry.config.num_key_value_heads
    if kv_heads > 1 and kv_heads % num_shard:
        return f"{kv_heads} KV heads cannot be split into {num_shard} shards"
    if quantize == "exl2" and num_shard > 1:
        return "exl2 cannot be sharded (TGI refuses NUM_SHARD > 1 with exl2)"
    if req.quantize == "fp8" and not instance.gpu.fp8:
        return f"fp8 needs Hopper (H100/H200) or newer; {instance.instance_type} has {instance.gpu.name}"
    # TGI applies a checkpoint's own quantization even without QUANTIZE (launcher main.rs).
    if req.dtype and quantize and quantize not in BITSANDBYTES:
        return (f"dtype and quantize {quantize!r} cannot both be set (TGI: only 1 can be set)"
                + ("" if req.quantize else "; the checkpoint is quantized, drop dtype"))
    return None


MEMORY = MemoryModel(
    engine="tgi", label="TGI", quantize=QUANTIZE, quantize_with_dtype=BITSANDBYTES,
    prequantized=PREQUANTIZED, loads=frozenset(PREQUANTIZED) | {"fp8"},
    on_the_fly_bits=ON_THE_FLY_BITS, memory_fraction=CUDA_MEMORY_FRACTION * WIGGLE_ROOM,
    batch=batch, rules=rules, startup=STARTUP)

ENGINE = Engine(
    name="tgi", container="tgi", memory=MEMORY,
    args=lambda model, slot, plan, revision: [],
    env=lambda model, slot, plan, revision: launcher_env(slot, plan, revision),
    api_key_env="API_KEY",  # the launcher's setting (docs/tgi.md)
    ports=(("http", HTTP_PORT), ("metrics", METRICS_PORT)), metrics_port="metrics",
    queue_metric="tgi_queue_size", public_routes=PUBLIC_ROUTES, cache_path=CACHE_PATH,
    min_startup_seconds=MIN_STARTUP_SECONDS, shm_size_gib=shm_size_gib,
    # The TGI image runs as root: any other UID fails to start (libpython under /root,
    # huggingface/text-generation-inference#3082), so runAsNonRoot cannot be set; TGI writes to
    # /tmp and kernel caches under the root filesystem (serving/security.py has the reasons).
    security_context={"readOnlyRootFilesystem": False},
    checkov_skips={**CHECKOV_SKIPS, **SECRET_ENV_SKIP},
    runs_downloads=True,
)
