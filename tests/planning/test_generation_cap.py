"""The generation cap (how long one request may generate) and what it bounds behind an ALB: the
deregistration delay AWS allows (a ConfigError) and the ALB's idle timeout (a warning)."""

from __future__ import annotations

import pytest

from components import config
from components.config import ConfigError
from components.planning import lock as modellock
from components.planning import planner
from components.planning.catalog import CATALOG
from components.planning.planner import Request, plan
from components.planning.plans import load_plans
from components.engines.registry import MEMORY_MODELS
from components.engines.tgi import MEMORY as TGI

from ..conftest import ROOT, cli, stack_settings, validate_settings
from .test_planner import LLAMA_7B, LLAMA_70B, _plan

LOCKED = modellock.read(ROOT / "models.lock.yaml")  # the project's: the stacks' models


def _weights_at_peak_seconds(p: planner.Plan) -> float:
    """The fastest the weights can be read once per new token: datasheet bandwidth, no KV cache."""
    bandwidth = CATALOG[p.instance_type].gpu.memory_bandwidth_gbps * 1e9
    return (p.max_total_tokens - 1) * (p.weights_bytes / p.num_shard) / bandwidth


def test_the_cap_is_never_faster_than_reading_the_weights_at_peak_bandwidth():
    for model, instance, shards in ((LLAMA_7B, "g5.2xlarge", 1), (LLAMA_70B, "p4d.24xlarge", 8),
                                    (LLAMA_7B, "p5.4xlarge", 1)):
        p = _plan(model, instance, shards, max_total_tokens=4096)
        assert p.fits, p.reason
        assert p.generation_seconds >= _weights_at_peak_seconds(p)
        assert p.generation_seconds == planner.generation_seconds(p.max_total_tokens, p.decode_ms_per_token)


def test_faster_memory_more_shards_and_fewer_tokens_shorten_the_cap():
    a10g = _plan(LLAMA_7B, "g5.2xlarge", 1, max_total_tokens=4096)
    h100 = _plan(LLAMA_7B, "p5.4xlarge", 1, max_total_tokens=4096)
    assert h100.decode_ms_per_token < a10g.decode_ms_per_token
    one, four = (_plan(LLAMA_7B, "g5.12xlarge", n, max_total_tokens=4096) for n in (1, 4))
    assert four.decode_ms_per_token < one.decode_ms_per_token
    short = _plan(LLAMA_7B, "g5.2xlarge", 1, max_total_tokens=2048)
    assert short.generation_seconds < a10g.generation_seconds


def test_a_node_group_is_capped_by_its_slowest_gpu():
    """dev's group mixes L4 (300 GB/s) and A10G (600 GB/s): a pod may land on either."""
    entry = LOCKED.models["Qwen/Qwen2.5-7B-Instruct"]
    request = Request(max_total_tokens=8192)
    group = planner.plan_node_group("q", entry, ["g6.xlarge", "g5.xlarge"], request, TGI)
    alone = [plan("q", entry, CATALOG[t], 1, request, TGI) for t in ("g6.xlarge", "g5.xlarge")]
    assert group.decode_ms_per_token == max(p.decode_ms_per_token for p in alone)
    assert group.generation_seconds == max(p.generation_seconds for p in alone)


def _with_ingress(settings: dict) -> dict:
    del settings["gateway"]
    settings["ingress"] = stack_settings("ingress")["ingress"]
    settings["models"][0]["evictions"] = "block"  # one replica behind a load balancer
    return settings


def _load(settings: dict):
    stack = config.Stack(project="llmserve", stack="test", region="us-east-1",
                         settings=validate_settings(settings))
    return load_plans(stack, LOCKED, MEMORY_MODELS)


def test_a_generation_too_long_to_drain_behind_an_alb_is_refused(dev_settings):
    """32768 tokens on dev's L4s: the drain would need a deregistration delay over 3600 s."""
    settings = _with_ingress(dev_settings)
    settings["models"][0]["maxTotalTokens"] = 32768
    with pytest.raises(ConfigError) as err:
        _load(settings)
    [line] = err.value.errors
    assert line.startswith("models[0].maxTotalTokens: 32768 lets qwen-7b (Qwen/Qwen2.5-7B-Instruct) "
                           "generate 32767 tokens per request")
    assert "node group gpu-24g" in line and "the 3600 s an ALB allows" in line
    allowed = int(line.split("at most ")[1].split()[0])
    settings["models"][0]["maxTotalTokens"] = allowed  # what the message allows is accepted
    plans, _ = _load(settings)
    assert planner.PRESTOP_SECONDS + plans["qwen-7b"]["blue"].generation_seconds <= 3600
    settings["models"][0]["maxTotalTokens"] = allowed + 1
    with pytest.raises(ConfigError, match=r"models\[0\]\.maxTotalTokens: "):
        _load(settings)


def test_without_a_load_balancer_there_is_no_deregistration_limit(dev_settings):
    dev_settings["models"][0]["maxTotalTokens"] = 32768
    plans, warnings = _load(dev_settings)
    assert plans["qwen-7b"]["blue"].generation_seconds > 3600 and warnings == []


def test_a_slot_of_its_own_is_named_in_the_error(dev_settings):
    settings = _with_ingress(dev_settings)
    settings["models"][0].update(slots={"blue": {}, "green": {"maxTotalTokens": 32768}}, active="blue")
    with pytest.raises(ConfigError) as err:
        _load(settings)
    [line] = err.value.errors  # blue keeps the model's 8192
    assert line.startswith("models[0].slots.green.maxTotalTokens: 32768 lets qwen-7b")


def test_generations_longer_than_the_idle_timeout_are_a_warning():
    settings = stack_settings("ingress")
    idle = settings["ingress"]["idleTimeoutSeconds"] = 900  # the ALB's own limit is 4000
    plans, warnings = _load(settings)
    longer = [m for m, slots in plans.items() if slots["blue"].generation_seconds > idle]
    assert longer and len([w for w in warnings if "ingress.idleTimeoutSeconds" in w]) == len(longer)
    assert all('"stream": true' in w for w in warnings if "idleTimeoutSeconds" in w)
    settings["ingress"]["idleTimeoutSeconds"] = 4000
    assert not any("idleTimeoutSeconds" in w for w in _load(settings)[1])


def test_the_plan_command_shows_the_cap_and_warns():
    result = cli("plan", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().split("\n\n")[0].splitlines()  # the plan table (stages follow)
    assert header.split()[-4:] == ["ms/token", "gen", "cap", "s"]
    plans, _ = _load(stack_settings("prod"))
    assert [int(r.split()[-1]) for r in rows] == [p["blue"].generation_seconds for p in plans.values()]


def test_max_input_tokens_on_a_vllm_slot_is_said_to_be_ignored(dev_settings):
    """vLLM has no input limit: a maxInputTokens the slot inherits does nothing there."""
    dev_settings["models"][0]["slots"] = {"blue": {}, "green": {"engine": "vllm"}}
    dev_settings["models"][0]["active"] = "blue"
    _, warnings = _load(dev_settings)
    assert [w for w in warnings if "maxInputTokens" in w] == [
        "models[0].slots.green.maxInputTokens: vLLM has no input limit of its own (prompt and "
        "output share maxTotalTokens): ignored on this slot"]
