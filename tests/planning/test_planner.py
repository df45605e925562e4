"""The planner, checked against deployments Hugging Face and AWS published (docs/model-facts.md),
against TGI's rules, and through the `plan` command and the program."""

from __future__ import annotations

import json

import pytest

from components import config
from components.config import ConfigError
from components.planning import lock as modellock
from components.planning import planner
from components.planning.catalog import CATALOG
from components.planning.planner import Request, best_plan, plan
from components.planning.plans import load_plans
from components.engines.registry import MEMORY_MODELS
from components.engines.tgi import MEMORY as TGI

from ..conftest import ROOT, cli, run_settings, validate_settings

LOCK = modellock.read(ROOT / "tests" / "data" / "published.lock.yaml")
LLAMA_7B, LLAMA_13B = "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-chat-hf"
LLAMA_70B, GPTQ_13B, FALCON = "meta-llama/Llama-2-70b-hf", "TheBloke/Llama-2-13B-GPTQ", "tiiuae/falcon-7b"


def _plan(model: str, instance: str, shards: int, **request) -> planner.Plan:
    return plan(model, LOCK.models[model], CATALOG[instance], shards, Request(**request), TGI)


# Published deployments -------------------------------------------------------------------------

def test_llama2_7b_fp16_on_one_a10g():
    """HF/SageMaker: Llama-2-7B on ml.g5.2xlarge (1 x A10G)."""
    p = _plan(LLAMA_7B, "g5.2xlarge", 1, max_input_tokens=2048, max_total_tokens=4096)
    assert p.fits, p.reason
    assert p.weights_bytes == 13476839424
    assert p.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2  # 0.5 MiB per token, MHA
    assert best_plan(LLAMA_7B, LOCK.models[LLAMA_7B], Request(), [CATALOG["g5.2xlarge"]], memory=TGI).num_shard == 1


def test_llama2_70b_fp16_on_8_a100_40gb():
    """HF/SageMaker: Llama-2-70B on ml.p4d.24xlarge, SM_NUM_GPUS=8, MAX_INPUT_LENGTH=2048,
    MAX_TOTAL_TOKENS=4096, MAX_BATCH_TOTAL_TOKENS=8192."""
    p = _plan(LLAMA_70B, "p4d.24xlarge", 8, max_input_tokens=2048, max_total_tokens=4096)
    assert p.fits, p.reason
    assert p.kv_capacity_tokens >= 8192  # the batch total the published deployment set
    assert p.kv_bytes_per_token == 8 * (2 * 80 * 1 * 128 * 2)  # one KV head per shard
    assert p.hourly_usd == 21.9576


def test_gptq_13b_on_one_a10g():
    """HF benchmark: TheBloke/Llama-2-13B-GPTQ on ml.g5.2xlarge, QUANTIZE=gptq, 1024/2048."""
    p = _plan(GPTQ_13B, "g5.2xlarge", 1, quantize="gptq", max_input_tokens=1024, max_total_tokens=2048)
    assert p.fits, p.reason
    assert p.weights_bytes == 7260000000 and p.quantize == "gptq"


def test_llama2_13b_fp16_needs_more_than_one_a10g_but_fits_one_a100():
    """HF: 13B on 4 x A10G (ml.g5.12xlarge) or on 1 x A100."""
    assert not _plan(LLAMA_13B, "g5.2xlarge", 1).fits
    g5 = best_plan(LLAMA_13B, LOCK.models[LLAMA_13B], Request(max_total_tokens=4096), [CATALOG["g5.12xlarge"]], memory=TGI)
    assert g5.fits and g5.num_shard == 2
    assert _plan(LLAMA_13B, "p4d.24xlarge", 1, max_total_tokens=4096).fits


def test_70b_fp16_on_one_24gb_gpu_is_impossible():
    p = _plan(LLAMA_70B, "g5.xlarge", 1)
    assert not p.fits
    assert "the weights need 128.5 GiB per GPU; A10G has 22.0 GiB" in p.reason


def test_71_attention_heads_cannot_shard_two_ways():
    p = _plan(FALCON, "g5.12xlarge", 2)
    assert not p.fits and p.reason == "71 attention heads cannot be split into 2 shards"
    assert _plan(FALCON, "g5.12xlarge", 1).fits  # but fits one A10G unsharded


# TGI's rules ------------------------------------------------------------------------------------

def test_a_single_kv_head_is_replicated_on_every_shard():
    entry = LOCK.models[FALCON].model_copy(update={"config": LOCK.models[FALCON].config.model_copy(
        update={"num_attention_heads": 64})})
    one = plan(FALCON, entry, CATALOG["g5.12xlarge"], 1, Request(), TGI)
    four = plan(FALCON, entry, CATALOG["g5.12xlarge"], 4, Request(), TGI)
    assert four.kv_bytes_per_token == 4 * one.kv_bytes_per_token


def test_kv_heads_that_do_not_divide_by_the_shards():
    entry = LOCK.models[LLAMA_70B]
    p = plan(LLAMA_70B, entry.model_copy(update={"config": entry.config.model_copy(
        update={"num_key_value_heads": 2})}), CATALOG["p4d.24xlarge"], 4, Request(), TGI)
    assert not p.fits and p.reason == "2 KV heads cannot be split into 4 shards"


@pytest.mark.parametrize("model,instance,shards,request_,reason", [
    (LLAMA_7B, "g6e.xlarge", 1, {"quantize": "fp8"}, "fp8 needs Hopper (H100/H200) or newer; g6e.xlarge has L40S"),
    (LLAMA_7B, "g5.12xlarge", 2, {"quantize": "awq"}, "quantize 'awq' needs a checkpoint quantized with awq; this one is not quantized"),
    (GPTQ_13B, "g5.12xlarge", 1, {"quantize": "eetq"}, "quantize 'eetq' quantizes fp16/bf16 weights; this checkpoint is already quantized with 'gptq'"),
    (GPTQ_13B, "g5.12xlarge", 1, {"quantize": "gptq", "dtype": "float16"}, "dtype and quantize 'gptq' cannot both be set"),
    (LLAMA_7B, "g5.12xlarge", 1, {"max_total_tokens": 8192}, "maxTotalTokens 8192 is more than the model's context (4096)"),
    (LLAMA_7B, "g5.12xlarge", 1, {"max_input_tokens": 4096, "max_total_tokens": 4096}, "maxInputTokens 4096 must be less than maxTotalTokens 4096"),
    (LLAMA_7B, "g5.xlarge", 2, {}, "2 shards need 2 GPUs; g5.xlarge has 1"),
    (LLAMA_7B, "g5.48xlarge", 3, {}, "num_shard 3 is not one of 1, 2, 4, 8"),
])
def test_tgi_rules(model, instance, shards, request_, reason):
    p = _plan(model, instance, shards, **request_)
    assert not p.fits and p.reason.startswith(reason), p.reason


def test_exl2_cannot_be_sharded():
    entry = LOCK.models[GPTQ_13B].model_copy(update={"quantization": modellock.Quantization(method="exl2", bits=5)})
    assert plan(GPTQ_13B, entry, CATALOG["g5.12xlarge"], 1, Request(), TGI).fits
    p = plan(GPTQ_13B, entry, CATALOG["g5.12xlarge"], 2, Request(), TGI)
    assert not p.fits and p.reason.startswith("exl2 cannot be sharded")


def test_prequantized_checkpoint_runs_with_its_own_method():
    assert _plan(GPTQ_13B, "g5.2xlarge", 1).quantize == "gptq"


def test_dtype_on_a_prequantized_checkpoint_is_refused():
    """TGI applies the checkpoint's quantization even without QUANTIZE; DTYPE then conflicts."""
    p = _plan(GPTQ_13B, "g5.2xlarge", 1, dtype="float16")
    assert not p.fits
    assert p.reason == ("dtype and quantize 'gptq' cannot both be set (TGI: only 1 can be set); "
                        "the checkpoint is quantized, drop dtype")


def test_fp8_on_hopper_halves_the_weights():
    p = _plan(LLAMA_70B, "p5.48xlarge", 2, quantize="fp8", max_total_tokens=4096)
    assert p.fits, p.reason
    unquantized = _plan(LLAMA_70B, "p5.48xlarge", 2, max_total_tokens=4096)
    assert 0.5 < p.weights_bytes / unquantized.weights_bytes < 0.55  # embeddings stay 16-bit


def test_unset_limits_follow_tgi_defaults():
    p = _plan(LLAMA_7B, "g6e.xlarge", 1)
    assert p.max_total_tokens == 4096  # min(KV capacity, context)
    assert p.max_input_tokens == 4095
    assert p.max_batch_prefill_tokens == 4096


def test_without_chunked_prefill_a_whole_prompt_is_one_prefill():
    t4 = _plan(GPTQ_13B, "g4dn.12xlarge", 1, max_input_tokens=3000, max_total_tokens=4000)
    assert t4.max_batch_prefill_tokens == 4096
    a10g = _plan(LLAMA_7B, "g5.2xlarge", 1, max_input_tokens=4000, max_total_tokens=4096)
    assert a10g.max_batch_prefill_tokens == 4096


def test_hourly_cost_is_the_share_of_the_instance_a_replica_uses():
    assert _plan(LLAMA_70B, "p4d.24xlarge", 4).hourly_usd == round(21.9576 / 2, 4)


def test_cold_start_follows_the_efs_throughput_mode():
    """TGI's loader reads EFS below elastic's per-client ceiling; bursting's 100 MiB/s and a lower
    provisioned throughput cap it."""
    elastic = _plan(LLAMA_70B, "p4d.24xlarge", 8).cold_start
    bursting = _plan(LLAMA_70B, "p4d.24xlarge", 8, throughput_mode="bursting").cold_start
    slow = _plan(LLAMA_70B, "p4d.24xlarge", 8, throughput_mode="provisioned", provisioned_mibps=100).cold_start
    assert elastic.weights_seconds == -(-137953316864 // (TGI.startup.load_mibps["efs"] * 2**20))
    assert bursting.weights_seconds == -(-137953316864 // (100 * 2**20)) > elastic.weights_seconds
    assert slow.weights_seconds == bursting.weights_seconds and slow.weights_from == "EFS provisioned"


def test_cheapest_instance_that_fits():
    entry = LOCK.models[LLAMA_7B]
    assert best_plan(LLAMA_7B, entry, Request(max_total_tokens=4096), memory=TGI).instance_type == "g6.xlarge"
    seventy = best_plan(LLAMA_70B, LOCK.models[LLAMA_70B], Request(max_total_tokens=4096), memory=TGI)
    assert seventy.fits and seventy.hourly_usd == min(
        p.hourly_usd for p in (best_plan(LLAMA_70B, LOCK.models[LLAMA_70B], Request(max_total_tokens=4096), [i], memory=TGI)
                               for i in CATALOG.values()) if p.fits)


def test_a_node_group_shares_one_shard_count_and_plans_for_its_tightest_type():
    entry = LOCK.models[LLAMA_13B]
    p = planner.plan_node_group(LLAMA_13B, entry, ["g5.12xlarge", "g6e.12xlarge"], Request(max_total_tokens=4096), TGI)
    assert p.fits and p.num_shard == 2 and p.instance_type == "g5.12xlarge"
    assert p.hourly_usd == round(10.4926 * 2 / 4, 4)  # the dearer type


# The program and the CLI ------------------------------------------------------------------------

def test_a_model_that_fits_nowhere_in_its_group_stops_the_program(dev_settings):
    dev_settings["models"][0]["id"] = "Qwen/Qwen2.5-72B-Instruct"
    with pytest.raises(ConfigError) as err:
        run_settings(dev_settings)
    [line] = err.value.errors
    assert line == ("models[0]: Qwen/Qwen2.5-72B-Instruct does not fit node group gpu-24g (g6.xlarge, "
                    "1 shard(s)): the weights need 135.4 GiB per GPU; L4 has 22.0 GiB, of which TGI "
                    "uses 90%; the cheapest catalog instance that fits: p4de.24xlarge with 2 shard(s), "
                    "$6.8618/h per replica")


def test_a_model_missing_from_the_lock_names_it_and_says_to_lock(dev_settings):
    dev_settings["models"][0]["id"] = "acme/unlocked-model"
    with pytest.raises(ConfigError, match=r"models\[0\]\.id: acme/unlocked-model is not in "
                                          r"models.lock.yaml: run `python -m components lock --stack test`"):
        run_settings(dev_settings)


def test_a_stale_pinned_revision_is_reported(dev_settings):
    dev_settings["models"][0]["revision"] = "0" * 40
    with pytest.raises(ConfigError, match=r"models\[0\]\.revision: Qwen/Qwen2.5-7B-Instruct at '0{40}' is not in"):
        run_settings(dev_settings)


def test_a_gated_model_needs_the_hf_token(tmp_path, dev_settings):
    dev_settings["models"][0]["id"] = LLAMA_7B
    dev_settings["models"][0]["maxInputTokens"] = 2048
    dev_settings["models"][0]["maxTotalTokens"] = 4096
    settings = validate_settings(dev_settings)
    stack = config.Stack(project="llmserve", stack="dev", region="us-east-1", settings=settings)
    with pytest.raises(ConfigError, match=r"hfToken: required: models\[0\] \(meta-llama/Llama-2-7b-hf\) is gated"):
        load_plans(stack, LOCK, MEMORY_MODELS)
    import pulumi
    plans, _ = load_plans(stack.model_copy(update={"hf_token": pulumi.Output.secret("hf_x")}), LOCK, MEMORY_MODELS)
    assert plans["qwen-7b"]["blue"].fits


def test_plan_command_for_a_stack():
    result = cli("plan", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().split("\n\n")[0].splitlines()  # the plan table (stages follow)
    assert header.split()[:4] == ["model", "engine", "instance", "shards"]
    assert [r.split()[:5] for r in rows] == [["qwen-14b", "tgi", "g6e.xlarge", "1", "yes"],
                                            ["qwen-72b", "tgi", "g6e.12xlarge", "4", "yes"],
                                            ["qwen-7b", "vllm", "g6e.xlarge", "1", "yes"]]
    as_json = json.loads(cli("plan", "--stack", "dev", "--json").stdout)
    assert [p["name"] for p in as_json] == ["qwen-7b"] and as_json[0]["fits"] is True


FIELDS = {"fits", "reason", "instance_type", "num_shard", "weights_bytes", "kv_bytes_per_token",
          "kv_capacity_tokens", "max_input_tokens", "max_total_tokens", "max_batch_prefill_tokens",
          "hourly_usd", "cold_start", "decode_ms_per_token", "generation_seconds"}


def test_what_if_plan_json():
    metadata = str(ROOT / "tests" / "data" / "published.lock.yaml")
    result = cli("plan", "--model", LLAMA_70B, "--metadata", metadata, "--instance-type",
                 "p4d.24xlarge", "--num-shard", "8", "--max-total-tokens", "4096", "--json")
    assert result.returncode == 0, result.stderr
    p = json.loads(result.stdout)
    assert FIELDS <= set(p)
    assert p["fits"] is True and p["num_shard"] == 8 and p["instance_type"] == "p4d.24xlarge"
    cheapest = json.loads(cli("plan", "--model", LLAMA_7B, "--metadata", metadata, "--json").stdout)
    assert cheapest["instance_type"] == "g6.xlarge" and cheapest["num_shard"] == 1


def test_what_if_that_does_not_fit_exits_0_and_says_so():
    metadata = str(ROOT / "tests" / "data" / "published.lock.yaml")
    result = cli("plan", "--model", LLAMA_70B, "--metadata", metadata, "--instance-type", "g5.xlarge")
    assert result.returncode == 0
    assert "does not fit: the weights need 128.5 GiB per GPU" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--model", "acme/none"], "--model: acme/none is not in"),
    (["--model", LLAMA_7B, "--instance-type", "m5.large"], "argument --instance-type: invalid choice: 'm5.large'"),
    (["--model", LLAMA_7B, "--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    (["--model", LLAMA_7B, "--num-shard", "3"], "argument --num-shard: invalid choice: 3"),
    (["--model", LLAMA_7B, "--instance-type", "g5.xlarge", "--num-shard", "4"], "--num-shard: no instance type has that many GPUs"),
    (["--stack", "nope"], "--stack: no stack file"),
])
def test_what_if_invalid_input_exits_2(args, message):
    metadata = str(ROOT / "tests" / "data" / "published.lock.yaml")
    result = cli("plan", *args, "--metadata", metadata)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_readme_shows_the_plan_of_the_example_stacks():
    readme = (ROOT / "README.md").read_text()
    for stack in ("dev", "prod"):
        table = cli("plan", "--stack", stack).stdout.strip()
        assert table in readme, f"README's plan table of {stack} is out of date:\n{table}"


def test_max_input_tokens_must_stay_below_what_the_kv_cache_holds():
    """A long-context model: TGI's total defaults to the KV capacity, below the context; a
    maxInputTokens above that capacity can never start (MAX_INPUT_TOKENS < MAX_TOTAL_TOKENS)."""
    entry = LOCK.models[LLAMA_13B]  # 40 KV heads: 0.8 MiB of KV cache per token
    long_context = entry.model_copy(update={"config": entry.config.model_copy(
        update={"max_position_embeddings": 131072})})
    fits = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4, Request(max_input_tokens=4096), TGI)
    assert fits.fits and fits.max_total_tokens == fits.kv_capacity_tokens < 131072
    too_long = plan(LLAMA_13B, long_context, CATALOG["g5.12xlarge"], 4,
                    Request(max_input_tokens=fits.kv_capacity_tokens + 1), TGI)
    assert not too_long.fits
    assert too_long.reason.startswith(f"maxInputTokens {fits.kv_capacity_tokens + 1} must be less than "
                                      f"maxTotalTokens, which is {fits.kv_capacity_tokens} here")


def test_a_group_too_small_for_max_replicas_is_a_warning(tmp_path):
    """Two nodes of one GPU can hold the minimum (1) but not the maximum (5): the stack is
    accepted, and both plan and render say what the autoscaler will not reach."""
    import yaml
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["llmserve:models"][0]["replicas"] = {"min": 1, "max": 5}
    stack = tmp_path / "Pulumi.warn.yaml"
    stack.write_text(yaml.safe_dump(doc))
    warning = "gpuNodeGroups[0].maxSize: 2 node(s) of 1 GPUs hold 2; the maximum replicas of qwen-7b need 5"
    planned = cli("plan", "--stack", "warn", "--config-file", str(stack))
    assert planned.returncode == 0 and f"warning: {warning}" in planned.stderr
    rendered = cli("render", "--stack", "warn", "--config-file", str(stack), "--out", str(tmp_path / "out"))
    assert rendered.returncode == 0 and warning in rendered.stderr
