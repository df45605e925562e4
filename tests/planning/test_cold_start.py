"""The cold start by stage (planning/cold_start.py ColdStart, docs/cold-start.md): the stages and what
changes them, the startup probe and Pulumi's waits derived from them, and the plan command."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from components.engines import tgi, vllm
from components.engines.registry import ENGINES, MEMORY_MODELS
from components.offline import mockrun
from components.planning.catalog import CATALOG
from components.planning.lock import read
from components.planning import cold_start as stages
from components.planning.cold_start import ColdStart, cold_start
from components.planning.planner import Request, plan
from components.planning.plans import plan_models, slot_request

from ..conftest import ROOT, cli, run_settings, stack_settings, validate_settings
from ..serving.helpers import DEPLOYMENT, container, manifest

LOCK = read(ROOT / "models.lock.yaml")
QWEN_7B, QWEN_72B = LOCK.models["Qwen/Qwen2.5-7B-Instruct"], LOCK.models["Qwen/Qwen2.5-72B-Instruct"]
STAGES = ("node_seconds", "gpu_seconds", "image_seconds", "process_seconds", "weights_seconds", "warmup_seconds")


def _stages(c: ColdStart) -> dict[str, int]:
    return {s: getattr(c, s) for s in STAGES}


def _changed(a: ColdStart, b: ColdStart) -> set[str]:
    return {s for s in STAGES if getattr(a, s) != getattr(b, s)}


def _plans(stack: str, raw: dict | None = None):
    plans, errors = plan_models(validate_settings(raw or stack_settings(stack)), LOCK, stack, MEMORY_MODELS)
    assert errors == []
    return plans


# The stages -------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_the_stages_add_up(engine):
    startup = MEMORY_MODELS[engine].startup
    c = cold_start(QWEN_7B.weights_bytes, QWEN_7B.parameters, Request(), startup)
    assert c.warm_node_seconds == c.process_seconds + c.weights_seconds + c.warmup_seconds
    assert c.new_node_seconds == sum(_stages(c).values())
    assert c.warm_node_seconds < c.new_node_seconds
    # Each stage as docs/cold-start.md has it: a node 70 s, the GPU 36 s, the image from its
    # registry, the process, the weights from EFS at the measured 175 MiB/s.
    assert (c.node_seconds, c.gpu_seconds) == (70, 36)
    assert (c.image_seconds, c.process_seconds) == {"tgi": (480, 30), "vllm": (600, 36)}[engine]
    assert c.weights_seconds == math.ceil(QWEN_7B.weights_bytes / (175 * 2**20))


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_the_pull_through_cache_and_fast_image_pull_cut_the_image_stage_only(engine):
    startup = MEMORY_MODELS[engine].startup
    at = {(cache, fast): cold_start(QWEN_7B.weights_bytes, QWEN_7B.parameters,
                                    Request(pull_through_cache=cache, fast_image_pull=fast), startup)
          for cache in (False, True) for fast in (False, True)}
    upstream = at[False, False]
    for key, c in at.items():
        if key != (False, False):
            assert _changed(upstream, c) == {"image_seconds"}
            assert c.image_seconds < upstream.image_seconds
    # In-region ECR beats the upstream registries, with SOCI or without; SOCI beats neither off.
    assert at[True, False].image_seconds < at[False, False].image_seconds
    assert at[True, True].image_seconds < at[True, False].image_seconds
    assert at[False, True].image_seconds < at[False, False].image_seconds
    assert (at[True, True].image_from, at[False, False].image_from) == ("ECR cache+SOCI", "upstream")


def test_s3_with_the_run_ai_streamer_cuts_vllm_s_weights_stage_only():
    efs = cold_start(QWEN_72B.weights_bytes, QWEN_72B.parameters, Request(), vllm.STARTUP)
    s3 = cold_start(QWEN_72B.weights_bytes, QWEN_72B.parameters, Request(model_store="s3"), vllm.STARTUP)
    assert _changed(efs, s3) == {"weights_seconds"}
    assert s3.weights_seconds == math.ceil(QWEN_72B.weights_bytes / (860 * 2**20)) < efs.weights_seconds
    assert (efs.weights_from, s3.weights_from) == ("EFS elastic", "S3")
    # EFS's ceiling does not apply to S3: bursting slows EFS, not S3.
    assert cold_start(QWEN_72B.weights_bytes, QWEN_72B.parameters,
                      Request(model_store="s3", throughput_mode="bursting"), vllm.STARTUP) == s3


def test_tgi_cannot_load_from_s3():
    p = plan("Qwen/Qwen2.5-7B-Instruct", QWEN_7B, CATALOG["g6e.xlarge"], 1, Request(model_store="s3"), tgi.MEMORY)
    assert not p.fits and p.reason == "TGI cannot load weights from s3 (only from efs)"
    assert plan("Qwen/Qwen2.5-7B-Instruct", QWEN_7B, CATALOG["g6e.xlarge"], 1, Request(model_store="s3"),
                vllm.MEMORY).fits


def test_bigger_weights_take_longer_to_load_and_warm_up():
    small = cold_start(QWEN_7B.weights_bytes, QWEN_7B.parameters, Request(), tgi.STARTUP)
    big = cold_start(QWEN_72B.weights_bytes, QWEN_72B.parameters, Request(), tgi.STARTUP)
    assert _changed(small, big) == {"weights_seconds", "warmup_seconds"}
    assert big.weights_seconds > 5 * small.weights_seconds and big.warmup_seconds > small.warmup_seconds


def test_vllm_warmup_covers_the_published_starts():
    """The line through the measured starts after the weights (vllm.py) covers both, and the
    larger MoE one above them."""
    for billions, measured in ((8.03, 33.8), (70.55, 91.8), (235.1, 170.5)):
        c = cold_start(0, int(billions * 1e9), Request(), vllm.STARTUP)
        assert c.warmup_seconds >= measured


@settings(max_examples=200, deadline=None)
@given(stored=st.integers(0, 2 * 10**12), more=st.integers(1, 10**12), parameters=st.integers(0, 10**12),
       engine=st.sampled_from(["tgi", "vllm"]), mode=st.sampled_from(["elastic", "provisioned", "bursting"]),
       provisioned=st.none() | st.integers(1, 3000), cache=st.booleans(), fast=st.booleans(),
       store=st.sampled_from(["efs", "s3"]))
def test_every_stage_is_positive_and_the_totals_grow_with_the_weights(stored, more, parameters, engine, mode,
                                                                      provisioned, cache, fast, store):
    startup = MEMORY_MODELS[engine].startup
    if store not in startup.load_mibps:
        store = "efs"
    req = Request(throughput_mode=mode, provisioned_mibps=provisioned, pull_through_cache=cache,
                  fast_image_pull=fast, model_store=store)
    c = cold_start(stored, parameters, req, startup)
    assert all(v >= 0 for v in _stages(c).values())
    assert min(c.node_seconds, c.gpu_seconds, c.image_seconds, c.process_seconds, c.warmup_seconds) > 0
    assert c.new_node_seconds > c.warm_node_seconds >= c.weights_seconds
    bigger = cold_start(stored + more, parameters + more, req, startup)
    assert bigger.weights_seconds >= c.weights_seconds and bigger.warmup_seconds >= c.warmup_seconds
    assert bigger.new_node_seconds >= c.new_node_seconds and bigger.warm_node_seconds >= c.warm_node_seconds
    # A faster path never slows a stage.
    for faster in (dataclasses.replace(req, pull_through_cache=True), dataclasses.replace(req, fast_image_pull=True)):
        assert all(a <= b for a, b in zip(_stages(cold_start(stored, parameters, faster, startup)).values(),
                                          _stages(c).values()))


# From the stack ---------------------------------------------------------------------------------

def test_the_stack_s_cache_and_node_group_reach_the_request():
    raw = stack_settings("dev")
    assert slot_request(*_slot(raw)).pull_through_cache is False
    raw["images"] = {"pullThroughCache": True, "githubUsername": "acme-ci"}
    raw["gpuNodeGroups"][0]["fastImagePull"] = True
    request = slot_request(*_slot(raw))
    assert request.pull_through_cache and request.fast_image_pull and request.model_store == "efs"
    # A pinned image of a registry ECR does not cache comes from that registry, cache or not.
    raw["models"][0]["image"] = "nvcr.io/acme/text-generation-inference:3.3.7"
    assert slot_request(*_slot(raw)).pull_through_cache is False


def _slot(raw: dict):
    settings = validate_settings(raw)
    [slot] = settings.models[0].resolved_slots()
    [group] = [g for g in settings.gpu_node_groups if g.name == slot.node_group]
    return slot, settings, group, MEMORY_MODELS[slot.engine]


# Derived from the plan: the startup probe and Pulumi's waits ------------------------------------

def _deployment(run, name: str):
    return next(r for r in run.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == name)


def test_the_probe_and_pulumi_s_waits_derive_from_the_plan(prod_run):
    models = {m["name"]: m for m in stack_settings("prod")["models"]}
    for name, slots in _plans("prod").items():
        for slot, p in slots.items():
            engine, c = ENGINES[p.engine], p.cold_start
            d = manifest(prod_run, DEPLOYMENT, f"{name}-{slot}")
            start = container(d)["startupProbe"]
            budget = start["periodSeconds"] * start["failureThreshold"]
            # Twice the container's start (its process, weights, warmup), at least the engine's minimum.
            assert budget >= max(engine.min_startup_seconds, 2 * c.warm_node_seconds)
            assert budget - start["periodSeconds"] < max(engine.min_startup_seconds, 2 * c.warm_node_seconds)
            timeouts = _deployment(prod_run, f"{name}-{slot}").custom_timeouts
            create = int(timeouts["create"].rstrip("s"))
            # Pulumi waits for a new node: twice every stage, the probe's budget for the container,
            # and the node at least as long as the Cluster Autoscaler tries.
            assert create >= 2 * c.new_node_seconds
            assert create >= budget + c.node_seconds + c.gpu_seconds + c.image_seconds
            assert create >= stages.MAX_NODE_PROVISION_SECONDS + 2 * c.image_seconds + budget - start["periodSeconds"]
            grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert d["spec"]["progressDeadlineSeconds"] == create + grace
            assert int(timeouts["update"].rstrip("s")) == (create + grace) * models[name]["replicas"]["max"]


def test_fast_image_pull_shortens_pulumi_s_wait_by_twice_the_image_stage(dev_settings):
    [before] = [p for slots in _plans("dev").values() for p in slots.values()]
    base = _deployment(run_settings(dev_settings), "qwen-7b-blue")
    dev_settings["gpuNodeGroups"][0]["fastImagePull"] = True
    [after] = [p for slots in _plans("dev", dev_settings).values() for p in slots.values()]
    fast = _deployment(run_settings(dev_settings), "qwen-7b-blue")
    assert _changed(before.cold_start, after.cold_start) == {"image_seconds"}
    saved = before.cold_start.image_seconds - after.cold_start.image_seconds
    assert saved > 0
    assert int(base.custom_timeouts["create"][:-1]) - int(fast.custom_timeouts["create"][:-1]) == 2 * saved
    probe = [container(mockrun.reveal(r.inputs))["startupProbe"] for r in (base, fast)]
    assert probe[0] == probe[1]  # the container's start is the same: the probe too


def test_the_download_job_waits_for_the_slowest_pull_of_tgi_s_image():
    upstream = stages.image_pull_seconds(tgi.IMAGE_BYTES, False, False)
    assert upstream > stages.image_pull_seconds(tgi.IMAGE_BYTES, True, True)
    weights = QWEN_72B.weights_bytes
    assert tgi.job_timeout_seconds(weights) >= upstream + 2 * tgi.download_seconds(weights)
    # Both the pull and the transfer doubled: 60 s of weights at the Hub's 100 MiB/s.
    assert tgi.job_timeout_seconds(60 * 100 * 2**20) == 2 * (upstream + 60)


# The plan command -------------------------------------------------------------------------------

def test_plan_shows_the_stages_and_both_totals():
    result = cli("plan", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    table, stages = result.stdout.strip().split("\n\n")
    title, header, *rows = stages.splitlines()
    assert title.startswith("cold start by stage")
    assert header.split()[:9] == ["model", "node", "gpu", "image", "process", "weights", "warmup", "new", "node"]
    plans = {name: p for name, slots in _plans("prod").items() for p in slots.values()}
    assert [r.split()[0] for r in rows] == list(plans)
    for row in rows:
        cells = row.split()
        c = plans[cells[0]].cold_start
        assert [int(x) for x in cells[1:9]] == [*_stages(c).values(), c.new_node_seconds, c.warm_node_seconds]
        assert row.endswith(c.weights_from) and c.image_from in row
    # The plan table carries both totals.
    head, *plan_rows = table.splitlines()
    assert "new node s" in head and "warm s" in head
    for row in plan_rows:
        c = plans[row.split()[0]].cold_start
        assert f"  {c.new_node_seconds}  " in row and f"  {c.warm_node_seconds}  " in row


def test_plan_json_has_the_stages():
    [p] = json.loads(cli("plan", "--stack", "dev", "--json").stdout)
    c = p["cold_start"]
    assert set(STAGES) | {"new_node_seconds", "warm_node_seconds", "image_from", "weights_from"} == set(c)
    assert c["new_node_seconds"] == sum(c[s] for s in STAGES)
    assert c["warm_node_seconds"] == c["process_seconds"] + c["weights_seconds"] + c["warmup_seconds"]
