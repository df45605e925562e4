"""Text Generation Inference: the container's facts and the workload decisions derived from a
plan (environment, probes, resources, timeouts). Pure functions, no Pulumi.

Facts: docs/tgi.md and huggingface/text-generation-inference v3.3.7
(launcher/src/main.rs defaults: PORT, PROMETHEUS_PORT 9000, GRACEFUL_TERMINATION_TIMEOUT 90).

Shutdown, from the plan's generation cap (planner.py): on SIGTERM the launcher signals the router,
which stops accepting and finishes what is in flight, and kills it after
GRACEFUL_TERMINATION_TIMEOUT seconds (`terminate`, Duration::from_secs), then stops the shards the
same way. Drain = the cap, so the longest request still finishes; the pod's grace period (which
counts the preStop too) = preStop + drain + a margin for the shards to exit; the ALB keeps a
deregistering target for preStop + drain (exposure.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from ..config import Slot
from ..planning.catalog import GpuInstance
from ..planning.planner import MIB, PRESTOP_SECONDS, Plan

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
# After the endpoint is removed, the load balancer takes a few seconds to stop sending new
# requests; the pod keeps serving meanwhile (PRESTOP_SECONDS, planner.py), then TGI drains.
SHUTDOWN_MARGIN_SECONDS = 15
MIN_STARTUP_SECONDS = 300
PROBE_PERIOD_SECONDS = 10

# What `pulumi up` waits for (estimates, deliberately generous): a GPU node launched, joined and
# its GPUs advertised; the TGI image pulled (several GB compressed); the download from the Hub.
NODE_START_SECONDS = 600
IMAGE_PULL_SECONDS = 600
HUB_DOWNLOAD_MIBPS = 100  # a conservative rate from the Hub into EFS


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


def drain_seconds(plan: Plan) -> int:
    """How long TGI waits for in-flight requests on shutdown: the plan's generation cap."""
    return plan.generation_seconds


def termination_grace_seconds(plan: Plan) -> int:
    return PRESTOP_SECONDS + drain_seconds(plan) + SHUTDOWN_MARGIN_SECONDS


def deregistration_delay_seconds(plan: Plan) -> int:
    """How long the ALB keeps a deregistering pod's connections: until TGI has drained."""
    return PRESTOP_SECONDS + drain_seconds(plan)


def startup_seconds(plan: Plan) -> int:
    """The startup probe's budget: twice the plan's cold start, never under 5 minutes."""
    return max(MIN_STARTUP_SECONDS, 2 * plan.cold_start_seconds)


def probes(plan: Plan) -> dict[str, dict]:
    """While TGI loads and warms up nothing listens (connection refused), then /health answers
    200, or 503 when a shard is unhealthy (docs/tgi.md). Liveness gives a busy server five
    minutes: /health can fail while the queue is full."""
    health = {"httpGet": {"path": "/health", "port": "http"}}
    return {
        "startupProbe": {**health, "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(startup_seconds(plan) / PROBE_PERIOD_SECONDS)},
        "readinessProbe": {**health, "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 10},
    }


def shm_size_gib(num_shard: int) -> int:
    """/dev/shm for NCCL between shards: 1 GiB is the documented minimum; 1 GiB per shard."""
    return max(1, num_shard)


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory: str  # request and limit (includes the /dev/shm in memory)


def pod_resources(instances: Iterable[GpuInstance], num_shard: int) -> Resources:
    """The share of the smallest instance of the node group that one replica's GPUs stand for,
    leaving room for the kubelet, system reserve and the node's daemons."""
    share = [(i.vcpus * num_shard / i.gpus, i.memory_gib * num_shard / i.gpus) for i in instances]
    vcpus = min(v for v, _ in share)
    memory = min(m for _, m in share)
    return Resources(cpu_request=str(max(1, math.floor(vcpus * 0.75))),
                     cpu_limit=str(max(1, math.floor(vcpus))),
                     memory=f"{max(4, math.floor(memory * 0.6))}Gi")


def download_seconds(weights_bytes: int) -> int:
    return math.ceil(weights_bytes / (HUB_DOWNLOAD_MIBPS * MIB))


def job_timeout_seconds(weights_bytes: int) -> int:
    """How long `pulumi up` waits for the download Job: image pull plus the download, doubled
    for a slow Hub, but not forever on a broken one."""
    return IMAGE_PULL_SECONDS + 2 * download_seconds(weights_bytes)


def deployment_timeout_seconds(plan: Plan) -> int:
    """How long `pulumi up` waits for a new Deployment: a GPU node, the image, the startup budget."""
    return NODE_START_SECONDS + IMAGE_PULL_SECONDS + startup_seconds(plan)


def deployment_update_timeout_seconds(plan: Plan) -> int:
    """A rollout also waits for an old pod to drain: its GPUs are free only once it is gone."""
    return deployment_timeout_seconds(plan) + termination_grace_seconds(plan)


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
        "    allow_patterns=['*.json', '*.safetensors', '*.model', '*.txt', '*.tiktoken', '*.py'],\n"
        "    ignore_patterns=['original/*', '*.pth', '*.bin', '*.pt', '*.gguf'],\n"
        ")\n"
        "refs = os.path.join(cache, 'models--' + model.replace('/', '--'), 'refs')\n"
        "os.makedirs(refs, exist_ok=True)\n"
        "with open(os.path.join(refs, revision), 'w') as f:\n"
        "    f.write(os.path.basename(path))\n"
        "print('model in cache at', path)\n"
    )

