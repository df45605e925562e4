"""The TGI Deployment of each slot: launcher settings from the plan, scheduling, resources, probes, shutdown, hardening, rollout."""

from __future__ import annotations

import re

import pytest

from components.engines.registry import MEMORY_MODELS
from components.offline import mockrun
from components.planning.catalog import CATALOG
from components.planning.plans import plan_models

from ..conftest import TGI, names, run_settings, stack_settings, validate_settings
from .helpers import DEPLOYMENT, JOB, LOCK, container, env, manifest


def test_launcher_settings_are_real_and_come_from_the_plan(prod_run):
    c = container(manifest(prod_run, DEPLOYMENT, "qwen-72b-blue"))
    e = env(c)
    plan = mockrun.reveal(prod_run.outputs)["modelPlans"]["qwen-72b"]["blue"]
    assert e["MODEL_ID"] == "Qwen/Qwen2.5-72B-Instruct"
    assert e["REVISION"] == LOCK.models["Qwen/Qwen2.5-72B-Instruct"].revision  # pinned by the lock
    assert e["NUM_SHARD"] == str(plan["numShard"]) == "4"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == e["NUM_SHARD"]
    assert e["MAX_INPUT_TOKENS"] == str(plan["maxInputTokens"])
    assert e["MAX_TOTAL_TOKENS"] == str(plan["maxTotalTokens"])
    assert e["MAX_BATCH_PREFILL_TOKENS"] == "4096"
    assert "MAX_BATCH_TOTAL_TOKENS" not in e and "MAX_INPUT_LENGTH" not in e
    assert e["HUGGINGFACE_HUB_CACHE"] == "/data/hub" and e["HF_HUB_OFFLINE"] == "1"
    assert e["USAGE_STATS"] == "off" and e["JSON_OUTPUT"] == "true"
    assert "API_KEY" not in e  # behind the gateway: the engine holds no key (test_gateway.py)
    # Every variable is one TGI reads at the pinned tag (tests/data/tgi.yaml).
    assert set(e) <= set(TGI["env"]["launcher"]) | set(TGI["env"]["runtime"]), set(e)


def test_without_the_gateway_the_engines_check_the_shared_key(ingress_run):
    """Prod with the ingress: every engine reads the one apiKey from its Secret (TGI's API_KEY,
    vLLM's VLLM_API_KEY)."""
    ref = {"secretKeyRef": {"name": "tgi-api-key", "key": "API_KEY"}}
    assert env(container(manifest(ingress_run, DEPLOYMENT, "qwen-72b-blue")))["API_KEY"] == ref
    assert env(container(manifest(ingress_run, DEPLOYMENT, "qwen-7b-blue")))["VLLM_API_KEY"] == ref


def test_quantize_or_dtype_is_set_from_the_config(dev_settings):
    dev_settings["models"][0]["dtype"] = "bfloat16"
    e = env(container(manifest(run_settings(dev_settings), DEPLOYMENT)))
    assert e["DTYPE"] == "bfloat16" and "QUANTIZE" not in e
    dev_settings["models"][0].update(dtype=None, quantize="eetq")
    e = env(container(manifest(run_settings(dev_settings), DEPLOYMENT)))
    assert e["QUANTIZE"] == "eetq" and "DTYPE" not in e


def test_image_is_pinned(dev_run):
    image = container(manifest(dev_run, DEPLOYMENT))["image"]
    assert re.fullmatch(r"ghcr\.io/huggingface/text-generation-inference:\d+\.\d+\.\d+", image)


def test_scheduling_on_the_planned_gpu_group(prod_run):
    spec = manifest(prod_run, DEPLOYMENT, "qwen-72b-blue")["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "llmserve/node-group", "operator": "In", "values": ["l40s-x4"]}]
    assert {t["topologyKey"] for t in spec["topologySpreadConstraints"]} >= {"topology.kubernetes.io/zone"}


def test_cpu_and_memory_fit_the_share_of_the_node(prod_run):
    c = container(manifest(prod_run, DEPLOYMENT, "qwen-72b-blue"))
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    # 4 of the 4 GPUs of a g6e.12xlarge (48 vCPU, 384 GiB): most of it, not all.
    assert 24 <= int(req["cpu"]) < 48 and int(lim["cpu"]) <= 48
    assert req["memory"] == lim["memory"] and 100 <= int(req["memory"][:-2]) < 384
    small = container(manifest(prod_run, DEPLOYMENT, "qwen-14b-blue"))["resources"]["limits"]
    assert int(small["memory"][:-2]) < 32 and int(small["cpu"]) <= 4  # a g6e.xlarge


def test_shared_memory_for_nccl_grows_with_the_shards(prod_run):
    volumes = {v["name"]: v for v in manifest(prod_run, DEPLOYMENT, "qwen-72b-blue")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "qwen-72b-cache"}


def test_probes_cover_the_cold_start(prod_run):
    c = container(manifest(prod_run, DEPLOYMENT, "qwen-72b-blue"))
    start = c["startupProbe"]
    budget = start["periodSeconds"] * start["failureThreshold"]
    entry = LOCK.models["Qwen/Qwen2.5-72B-Instruct"]
    # Reading 145 GB from EFS at 1,500 MiB/s alone takes ~92 s; the budget covers it twice over.
    assert budget >= max(300, 2 * (entry.weights_bytes / (1500 * 2**20)))
    assert start["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 300  # a busy server is not killed


def test_small_models_still_get_five_minutes_to_start(dev_run):
    start = container(manifest(dev_run, DEPLOYMENT))["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] == 300


def plan_instance_types(stack: str, model: str) -> list[str]:
    settings = validate_settings(stack_settings(stack))
    [m] = [m for m in settings.models if m.name == model]
    [group] = [g for g in settings.gpu_node_groups if g.name == m.node_group]
    return group.instance_types


def _plans(stack: str):
    plans, errors = plan_models(validate_settings(stack_settings(stack)), LOCK, stack, MEMORY_MODELS)
    assert errors == []
    return plans


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shutdown_lets_the_longest_generation_finish(stack_runs, stack):
    """The engine (TGI, vLLM) drains for the plan's generation cap, the pod's grace period (which counts the
    preStop) outlasts preStop + drain, and the cap is no shorter than reading the weights once
    per new token at the GPU's datasheet bandwidth."""
    for name, slots in _plans(stack).items():
        for slot, plan in slots.items():
            spec = manifest(stack_runs[stack], DEPLOYMENT, f"{name}-{slot}")["spec"]["template"]["spec"]
            pre = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            c = spec["containers"][0]  # TGI's variable, or vLLM's flag (seconds)
            drain = int(env(c)["GRACEFUL_TERMINATION_TIMEOUT"] if plan.engine == "tgi"
                        else c["args"][c["args"].index("--shutdown-timeout") + 1])
            assert pre >= 5 and drain == plan.generation_seconds
            slowest = min(CATALOG[t].gpu.memory_bandwidth_gbps for t in plan_instance_types(stack, name))
            assert drain >= (plan.max_total_tokens - 1) * plan.weights_bytes / plan.num_shard / (slowest * 1e9)
            assert pre + drain < spec["terminationGracePeriodSeconds"] <= pre + drain + 60


def test_pod_is_hardened_except_for_running_as_root(dev_run):
    d = manifest(dev_run, DEPLOYMENT)
    spec = d["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = spec["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "runAsNonRoot" not in sc and "runAsNonRoot" not in spec["securityContext"]
    # No capability to bind port 80: TGI listens on an unprivileged port.
    assert env(spec["containers"][0])["PORT"] == "8080"
    assert {p["name"]: p["containerPort"] for p in spec["containers"][0]["ports"]} == {"http": 8080, "metrics": 9000}
    account = manifest(dev_run, "kubernetes:core/v1:ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_rollout_works_without_a_spare_gpu_node(prod_run):
    """Evictions allowed (qwen-14b): a rollout stops an old pod first, freeing its GPU."""
    strategy = manifest(prod_run, DEPLOYMENT, "qwen-14b-blue")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_pulumi_waits_long_enough_and_in_order(prod_run):
    job = next(r for r in prod_run.of_type(JOB) if "qwen-72b" in r.name)
    deployment = next(r for r in prod_run.of_type(DEPLOYMENT) if r.name.endswith("qwen-72b-blue"))
    assert job.name in names(deployment.dependencies)  # only the cache is read at start
    job_s = int(job.custom_timeouts["create"].rstrip("s"))
    dep_s = int(deployment.custom_timeouts["create"].rstrip("s"))
    download = 145412407296 / (100 * 2**20)
    assert download < job_s < 3 * 3600  # neither gives up on a healthy download nor waits forever
    assert dep_s > 600 + 300 and dep_s < 2 * 3600  # a GPU node, the image, the cold start
    # A rollout first waits for an old pod to drain (its GPUs) before a new one starts.
    spec = manifest(prod_run, DEPLOYMENT, "qwen-72b-blue")["spec"]
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    # Kubernetes calls a rollout failed after progressDeadlineSeconds without progress (600 s by
    # default): at least one step, a drain and a start.
    assert spec["progressDeadlineSeconds"] >= dep_s + grace
    # The pods are replaced one step at a time, as many steps as replicas.max.
    models = {m["name"]: m for m in stack_settings("prod")["models"]}
    steps = models["qwen-72b"]["replicas"]["max"]
    assert int(deployment.custom_timeouts["update"].rstrip("s")) >= steps * spec["progressDeadlineSeconds"]
