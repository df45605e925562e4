"""The vLLM Deployment of a slot (prod's qwen-7b), every setting read from the rendered objects and
checked against vLLM's facts at the pinned tag (tests/data/vllm.yaml); blue-green across engines."""

from __future__ import annotations

import copy

import pytest
import yaml

from components.config.images import cached_image
from components.config.ingress import IDLE_TIMEOUT_MAX_SECONDS
from components.engines import vllm
from components.offline import mockrun

from ..conftest import ROOT, run_prod, run_settings, stack_settings
from ..infra.test_image_cache import REGISTRY
from .helpers import DEPLOYMENT, JOB, LOCK, container, env, manifest

VLLM = yaml.safe_load((ROOT / "tests" / "data" / "vllm.yaml").read_text())
MODEL = "qwen-7b"
REPO = "Qwen/Qwen2.5-7B-Instruct"


def _args(c: dict) -> dict[str, list[str]]:
    """`vllm serve` arguments as flag -> values (the positional model under '')."""
    out: dict[str, list[str]] = {"": []}
    flag = ""
    for a in c["args"]:
        if a.startswith("--"):
            flag = a
            out[flag] = []
        else:
            out[flag].append(a)
    return out


@pytest.fixture(scope="module")
def efs_run() -> mockrun.Run:
    """Prod with qwen-7b read from the EFS cache (prod streams it from S3: test_model_store.py)."""
    settings = stack_settings("prod")
    next(m for m in settings["models"] if m["name"] == MODEL).pop("store")
    return run_prod(settings)


@pytest.fixture(scope="module")
def deployment(efs_run) -> dict:
    return manifest(efs_run, DEPLOYMENT, f"{MODEL}-blue")


@pytest.fixture(scope="module")
def plan(efs_run) -> dict:
    return mockrun.reveal(efs_run.outputs)["modelPlans"][MODEL]["blue"]


def test_the_image_is_vllms_pinned_release(deployment):
    c = container(deployment)
    assert c["name"] == "vllm"
    assert f"{VLLM['image']['repository']}:{VLLM['image']['tag']}" == vllm.DEFAULT_IMAGE
    # Prod pulls it through its ECR pull-through cache (tests/infra/test_image_cache.py).
    assert c["image"] == cached_image(vllm.DEFAULT_IMAGE, REGISTRY)
    assert "command" not in c  # the image's entrypoint is `vllm serve`: arguments only
    assert VLLM["image"]["entrypoint"] == ["vllm", "serve"]


def test_serve_arguments_are_real_and_come_from_the_plan(deployment, plan):
    c = container(deployment)
    args = _args(c)
    assert args[""] == [REPO]  # the model first (positional)
    assert set(args) - {""} <= set(VLLM["flags"]), set(args)
    assert plan["engine"] == "vllm"
    assert args["--revision"] == [LOCK.models[REPO].revision]  # the locked commit
    assert args["--served-model-name"] == [MODEL, REPO]  # the first is the metric's model_name
    assert args["--port"] == [str(VLLM["port"])]
    assert args["--tensor-parallel-size"] == [str(plan["numShard"])] == [c["resources"]["limits"]["nvidia.com/gpu"]]
    assert args["--max-model-len"] == [str(plan["maxTotalTokens"])] == ["16384"]
    assert args["--gpu-memory-utilization"] == [str(VLLM["flags"]["--gpu-memory-utilization"])] == ["0.92"]
    # An L40S (44.5 GiB) is in vLLM's small tier: what vLLM would pick, written out.
    tier = VLLM["batch_defaults"][0]
    assert args["--max-num-batched-tokens"] == [str(tier["max_num_batched_tokens"])]
    assert args["--max-num-seqs"] == [str(tier["max_num_seqs"])]
    assert "--quantization" not in args and "--dtype" not in args and "--api-key" not in args
    spec = deployment["spec"]["template"]["spec"]
    drain = int(args["--shutdown-timeout"][0])
    preStop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain > 0  # 0 would abort in-flight requests on SIGTERM
    assert spec["terminationGracePeriodSeconds"] > preStop + drain


def test_environment_offline_from_the_shared_cache(efs_run, deployment):
    c = container(deployment)
    e = env(c)
    assert e["HF_HUB_OFFLINE"] in VLLM["env"]["HF_HUB_OFFLINE"]["true_values"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    # The hub cache the download Job wrote, under the same volume.
    [job] = [j for j in efs_run.of_type(JOB) if j.inputs["metadata"]["name"].startswith(f"{MODEL}-download-")]
    [download] = mockrun.reveal(job.inputs)["spec"]["template"]["spec"]["containers"]
    job_env = env(download)
    assert e["HF_HUB_CACHE"] == job_env["HUGGINGFACE_HUB_CACHE"] == f"{mounts['cache']}/hub"
    assert job_env["REVISION"] == _args(c)["--revision"][0]
    assert e["HOME"] == VLLM["image"]["user"]["home"]
    assert e["VLLM_NO_USAGE_STATS"] == VLLM["env"]["VLLM_NO_USAGE_STATS"]["disables_usage_stats_when"]
    assert "VLLM_API_KEY" not in e  # behind the gateway: the engine holds no key (test_gateway.py)
    assert not set(e) & set(VLLM["env"]["never_set"])
    # The pod keeps idle connections longer than any ALB may (its 5 s default would make the ALB
    # reuse closed connections: 502s).
    idle = int(stack_settings("ingress")["ingress"]["idleTimeoutSeconds"])
    assert int(e["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]) > max(idle, IDLE_TIMEOUT_MAX_SECONDS)
    assert set(e) - {"HOME"} <= set(VLLM["env"]), set(e)  # HOME: the image user's, for its caches
    # The engine core's start gets the startup probe's budget.
    start = c["startupProbe"]
    assert int(e["VLLM_ENGINE_READY_TIMEOUT_S"]) == start["periodSeconds"] * start["failureThreshold"]


def test_runs_as_the_images_vllm_user_with_a_read_only_root(deployment):
    spec = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    user = VLLM["image"]["user"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": user["uid"], "runAsGroup": user["gid"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/tmp", user["home"]):  # IPC sockets, compile and kernel caches
        assert "emptyDir" in volumes[mounts[path]]
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"  # tensor parallel
    assert spec["enableServiceLinks"] is False  # no VLLM_PORT from a Service named vllm
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_probes_ports_and_metrics(prod_run, deployment):
    c = container(deployment)
    assert c["ports"] == [{"name": "http", "containerPort": VLLM["port"], "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= vllm.MIN_STARTUP_SECONDS
    assert "/metrics" in VLLM["routes"]["open"]["get"]
    monitor = manifest(prod_run, "kubernetes:monitoring.coreos.com/v1:PodMonitor", MODEL)
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    policy = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{MODEL}-serving")
    prometheus = [r for r in policy["spec"]["ingress"] if "namespaceSelector" in r["from"][0]]
    assert prometheus[0]["ports"] == [{"protocol": "TCP", "port": "http"}]
    hpa = manifest(prod_run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", f"{MODEL}-blue")
    [metric] = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert "vllm:num_requests_waiting" in VLLM["metrics"]["gauges"]
    service = manifest(prod_run, "kubernetes:core/v1:Service", MODEL)
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"http": "http", "metrics": "http"}


def test_the_ingress_exposes_only_guarded_routes_and_health(ingress_run):
    ing = manifest(ingress_run, "kubernetes:networking.k8s.io/v1:Ingress", MODEL)
    [rule] = ing["spec"]["rules"]
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    assert paths == {"/v1": "Prefix", "/health": "Exact"}
    assert "/v1" in VLLM["auth"]["guarded_prefixes"] and "/health" in VLLM["routes"]["open"]["get"]
    # Inference that answers without the key stays inside the cluster.
    for open_route in VLLM["routes"]["open"]["post"] + VLLM["routes"]["open"]["pooling_models_only"]:
        assert not any(open_route == p or (kind == "Prefix" and open_route.startswith(p + "/"))
                       for p, kind in paths.items()), open_route


def test_resources_are_the_nodes_share(deployment):
    c = container(deployment)
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert req == lim | {"cpu": req["cpu"]} and int(lim["memory"][:-2]) < 32  # a g6e.xlarge (32 GiB)
    assert lim["nvidia.com/gpu"] == "1"


def test_quantize_and_dtype_become_flags(dev_settings):
    dev_settings["models"][0].update(engine="vllm", quantize="fp8_per_tensor", dtype="bfloat16")
    dev_settings["gpuNodeGroups"][0]["instanceTypes"] = ["g6.xlarge"]  # L4: FP8 GEMMs
    args = _args(container(manifest(run_settings(dev_settings), DEPLOYMENT)))
    assert args["--quantization"] == ["fp8_per_tensor"] and args["--dtype"] == ["bfloat16"]
    assert "fp8_per_tensor" in VLLM["quantization"]["online"]
    assert set(vllm.QUANTIZE) <= set(VLLM["quantization"]["methods"])


def test_blue_green_across_engines(dev_settings):
    """Blue on TGI, green on vLLM side by side; the Service, Ingress and metrics follow `active`."""
    model = dev_settings["models"][0]
    model.update(slots={"blue": {}, "green": {"engine": "vllm"}}, active="blue")
    run = run_settings(dev_settings)
    blue, green = (container(manifest(run, DEPLOYMENT, f"qwen-7b-{s}")) for s in ("blue", "green"))
    assert blue["name"] == "tgi" and "args" not in blue and env(blue)["MODEL_ID"] == REPO
    assert green["name"] == "vllm" and _args(green)[""] == [REPO]
    assert _args(green)["--max-model-len"] == ["8192"]  # the model's maxTotalTokens
    labels = {s: manifest(run, DEPLOYMENT, f"qwen-7b-{s}")["spec"]["template"]["metadata"]["labels"]
              for s in ("blue", "green")}
    assert labels["blue"]["app.kubernetes.io/name"] == "tgi" and labels["green"]["app.kubernetes.io/name"] == "vllm"
    monitor = manifest(run, "kubernetes:monitoring.coreos.com/v1:PodMonitor", "qwen-7b")
    endpoints = {e["port"]: e["relabelings"][0] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints["metrics"]["regex"] == "tgi" and endpoints["http"]["regex"] == "vllm"
    assert all(r["action"] == "keep" for r in endpoints.values())
    service = manifest(run, "kubernetes:core/v1:Service", "qwen-7b")
    assert service["spec"]["selector"]["llmserve/slot"] == "blue"
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}["metrics"] == "metrics"

    switched = copy.deepcopy(dev_settings)
    switched["models"][0]["active"] = "green"
    del switched["gateway"]
    switched["ingress"] = {"domain": "llm.example.com", "allowedCidrs": ["10.0.0.0/8"],
                           "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-0000-0000-000000000000"}
    switched["models"][0]["replicas"] = {"min": 1, "max": 1}
    switched["models"][0]["evictions"] = "block"
    run = run_settings(switched)
    service = manifest(run, "kubernetes:core/v1:Service", "qwen-7b")
    assert service["spec"]["selector"]["llmserve/slot"] == "green"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}["metrics"] == (8000, "http")
    # Green's Deployment is ready before the selector moves (exposure.service).
    green_urn = next(r.urn for r in run.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == "qwen-7b-green")
    assert green_urn in run.one("kubernetes:core/v1:Service", "llmserve-test-qwen-7b-svc").dependencies
    ing = manifest(run, "kubernetes:networking.k8s.io/v1:Ingress", "qwen-7b")
    assert {p["path"] for p in ing["spec"]["rules"][0]["http"]["paths"]} == {"/v1", "/health"}


def test_every_engines_queue_metric_is_served_to_the_autoscalers(rendered):
    """The HPA's metric name is one prometheus-adapter serves (its rules, infra/monitoring.py)."""
    from components.engines.registry import ENGINES
    adapter = yaml.safe_load((rendered["prod"] / "helm" / "prometheus-adapter.yaml").read_text())
    served = {r["name"]["as"] for r in adapter["values"]["rules"]["custom"]}
    assert {e.queue_metric for e in ENGINES.values()} <= served
