"""The planner: does a model fit a GPU instance under TGI, with how many shards, which limits,
at what cost, and how long a cold start takes. Pure functions, no Pulumi, no network.

Memory model, per GPU (shard), after TGI v3.3.7's warmup (server/.../flash_causal_lm.py
`warmup`, utils/import_utils.py `get_cuda_free_memory`): TGI loads the weights, runs one prefill
of MAX_BATCH_PREFILL_TOKENS, then takes the free memory minus (1 - CUDA_MEMORY_FRACTION x
TGI_WIGGLE_ROOM) of the GPU's total, and turns it all into KV-cache blocks. So, per GPU:

    KV memory = total x 1.0 x 0.90 - weights / shards - runtime overhead - prefill activations
    KV capacity (tokens per replica) = KV memory / KV bytes per token per shard

KV bytes per token per shard = 2 (K and V) x layers x KV heads on the shard x head_dim x 2 bytes
(16-bit cache). KV heads are split over the shards; a single KV head (MQA) is replicated on
every shard, and otherwise the KV heads must divide by the shards ("`num_key_value_heads` must
be divisible by `num_shards`", flash_llama_modeling.py). The router then needs the capacity to
hold MAX_TOTAL_TOKENS and the prefill batch (backends/v3/src/main.rs). Unset, MAX_TOTAL_TOKENS is
min(capacity, context) and MAX_INPUT_TOKENS is MAX_TOTAL_TOKENS - 1 (warmup).

Generation cap: how long one request may take to generate, which the drain on shutdown (TGI's
GRACEFUL_TERMINATION_TIMEOUT), the pod's grace period and the load balancer's deregistration delay
are derived from (engines/tgi.py). Decode is memory-bound: each step of a shard reads its weights
and, at worst (a batch that fills the cache), its whole KV cache, so a step takes at least those
bytes over the GPU's memory bandwidth (catalog.py). The longest request generates
MAX_TOTAL_TOKENS - 1 tokens (a one-token prompt: TGI refuses input + max_new_tokens above
MAX_TOTAL_TOKENS, router/src/validation.rs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

from .catalog import CATALOG, MIB, GpuInstance
from .lock import LockEntry

GIB = 1024 * MIB
SHARDS = (1, 2, 4, 8)  # TGI's NUM_SHARD values
QUANTIZE = ("awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin",
            "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8")  # docs/tgi.md
BITSANDBYTES = ("bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4")
PREQUANTIZED = {  # QUANTIZE -> checkpoint quantization methods it loads (docs/tgi.md)
    "awq": {"awq"}, "gptq": {"gptq"}, "marlin": {"marlin", "gptq"}, "exl2": {"exl2"},
    "compressed-tensors": {"compressed-tensors"},
}
ON_THE_FLY_BITS = {"eetq": 8, "fp8": 8, "bitsandbytes": 8, "bitsandbytes-nf4": 4, "bitsandbytes-fp4": 4}
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}

CUDA_MEMORY_FRACTION = 1.0  # TGI default (utils/dist.py)
WIGGLE_ROOM = 0.90  # TGI_WIGGLE_ROOM default (models/globals.py)
# Estimates, per GPU: the CUDA context, cuBLAS workspaces and the like (~1 GiB), plus NCCL buffers
# when sharded. Activations of a prefill: ~20 hidden-size vectors of 16 bits per token (residual,
# norms, QKV, attention output, the MLP's gate, up and activation), left in PyTorch's caching
# allocator when TGI measures free memory.
RUNTIME_OVERHEAD_BYTES = 1 * GIB
NCCL_OVERHEAD_BYTES = GIB // 2
ACTIVATION_VECTORS_PER_TOKEN = 20
# The launcher's usual MAX_BATCH_PREFILL_TOKENS when unset (4096, at most the context). With
# chunked prefill (flashinfer, compute capability 8.0+) prompts longer than that are split;
# without it a whole prompt must fit one prefill.
DEFAULT_MAX_BATCH_PREFILL_TOKENS = 4096

# Cold start of a replica whose weights are in the cache: process start (imports, NCCL), read of
# the weights from EFS at the per-client rate (docs/eks.md: elastic with the CSI driver's
# efs-proxy 1,500 MiB/s; provisioned 500 MiB/s or less if provisioned lower; bursting on a small
# file system ~100 MiB/s), then warmup. Published logs show a 7B shard ready ~10 s after start
# from local disk and warmups of 3-11 s (huggingface/text-generation-inference issues #676,
# #2572 and users' logs); the constants below are deliberately generous.
EFS_READ_MIBPS = {"elastic": 1500, "provisioned": 500, "bursting": 100}
PROCESS_START_SECONDS = 30
WARMUP_SECONDS = 30

# The generation cap counts half the datasheet bandwidth (an estimate, deliberately generous):
# serving stacks reach well under peak, and tensor-parallel all-reduces, sampling and scheduling
# add to every step.
DECODE_BANDWIDTH_FRACTION = 0.5
# Draining a replica: its pod waits PRESTOP_SECONDS while the load balancer stops sending it new
# requests, then TGI finishes those in flight (engines/tgi.py). An ALB target group's
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


@dataclass(frozen=True)
class Plan:
    model: str
    fits: bool
    reason: str
    instance_type: str
    num_shard: int
    quantize: Optional[str]  # effective QUANTIZE (a pre-quantized checkpoint's own method)
    dtype: Optional[str]
    weights_bytes: int  # in GPU memory, all shards
    kv_bytes_per_token: int  # all shards
    kv_capacity_tokens: int  # per replica
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    hourly_usd: float  # the GPUs one replica occupies
    cold_start_seconds: int
    decode_ms_per_token: float  # worst case, on the slowest GPU of the plan (a full batch)
    generation_seconds: int  # the cap: MAX_TOTAL_TOKENS - 1 tokens at decode_ms_per_token

    def as_dict(self) -> dict:
        return asdict(self)


def effective_quantize(entry: LockEntry, quantize: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(QUANTIZE TGI will run with, or a reason it cannot). TGI reads a pre-quantized
    checkpoint's method from its config.json when QUANTIZE is unset."""
    method = entry.quantization.method if entry.quantization else None
    if quantize is None:
        if method in PREQUANTIZED:
            return method, None
        if method is not None and method not in ("fp8",):
            return None, f"the checkpoint is quantized with {method!r}, which TGI cannot load"
        return method, None
    if quantize in PREQUANTIZED:
        if method not in PREQUANTIZED[quantize]:
            return None, (f"quantize {quantize!r} needs a checkpoint quantized with "
                          f"{' or '.join(sorted(PREQUANTIZED[quantize]))}; this one is "
                          f"{'not quantized' if method is None else f'quantized with {method!r}'}")
        return quantize, None
    if method is not None:
        return None, f"quantize {quantize!r} quantizes fp16/bf16 weights; this checkpoint is already quantized with {method!r}"
    return quantize, None


def weights_in_gpu(entry: LockEntry, quantize: Optional[str], dtype: Optional[str]) -> int:
    """Bytes the weights take on the GPUs (all shards)."""
    if entry.quantization is not None:
        return entry.weights_bytes  # pre-quantized: loaded as stored
    serve_bytes = DTYPE_BYTES[dtype or ("float16" if entry.dtype == "float32" else entry.dtype)]
    if quantize in ON_THE_FLY_BITS:
        # Linear layers are quantized; embeddings and the LM head stay 16-bit.
        shape = entry.config
        embeddings = 2 * shape.vocab_size * shape.hidden_size
        linear = max(entry.parameters - embeddings, 0)
        return int(embeddings * 2 + linear * ON_THE_FLY_BITS[quantize] / 8)
    return entry.parameters * serve_bytes


def kv_heads_per_shard(entry: LockEntry, num_shard: int) -> int:
    heads = entry.config.num_key_value_heads
    return heads if heads == 1 else heads // num_shard  # MQA: the one head on every shard


def kv_bytes_per_token_per_shard(entry: LockEntry, num_shard: int) -> int:
    shape = entry.config
    return 2 * shape.num_hidden_layers * max(kv_heads_per_shard(entry, num_shard), 1) \
        * shape.dim_per_head * 2


def cold_start_seconds(stored_bytes: int, req: Request) -> int:
    rate = EFS_READ_MIBPS[req.throughput_mode]
    if req.throughput_mode == "provisioned" and req.provisioned_mibps:
        rate = min(rate, req.provisioned_mibps)
    return math.ceil(PROCESS_START_SECONDS + stored_bytes / (rate * MIB) + WARMUP_SECONDS)


def decode_ms_per_token(weights_per_gpu: float, kv_bytes_per_shard: int, capacity: int,
                        instance: GpuInstance) -> float:
    """One decode step at worst: the shard's weights and its full KV cache read once."""
    read = weights_per_gpu + kv_bytes_per_shard * capacity
    return round(1000 * read / (instance.gpu.memory_bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_FRACTION), 1)


def generation_seconds(max_total_tokens: int, ms_per_token: float) -> int:
    """The generation cap: the longest request's new tokens, one decode step each."""
    return math.ceil((max_total_tokens - 1) * ms_per_token / 1000)


def rule_violation(entry: LockEntry, instance: GpuInstance, num_shard: int,
                   quantize: Optional[str], req: Request) -> Optional[str]:
    """TGI's hard rules (docs/tgi.md), checked before memory."""
    heads = entry.config.num_attention_heads
    if num_shard not in SHARDS:
        return f"num_shard {num_shard} is not one of {', '.join(map(str, SHARDS))}"
    if num_shard > instance.gpus:
        return f"{num_shard} shards need {num_shard} GPUs; {instance.instance_type} has {instance.gpus}"
    if heads % num_shard:
        return f"{heads} attention heads cannot be split into {num_shard} shards"
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
    max_pos = entry.config.max_position_embeddings
    if req.max_total_tokens is not None and req.max_total_tokens > max_pos:
        return f"maxTotalTokens {req.max_total_tokens} is more than the model's context ({max_pos})"
    if req.max_input_tokens is not None and req.max_input_tokens >= (req.max_total_tokens or max_pos):
        return (f"maxInputTokens {req.max_input_tokens} must be less than maxTotalTokens "
                f"{req.max_total_tokens or max_pos}")
    return None


def plan(model: str, entry: LockEntry, instance: GpuInstance, num_shard: int, req: Request) -> Plan:
    """The plan of one model on one instance type with num_shard shards."""
    quantize, why_not = effective_quantize(entry, req.quantize)
    why_not = why_not or rule_violation(entry, instance, num_shard, quantize, req)
    shape = entry.config
    weights = weights_in_gpu(entry, quantize, req.dtype)
    kv_shard = kv_bytes_per_token_per_shard(entry, num_shard)
    prefill = min(DEFAULT_MAX_BATCH_PREFILL_TOKENS, shape.max_position_embeddings)
    if req.max_input_tokens and not instance.gpu.chunked_prefill:
        prefill = max(prefill, req.max_input_tokens)  # a whole prompt in one prefill
    activations = prefill * ACTIVATION_VECTORS_PER_TOKEN * shape.hidden_size * 2
    overhead = RUNTIME_OVERHEAD_BYTES + (NCCL_OVERHEAD_BYTES if num_shard > 1 else 0)
    total = instance.gpu_memory_bytes
    per_gpu = weights / num_shard
    usable = total * CUDA_MEMORY_FRACTION * WIGGLE_ROOM
    kv_memory = usable - per_gpu - overhead - activations
    capacity = max(int(kv_memory // kv_shard), 0)

    context = shape.max_position_embeddings
    max_total = req.max_total_tokens or (min(capacity, context) if capacity >= 2 else context)
    max_input = req.max_input_tokens or max_total - 1
    if why_not is None:
        if per_gpu + overhead + activations > usable:
            why_not = (f"the weights need {per_gpu / GIB:.1f} GiB per GPU; {instance.gpu.name} has "
                       f"{total / GIB:.1f} GiB, of which TGI uses {WIGGLE_ROOM:.0%}")
        elif capacity < max(max_total, prefill):
            why_not = (f"KV cache holds {capacity} tokens after {per_gpu / GIB:.1f} GiB of weights "
                       f"per GPU; needs {max(max_total, prefill)} (maxTotalTokens and the "
                       "prefill batch)")
        elif max_input >= max_total:
            why_not = (f"maxInputTokens {max_input} must be less than maxTotalTokens, which is "
                       f"{max_total} here (what the KV cache holds)")
    reason = why_not or f"{per_gpu / GIB:.1f} GiB of weights per GPU, KV cache for {capacity} tokens"
    per_token = decode_ms_per_token(per_gpu, kv_shard, capacity, instance)
    return Plan(
        model=model, fits=why_not is None, reason=reason, instance_type=instance.instance_type,
        num_shard=num_shard, quantize=quantize, dtype=req.dtype, weights_bytes=int(weights),
        kv_bytes_per_token=kv_shard * num_shard, kv_capacity_tokens=capacity,
        max_input_tokens=max_input, max_total_tokens=max_total, max_batch_prefill_tokens=prefill,
        hourly_usd=round(instance.hourly_usd * num_shard / instance.gpus, 4),
        cold_start_seconds=cold_start_seconds(entry.weights_bytes, req),
        decode_ms_per_token=per_token,
        generation_seconds=generation_seconds(max_total, per_token),
    )


def best_plan(model: str, entry: LockEntry, req: Request,
              instances: Iterable[GpuInstance] = CATALOG.values(),
              shards: Iterable[int] = SHARDS) -> Plan:
    """Per instance type the fewest shards that fit, then the cheapest of those (per replica).
    When nothing fits, the most telling failure: a memory one, with the most GPUs tried."""
    tried = [[plan(model, entry, i, n, req) for n in shards if n <= i.gpus] for i in instances]
    fitting = [p for p in (next((p for p in t if p.fits), None) for t in tried) if p]
    if fitting:
        return min(fitting, key=lambda p: (p.hourly_usd, p.num_shard))
    failed = [p for t in tried for p in t]
    if not failed:
        raise PlanError("no instance type has that many GPUs")
    memory = [p for p in failed if "GiB" in p.reason or "KV cache" in p.reason]
    return (memory or failed)[-1]


def cheapest(model: str, entry: LockEntry, req: Request) -> Optional[Plan]:
    found = best_plan(model, entry, req)
    return found if found.fits else None


def plan_node_group(model: str, entry: LockEntry, instance_types: list[str], req: Request) -> Plan:
    """One NUM_SHARD for every instance type of the group (a pod may land on any of them): the
    fewest shards that fit on all. The plan returned is the one on the tightest type."""
    instances = [CATALOG[t] for t in instance_types]
    last: list[Plan] = []
    for n in SHARDS:
        if n > min(i.gpus for i in instances):
            break
        last = [plan(model, entry, i, n, req) for i in instances]
        if all(p.fits for p in last):
            tightest = min(last, key=lambda p: p.kv_capacity_tokens)
            per_token = max(p.decode_ms_per_token for p in last)  # the slowest GPU
            return dataclasses.replace(
                tightest, hourly_usd=max(p.hourly_usd for p in last), decode_ms_per_token=per_token,
                generation_seconds=generation_seconds(tightest.max_total_tokens, per_token))
    failing = [p for p in last if not p.fits]
    return failing[0] if failing else best_plan(model, entry, req, instances[:1])


