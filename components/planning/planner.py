"""The planner: does a model fit a GPU instance under its engine (TGI, vLLM), with how many
shards, which limits, at what cost, and how long a cold start takes. Pure functions, no Pulumi,
no network. The engine's side of it is a `MemoryModel` that engines/tgi.py and engines/vllm.py
provide (planning imports no engine); the callers pass it.

Memory model, per GPU (shard), after the engine's own measurement at startup (TGI's warmup,
vLLM's profile run: the engine modules cite them):

    KV memory = CUDA-visible total x the engine's fraction - weights / shards - runtime overhead
                - activations of one prefill batch - the engine's extras (CUDA graphs)
    KV capacity (tokens per replica) = KV memory / KV bytes per token per shard

The total is the memory CUDA makes visible (catalog.py), which both engines read
(`torch.cuda.mem_get_info`), not nvidia-smi's. The runtime overhead is the CUDA context plus the
cuBLAS workspace, measured at 716 MiB on an H100 80GB (PyTorch 2.11, driver 580; issue #12), plus
NCCL's buffers when sharded. Activations of a prefill scale with the tokens, the hidden size (the
residual stream, norms, attention output: not split by tensor parallelism) and the MLP width per
shard (gate, up and their product: split): measured, a 4096-token prefill of Qwen2.5-7B (hidden
3584, MLP 18944) peaked at 558 MiB allocated and 799 MiB reserved in PyTorch's cache, a 4-way
shard of Llama-3.1-70B or Qwen2.5-72B at 450/599 MiB (issue #12). Each engine counts 16-bit
vectors per token of both widths (ACTIVATION_VECTORS, above what either measures: allocated or
reserved memory).

KV bytes per token per shard = 2 (K and V) x layers x KV heads on the shard x head_dim x 2 bytes
(16-bit cache). KV heads are split over the shards; fewer KV heads than shards are replicated
(one per shard), which each engine allows under its own rule.

Generation cap: how long one request may take to generate, which the drain on shutdown, the pod's
grace period and the load balancer's deregistration delay are derived from (the engine modules).
Decode is memory-bound: each step of a shard reads its weights and, at worst (a batch that fills
the cache), its whole KV cache, so a step takes at least those bytes over the GPU's memory
bandwidth (catalog.py). The longest request generates maxTotalTokens - 1 tokens (a one-token
prompt).

Cold start, by stage: cold_start.py (each engine brings its side, `MemoryModel.startup`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Literal, Mapping, Optional

from .catalog import CATALOG, MIB, GpuInstance
from .cold_start import ColdStart, Startup, cold_start
from .lock import LockEntry

GIB = 1024 * MIB
SHARDS = (1, 2, 4, 8)  # GPUs per replica the planner tries (the catalog's instances have 1, 4, 8)
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}

RUNTIME_OVERHEAD_BYTES = 716 * MIB  # CUDA context + cuBLAS workspace, measured (above)
NCCL_OVERHEAD_BYTES = GIB // 2  # an estimate, per GPU when sharded
# 16-bit vectors per prefill token (module docstring): of the hidden size, of the MLP width per
# shard. 4096 tokens x 2 bytes x (6 x 3584 + 5 x 18944) = 908 MiB for Qwen2.5-7B, 664 MiB for a
# 4-way shard of Llama-3.1-70B: above both the reserved and the allocated peaks measured.
ACTIVATION_VECTORS = (6, 5)

# The generation cap counts half the datasheet bandwidth (an estimate, deliberately generous):
# serving stacks reach well under peak, and tensor-parallel all-reduces, sampling and scheduling
# add to every step.
DECODE_BANDWIDTH_FRACTION = 0.5
# Draining a replica: its pod waits PRESTOP_SECONDS while the load balancer stops sending it new
# requests, then the engine finishes those in flight (the engine modules). An ALB target group's
# deregistration_delay.timeout_seconds, which must cover both, is 0-3600 s (Elastic Load Balancing
# API reference, TargetGroupAttribute).
PRESTOP_SECONDS = 15
MAX_DEREGISTRATION_DELAY_SECONDS = 3600


class PlanError(ValueError):
    """Input the planner cannot work with at all (exit 2)."""


@dataclass(frozen=True)
class Request:
    """What a model's config asks for; None leaves the choice to the planner."""

    quantize: Optional[str] = None
    dtype: Optional[str] = None
    max_input_tokens: Optional[int] = None
    max_total_tokens: Optional[int] = None
    throughput_mode: str = "elastic"
    provisioned_mibps: Optional[int] = None
    # Cold start: the image comes through the stack's ECR pull-through cache (in-region), else
    # from its upstream registry through the NAT gateways; the node group pulls with SOCI
    # parallel pull (fastImagePull); where the weights are read from.
    pull_through_cache: bool = False
    fast_image_pull: bool = False
    model_store: Literal["efs", "s3"] = "efs"


# An engine's own rules, checked before memory: (entry, instance, shards, effective quantize,
# request) -> why not, or None.
Rules = Callable[[LockEntry, GpuInstance, int, Optional[str], Request], Optional[str]]


@dataclass(frozen=True)
class MemoryModel:
    """What the planner needs of a serving engine: how it sizes its KV cache at startup, its
    quantize modes and its rules. engines/tgi.py and engines/vllm.py each provide one."""

    engine: str  # its name in the stack config (`engine: tgi`)
    label: str  # its name in messages (TGI)
    quantize: tuple[str, ...]  # the `quantize` values it takes
    quantize_with_dtype: tuple[str, ...]  # those that may be set together with `dtype`
    prequantized: Mapping[str, frozenset[str]]  # quantize -> the checkpoint methods it loads
    loads: frozenset[str]  # checkpoint quantization methods it runs with `quantize` unset
    on_the_fly_bits: Mapping[str, int]  # quantize -> bits of the linear layers (from 16-bit weights)
    memory_fraction: float  # of the CUDA-visible total that weights, activations and KV cache share
    batch: Callable[[LockEntry, GpuInstance, Request], tuple[int, int]]  # (prefill tokens, sequences)
    rules: Rules
    startup: Startup  # its image, loaders and warmup, for the cold start (cold_start.py)
    sampler_bytes: int = 0  # per sequence and vocabulary entry of its sampling warmup
    graph_bytes: int = 0  # per GPU, CUDA graphs counted before the KV cache
    total_from_capacity: bool = True  # unset maxTotalTokens: min(capacity, context), else the context
    kv_holds_prefill: bool = True  # the KV cache must hold a prefill batch too
    input_limit: bool = True  # takes maxInputTokens (else prompt and output share maxTotalTokens)
    # The CUDA context, cuBLAS workspace and NCCL come out of its share (TGI sizes from the free
    # memory once they exist); vLLM takes its memory snapshot after creating them, so its share
    # is the fraction of the total alone.
    runtime_in_share: bool = True
    # The KV cache is allocated in blocks of this many tokens; one sequence needs whole blocks,
    # plus this many reserved ones.
    block_tokens: int = 1
    reserved_blocks: int = 0


@dataclass(frozen=True)
class Plan:
    model: str
    engine: str
    fits: bool
    reason: str
    instance_type: str
    num_shard: int
    quantize: Optional[str]  # effective quantization (a pre-quantized checkpoint's own method)
    dtype: Optional[str]
    weights_bytes: int  # in GPU memory, all shards
    kv_bytes_per_token: int  # all shards
    kv_capacity_tokens: int  # per replica
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    hourly_usd: float  # the GPUs one replica occupies
    cold_start: ColdStart
    decode_ms_per_token: float  # worst case, on the slowest GPU of the plan (a full batch)
    generation_seconds: int  # the cap: max_total_tokens - 1 tokens at decode_ms_per_token

    def as_dict(self) -> dict:
        return {**asdict(self), "cold_start": self.cold_start.as_dict()}


def effective_quantize(entry: LockEntry, quantize: Optional[str],
                       memory: MemoryModel) -> tuple[Optional[str], Optional[str]]:
    """(the quantization the engine will run with, or a reason it cannot). Both engines read a
    pre-quantized checkpoint's method from its config.json when `quantize` is unset."""
    method = entry.quantization.method if entry.quantization else None
    if quantize is None:
        if method is not None and method not in memory.loads:
            return None, f"the checkpoint is quantized with {method!r}, which {memory.label} cannot load"
        return method, None
    if quantize in memory.prequantized:
        if method not in memory.prequantized[quantize]:
            return None, (f"quantize {quantize!r} needs a checkpoint quantized with "
                          f"{' or '.join(sorted(memory.prequantized[quantize]))}; this one is "
                          f"{'not quantized' if method is None else f'quantized with {method!r}'}")
        return quantize, None
    if method is not None:
        return None, f"quantize {quantize!r} quantizes fp16/bf16 weights; this checkpoint is already quantized with {method!r}"
    return quantize, None


def weights_in_gpu(entry: LockEntry, quantize: Optional[str], dtype: Optional[str],
                   memory: MemoryModel) -> int:
    """Bytes the weights take on the GPUs (all shards)."""
    if entry.quantization is not None:
        return entry.weights_bytes  # pre-quantized: loaded as stored
    serve_bytes = DTYPE_BYTES[dtype or ("float16" if entry.dtype == "float32" else entry.dtype)]
    if quantize in memory.on_the_fly_bits:
        # Linear layers are quantized; embeddings and the LM head stay 16-bit.
        shape = entry.config
        embeddings = 2 * shape.vocab_size * shape.hidden_size
        linear = max(entry.parameters - embeddings, 0)
        return int(embeddings * 2 + linear * memory.on_the_fly_bits[quantize] / 8)
    return entry.parameters * serve_bytes


def kv_heads_per_shard(entry: LockEntry, num_shard: int) -> int:
    return max(entry.config.num_key_value_heads // num_shard, 1)  # fewer than shards: replicated


def kv_bytes_per_token_per_shard(entry: LockEntry, num_shard: int) -> int:
    shape = entry.config
    return 2 * shape.num_hidden_layers * kv_heads_per_shard(entry, num_shard) * shape.dim_per_head * 2


def activation_bytes(entry: LockEntry, num_shard: int, tokens: int, sequences: int,
                     memory: MemoryModel) -> int:
    """The peak of one prefill batch on a shard (module docstring), plus the engine's sampling
    warmup of its sequences over the vocabulary."""
    shape = entry.config
    hidden, mlp = ACTIVATION_VECTORS
    per_token = 2 * (hidden * shape.hidden_size + mlp * shape.mlp_width / num_shard)
    return int(tokens * per_token + sequences * shape.vocab_size * memory.sampler_bytes)


def decode_ms_per_token(weights_per_gpu: float, kv_bytes_per_shard: int, capacity: int,
                        instance: GpuInstance) -> float:
    """One decode step at worst: the shard's weights and its full KV cache read once."""
    read = weights_per_gpu + kv_bytes_per_shard * capacity
    return round(1000 * read / (instance.gpu.memory_bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_FRACTION), 1)


def generation_seconds(max_total_tokens: int, ms_per_token: float) -> int:
    """The generation cap: the longest request's new tokens, one decode step each."""
    return math.ceil((max_total_tokens - 1) * ms_per_token / 1000)


def rule_violation(entry: LockEntry, instance: GpuInstance, num_shard: int,
                   quantize: Optional[str], req: Request, memory: MemoryModel) -> Optional[str]:
    """The rules every engine shares, then the engine's own, checked before memory."""
    heads = entry.config.num_attention_heads
    if num_shard not in SHARDS:
        return f"num_shard {num_shard} is not one of {', '.join(map(str, SHARDS))}"
    if num_shard > instance.gpus:
        return f"{num_shard} shards need {num_shard} GPUs; {instance.instance_type} has {instance.gpus}"
    if heads % num_shard:
        return f"{heads} attention heads cannot be split into {num_shard} shards"
    if req.model_store not in memory.startup.load_mibps:
        return (f"{memory.label} cannot load weights from {req.model_store} (only from "
                f"{', '.join(memory.startup.load_mibps)})")
    why_not = memory.rules(entry, instance, num_shard, quantize, req)
    if why_not:
        return why_not
    max_pos = entry.config.max_position_embeddings
    if req.max_total_tokens is not None and req.max_total_tokens > max_pos:
        return f"maxTotalTokens {req.max_total_tokens} is more than the model's context ({max_pos})"
    if memory.input_limit and req.max_input_tokens is not None \
            and req.max_input_tokens >= (req.max_total_tokens or max_pos):
        return (f"maxInputTokens {req.max_input_tokens} must be less than maxTotalTokens "
                f"{req.max_total_tokens or max_pos}")
    return None


def plan(model: str, entry: LockEntry, instance: GpuInstance, num_shard: int, req: Request,
         memory: MemoryModel) -> Plan:
    """The plan of one model on one instance type with num_shard shards, under the engine whose
    memory model this is."""
    quantize, why_not = effective_quantize(entry, req.quantize, memory)
    why_not = why_not or rule_violation(entry, instance, num_shard, quantize, req, memory)
    shape = entry.config
    weights = weights_in_gpu(entry, quantize, req.dtype, memory)
    kv_shard = kv_bytes_per_token_per_shard(entry, num_shard)
    prefill, sequences = memory.batch(entry, instance, req)
    activations = activation_bytes(entry, num_shard, prefill, sequences, memory)
    runtime = RUNTIME_OVERHEAD_BYTES + (NCCL_OVERHEAD_BYTES if num_shard > 1 else 0)
    overhead = (runtime if memory.runtime_in_share else 0) + memory.graph_bytes
    total = instance.cuda_memory_bytes
    per_gpu = weights / num_shard
    usable = total * memory.memory_fraction
    kv_memory = usable - per_gpu - overhead - activations
    capacity = max(int(kv_memory // kv_shard), 0)

    context = shape.max_position_embeddings
    if req.max_total_tokens:
        max_total = req.max_total_tokens
    else:
        max_total = min(capacity, context) if memory.total_from_capacity and capacity >= 2 else context
    max_input = (req.max_input_tokens if memory.input_limit else None) or max_total - 1
    need = max(max_total, prefill) if memory.kv_holds_prefill else max_total
    need = (-(-need // memory.block_tokens) + memory.reserved_blocks) * memory.block_tokens
    if why_not is None:
        if per_gpu + overhead + activations > usable:
            why_not = (f"the weights need {per_gpu / GIB:.1f} GiB per GPU; {instance.gpu.name} has "
                       f"{total / GIB:.1f} GiB, of which {memory.label} uses {memory.memory_fraction:.0%}")
        elif capacity < need:
            why_not = (f"KV cache holds {capacity} tokens after {per_gpu / GIB:.1f} GiB of weights "
                       f"per GPU; needs {need} " + ("(maxTotalTokens and the prefill batch)"
                                                    if memory.kv_holds_prefill else
                                                    f"(one sequence of maxTotalTokens: {memory.label} "
                                                    "refuses to start otherwise)"))
        elif max_input >= max_total:
            why_not = (f"maxInputTokens {max_input} must be less than maxTotalTokens, which is "
                       f"{max_total} here (what the KV cache holds)")
    reason = why_not or f"{per_gpu / GIB:.1f} GiB of weights per GPU, KV cache for {capacity} tokens"
    per_token = decode_ms_per_token(per_gpu, kv_shard, capacity, instance)
    return Plan(
        model=model, engine=memory.engine, fits=why_not is None, reason=reason,
        instance_type=instance.instance_type, num_shard=num_shard, quantize=quantize, dtype=req.dtype,
        weights_bytes=int(weights), kv_bytes_per_token=kv_shard * num_shard, kv_capacity_tokens=capacity,
        max_input_tokens=max_input, max_total_tokens=max_total, max_batch_prefill_tokens=prefill,
        hourly_usd=round(instance.hourly_usd * num_shard / instance.gpus, 4),
        cold_start=cold_start(entry.weights_bytes, entry.parameters, req, memory.startup),
        decode_ms_per_token=per_token,
        generation_seconds=generation_seconds(max_total, per_token),
    )


def best_plan(model: str, entry: LockEntry, req: Request,
              instances: Iterable[GpuInstance] = CATALOG.values(),
              shards: Iterable[int] = SHARDS, *, memory: MemoryModel) -> Plan:
    """Per instance type the fewest shards that fit, then the cheapest of those (per replica).
    When nothing fits, the most telling failure: a memory one, with the most GPUs tried."""
    shards = list(shards)
    tried = [[plan(model, entry, i, n, req, memory) for n in shards if n <= i.gpus] for i in instances]
    fitting = [p for p in (next((p for p in t if p.fits), None) for t in tried) if p]
    if fitting:
        return min(fitting, key=lambda p: (p.hourly_usd, p.num_shard))
    failed = [p for t in tried for p in t]
    if not failed:
        raise PlanError("no instance type has that many GPUs")
    memory_failures = [p for p in failed if "GiB" in p.reason or "KV cache" in p.reason]
    return (memory_failures or failed)[-1]


def cheapest(model: str, entry: LockEntry, req: Request, memory: MemoryModel) -> Optional[Plan]:
    found = best_plan(model, entry, req, memory=memory)
    return found if found.fits else None


def plan_node_group(model: str, entry: LockEntry, instance_types: list[str], req: Request,
                    memory: MemoryModel) -> Plan:
    """One shard count for every instance type of the group (a pod may land on any of them): the
    fewest shards that fit on all. The plan returned is the one on the tightest type."""
    instances = [CATALOG[t] for t in instance_types]
    last: list[Plan] = []
    for n in SHARDS:
        if n > min(i.gpus for i in instances):
            break
        last = [plan(model, entry, i, n, req, memory) for i in instances]
        if all(p.fits for p in last):
            tightest = min(last, key=lambda p: p.kv_capacity_tokens)
            per_token = max(p.decode_ms_per_token for p in last)  # the slowest GPU
            return dataclasses.replace(
                tightest, hourly_usd=max(p.hourly_usd for p in last), decode_ms_per_token=per_token,
                generation_seconds=generation_seconds(tightest.max_total_tokens, per_token))
    failing = [p for p in last if not p.fits]
    return failing[0] if failing else best_plan(model, entry, req, instances[:1], memory=memory)
