"""What the serving layer needs of an engine, as one frozen value per engine (`tgi.ENGINE`,
`vllm.ENGINE`): the builders of `components/serving/` read it and never branch on an engine's
name. Also the pieces both engines share (the pod's share of its node, the probes' shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

from ..config import Slot
from ..planning.catalog import GpuInstance
from ..planning.cold_start import MAX_NODE_PROVISION_SECONDS
from ..planning.planner import PRESTOP_SECONDS, MemoryModel, Plan

PROBE_PERIOD_SECONDS = 10
# What the download Jobs fetch of a model repo: weights, config, tokenizer and custom code (as
# safetensors only, never pickles), whichever store they fill.
DOWNLOAD_PATTERNS = ['*.json', '*.safetensors', '*.model', '*.txt', '*.tiktoken', '*.py']
SKIPPED_PATTERNS = ['original/*', '*.pth', '*.bin', '*.pt', '*.gguf']
# The S3 store: a commit's files under `<repo id>/<commit>/` of the stack's bucket; a pod on it
# gets the URI in this variable (Kubernetes expands `$(MODEL_URI)` in the arguments: the bucket's
# name is AWS's, known once it exists).
MODEL_URI_ENV = "MODEL_URI"


def store_prefix(model_id: str, commit: str) -> str:
    return f"{model_id}/{commit}/"


# After its drain the engine's processes exit (shards, engine cores).
SHUTDOWN_MARGIN_SECONDS = 15


def drain_seconds(plan: Plan) -> int:
    """How long the engine waits for in-flight requests on SIGTERM (TGI's
    GRACEFUL_TERMINATION_TIMEOUT, vLLM's --shutdown-timeout): the plan's generation cap, so the
    longest request still finishes."""
    return plan.generation_seconds


def startup_seconds(plan: Plan, minimum: int) -> int:
    """The startup probe's budget: twice the container's start in the plan (its process, weights
    and warmup: `ColdStart.warm_node_seconds`), never under the engine's minimum."""
    return max(minimum, 2 * plan.cold_start.warm_node_seconds)


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


def health_probes(startup_seconds: int) -> dict[str, dict]:
    """Both engines listen only once the model is loaded (connection refused before), then
    /health answers 200, or 503 when the engine is unhealthy. Liveness gives a busy server five
    minutes: /health can fail while the queue is full."""
    health = {"httpGet": {"path": "/health", "port": "http"}}
    return {
        "startupProbe": {**health, "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(startup_seconds / PROBE_PERIOD_SECONDS)},
        "readinessProbe": {**health, "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 10},
    }


@dataclass(frozen=True)
class Engine:
    """One serving engine, as the Deployment, Service, Ingress, HPA and PodMonitor of a slot use
    it. Functions take the model's name, the resolved slot, its plan and the locked commit."""

    name: str  # `engine:` in the stack config
    container: str  # the serving container's name
    memory: MemoryModel  # for the planner
    args: Callable[[str, Slot, Plan, str], list[str]]  # the container's arguments
    env: Callable[[str, Slot, Plan, str], dict[str, str]]  # its environment (no secret)
    api_key_env: str  # the variable the API key Secret is read into
    ports: tuple[tuple[str, int], ...]  # (name, containerPort); `http` first
    metrics_port: str  # the port's name Prometheus scrapes /metrics on
    queue_metric: str  # the HPA's per-pod metric, as prometheus-adapter serves it
    public_routes: tuple[tuple[str, str], ...]  # (path, pathType) the Ingress exposes
    cache_path: str  # where the model cache volume is mounted
    min_startup_seconds: int  # the startup probe's budget at least (load, warmup, compile)
    shm_size_gib: Callable[[int], int]
    # The container's securityContext beyond the hardening every container gets, and the
    # checkov checks it knowingly fails, each with its reason (serving/security.py).
    security_context: Mapping[str, object] = field(default_factory=dict)
    checkov_skips: Mapping[str, str] = field(default_factory=dict)
    # Writable directories of a read-only root filesystem: (volume name, mount path), emptyDirs.
    scratch: tuple[tuple[str, str], ...] = ()
    pod_spec: Mapping[str, object] = field(default_factory=dict)  # extra fields of the pod's spec
    # Its image runs the download Jobs' script (huggingface_hub with hf_transfer: TGI's does,
    # engines/tgi.py `download_script`); a model on another engine downloads with TGI's image.
    runs_downloads: bool = False
    # With `s3` among its stores: the script its image runs to fill the store (serving/download.py).
    store_script: Optional[Callable[[], str]] = None
    pod_resources: Callable[[Iterable[GpuInstance], int], Resources] = pod_resources

    def __post_init__(self) -> None:
        # An engine that streams from S3 fills it too (serving/download.py runs the script).
        assert ("s3" in self.stores) == (self.store_script is not None), self.name

    @property
    def stores(self) -> tuple[str, ...]:
        """Where it reads weights from (models[].store): those its loaders have a rate for (the
        EFS cache; `s3` for an engine that streams from object storage)."""
        return tuple(self.memory.startup.load_mibps)

    @property
    def default_image(self) -> str:
        """Its pinned release (the planner's cold start counts its size)."""
        return self.memory.startup.image

    def image(self, pinned: Optional[str]) -> str:
        """The image a setting pins (a slot's, a model's), else the engine's pinned release."""
        return pinned or self.default_image

    def port(self, name: str) -> int:
        return dict(self.ports)[name]

    def startup_seconds(self, plan: Plan) -> int:
        return startup_seconds(plan, self.min_startup_seconds)

    def probes(self, plan: Plan) -> dict[str, dict]:
        return health_probes(self.startup_seconds(plan))

    def termination_grace_seconds(self, plan: Plan) -> int:
        """Keep serving while the load balancer deregisters the pod (preStop), then drain."""
        return PRESTOP_SECONDS + drain_seconds(plan) + SHUTDOWN_MARGIN_SECONDS

    def deregistration_delay_seconds(self, plan: Plan) -> int:
        """How long the ALB keeps a deregistering pod's connections: until the engine drained."""
        return PRESTOP_SECONDS + drain_seconds(plan)

    def deployment_timeout_seconds(self, plan: Plan) -> int:
        """How long `pulumi up` waits for a new Deployment: every stage of the plan's cold start on
        a new node twice over (docs/cold-start.md), the container's as the startup probe's budget,
        and the node's at least as long as the Cluster Autoscaler keeps trying to add one (a GPU
        type short of capacity stalls there, not in the stages the plan measures)."""
        stages = plan.cold_start
        node = max(2 * (stages.node_seconds + stages.gpu_seconds), MAX_NODE_PROVISION_SECONDS)
        return node + 2 * stages.image_seconds + self.startup_seconds(plan)

    def deployment_update_timeout_seconds(self, plan: Plan) -> int:
        """One rollout step also waits for an old pod to drain: its GPUs are free once it is gone."""
        return self.deployment_timeout_seconds(plan) + self.termination_grace_seconds(plan)
