"""vLLM's memory model and rules in the planner, the measurements that correct both engines, and
the engine through the `plan` command."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.engines import tgi, vllm
from components.planning import planner
from components.planning.catalog import CATALOG, MIB
from components.planning.planner import Request, plan

from ..conftest import ROOT, cli
from .test_planner import FALCON, LLAMA_7B, LLAMA_13B, LLAMA_70B, LOCK

VLLM = vllm.MEMORY
PUBLISHED = str(ROOT / "tests" / "data" / "published.lock.yaml")


def _plan(model: str, instance: str, shards: int, memory=VLLM, **request) -> planner.Plan:
    return plan(model, LOCK.models[model], CATALOG[instance], shards, Request(**request), memory)


def _with(model: str, **config):
    entry = LOCK.models[model]
    return entry.model_copy(update={"config": entry.config.model_copy(update=config)})


# Measurements (issue #12) ------------------------------------------------------------------------

def test_the_h100_is_planned_with_the_memory_cuda_makes_visible():
    assert CATALOG["p5.4xlarge"].gpu.cuda_memory_mib == 81079  # nvidia-smi: 81559
    assert all(i.gpu.cuda_memory_mib < i.gpu.memory_mib for i in CATALOG.values())


def test_activations_cover_the_measured_prefill_peaks_and_scale_with_the_mlp_shard():
    qwen7b = _with(LLAMA_7B, hidden_size=3584, intermediate_size=18944)
    one = planner.activation_bytes(qwen7b, 1, 4096, 0, tgi.MEMORY) / MIB
    assert 799 <= one < 1000  # reserved peak of Qwen2.5-7B, 4096 tokens
    llama70b = _with(LLAMA_70B, intermediate_size=28672)
    four = planner.activation_bytes(llama70b, 4, 4096, 0, tgi.MEMORY) / MIB
    assert 599 <= four < 1280  # 4-way shard: above the peak, below the old unsharded estimate
    assert planner.activation_bytes(llama70b, 8, 4096, 0, tgi.MEMORY) < four * MIB


# vLLM's memory model ------------------------------------------------------------------------------

def test_vllm_sizes_from_its_utilization_and_its_batch_defaults():
    p = _plan(LLAMA_7B, "g5.2xlarge", 1, max_total_tokens=4096)
    assert p.fits and p.engine == "vllm", p.reason
    assert p.max_batch_prefill_tokens == 2048  # below 70 GiB
    assert p.max_total_tokens == 4096 and p.max_input_tokens == 4095
    assert _plan(LLAMA_7B, "p5.4xlarge", 1).max_batch_prefill_tokens == 8192  # H100
    assert _plan(LLAMA_7B, "p4de.24xlarge", 1).max_batch_prefill_tokens == 2048  # A100: small tier
    # Its share of the total is taken after the CUDA context and cuBLAS exist: they do not come
    # out of it (as they do for TGI, which sizes from the free memory).
    with_runtime = dataclasses.replace(VLLM, runtime_in_share=True)
    runtime_tokens = planner.RUNTIME_OVERHEAD_BYTES // p.kv_bytes_per_token
    assert p.kv_capacity_tokens - _plan(LLAMA_7B, "g5.2xlarge", 1, with_runtime,
                                        max_total_tokens=4096).kv_capacity_tokens in (runtime_tokens, runtime_tokens + 1)


def test_unset_max_model_len_is_the_context_and_must_fit_one_sequence():
    long_context = _with(LLAMA_13B, max_position_embeddings=131072)
    p = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(), VLLM)
    assert p.max_total_tokens == 131072 and not p.fits
    assert p.reason.startswith(f"KV cache holds {p.kv_capacity_tokens} tokens")
    # 131072 tokens in blocks of 16, plus vLLM's reserved block.
    assert f"needs {131072 + 16} (one sequence of maxTotalTokens: vLLM refuses to start otherwise)" in p.reason
    # TGI instead lowers its total to what the cache holds.
    t = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(), tgi.MEMORY)
    assert t.fits and t.max_total_tokens == t.kv_capacity_tokens
    fits = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(max_total_tokens=16384), VLLM)
    assert fits.fits, fits.reason


def test_weights_that_leave_no_room():
    p = _plan(LLAMA_70B, "g5.xlarge", 1)
    assert not p.fits and "of which vLLM uses 92%" in p.reason


def test_vllm_ignores_maxinputtokens():
    p = _plan(LLAMA_7B, "g5.2xlarge", 1, max_input_tokens=4095, max_total_tokens=2048)
    assert p.fits and p.max_input_tokens == 2047


# Tensor parallelism -------------------------------------------------------------------------------

def test_attention_heads_must_divide_by_the_tensor_parallel_size():
    p = _plan(FALCON, "g5.12xlarge", 2)
    assert not p.fits and p.reason == "71 attention heads cannot be split into 2 shards"


def test_fewer_kv_heads_than_shards_are_replicated_when_the_shards_are_a_multiple():
    two = _with(LLAMA_70B, num_key_value_heads=2)
    p = plan(LLAMA_70B, two, CATALOG["p4d.24xlarge"], 4, Request(max_total_tokens=4096), VLLM)
    assert p.fits, p.reason
    assert p.kv_bytes_per_token == 4 * (2 * 80 * 1 * 128 * 2)  # one (replicated) head per shard
    assert not plan(LLAMA_70B, two, CATALOG["p4d.24xlarge"], 4, Request(), tgi.MEMORY).fits
    three = _with(LLAMA_70B, num_attention_heads=48, num_key_value_heads=3)
    q = plan(LLAMA_70B, three, CATALOG["p4d.24xlarge"], 2, Request(), VLLM)
    assert not q.fits and q.reason == "3 KV heads cannot be split into 2 shards"
    r = plan(LLAMA_70B, three, CATALOG["p4d.24xlarge"], 4, Request(), VLLM)
    assert not r.fits and r.reason.startswith("3 KV heads cannot be replicated over 4 shards")


# Quantization -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,instance,request_,reason", [
    (LLAMA_7B, "g5.12xlarge", {"quantize": "awq_marlin"}, "quantize 'awq_marlin' needs a checkpoint quantized with awq"),
    ("TheBloke/Llama-2-13B-GPTQ", "g5.12xlarge", {"quantize": "fp8_per_block"}, "quantize 'fp8_per_block' quantizes fp16/bf16 weights"),
])
def test_vllm_quantization_rules(model, instance, request_, reason):
    p = _plan(model, instance, 1, **request_)
    assert not p.fits and p.reason.startswith(reason), p.reason


def test_prequantized_checkpoint_runs_with_its_method_and_takes_dtype():
    p = _plan("TheBloke/Llama-2-13B-GPTQ", "g5.2xlarge", 1, dtype="float16", max_total_tokens=2048)
    assert p.fits and p.quantize == "gptq", p.reason  # TGI refuses dtype here


def test_on_the_fly_fp8_runs_weight_only_on_a_t4():
    """FP8 Marlin from compute capability 7.5: every GPU of the catalog; a T4 (7.5) holds Llama-2-7B
    in 8 bits where 16 bits do not fit."""
    assert all(i.gpu.compute_capability >= vllm.FP8_MIN_COMPUTE_CAPABILITY["fp8_per_tensor"]
               for i in CATALOG.values())
    assert not _plan(LLAMA_7B, "g4dn.xlarge", 1, max_total_tokens=2048).fits
    p = _plan(LLAMA_7B, "g4dn.xlarge", 1, quantize="fp8_per_tensor", max_total_tokens=2048)
    assert p.fits, p.reason


@pytest.mark.parametrize("instance, quantize, dtype, refused", [
    # Per-channel FP8 (PTPC) has no Marlin fallback: SM89 and newer only.
    ("g5.xlarge", "fp8_per_channel", None, "fp8_per_channel needs compute capability 8.9"),
    ("g6e.xlarge", "fp8_per_channel", None, None),
    # vLLM refuses bfloat16 below compute capability 8.0 (a T4).
    ("g4dn.xlarge", "fp8_per_tensor", "bfloat16", "bfloat16 needs compute capability 8.0"),
    ("g4dn.xlarge", "fp8_per_tensor", "float16", None),
])
def test_what_vllm_refuses_at_start_the_planner_refuses(instance, quantize, dtype, refused):
    p = _plan(LLAMA_7B, instance, 1, quantize=quantize, dtype=dtype, max_total_tokens=2048)
    if refused:
        assert not p.fits and refused in p.reason
    else:
        assert p.fits, p.reason


def test_one_sequence_needs_whole_kv_blocks_and_the_reserved_one():
    """vLLM allocates the KV cache in 16-token blocks and keeps one block back: a maxTotalTokens
    that the capacity holds only without that rounding does not fit."""
    long_context = _with(LLAMA_13B, max_position_embeddings=131072)

    def fits(total: int) -> bool:
        return plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(max_total_tokens=total), VLLM).fits

    capacity = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(max_total_tokens=8192),
                    VLLM).kv_capacity_tokens
    largest = (capacity // 16 - 1) * 16
    assert fits(largest) and not fits(largest + 1)


def test_on_the_fly_fp8_halves_the_linear_layers():
    fp8 = _plan(LLAMA_70B, "p5.48xlarge", 2, quantize="fp8_per_tensor", max_total_tokens=4096)
    bf16 = _plan(LLAMA_70B, "p5.48xlarge", 2, max_total_tokens=4096)
    assert fp8.fits and 0.5 < fp8.weights_bytes / bf16.weights_bytes < 0.55


# The command --------------------------------------------------------------------------------------

def test_what_if_under_vllm():
    result = cli("plan", "--model", LLAMA_7B, "--engine", "vllm", "--metadata", PUBLISHED,
                 "--instance-type", "g5.2xlarge", "--json")
    assert result.returncode == 0, result.stderr
    p = json.loads(result.stdout)
    assert p["engine"] == "vllm" and p["max_batch_prefill_tokens"] == 2048
    table = cli("plan", "--model", LLAMA_7B, "--metadata", PUBLISHED, "--instance-type", "g5.2xlarge")
    assert table.stdout.split("\n")[1].split()[1] == "tgi"  # the default engine, in its column


def test_what_if_with_another_engines_quantize_exits_2():
    result = cli("plan", "--model", LLAMA_7B, "--engine", "vllm", "--quantize", "eetq", "--metadata", PUBLISHED)
    assert result.returncode == 2
    assert "--quantize: 'eetq' is not one of vLLM's modes" in result.stderr
