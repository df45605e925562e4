"""The TGI serving stack of each model: what a platform engineer would check in the rendered
Deployment, Job, Service, Ingress, HPA, PDB, NetworkPolicies and Secrets."""

from __future__ import annotations

import copy
import re

import pytest

from components import mockrun
from components.config import validate_settings
from components.modellock import read
from components.tgi_service import TgiService, TgiServiceArgs, download_job_name, slot_specs

from .conftest import ROOT, TGI, names, run_settings

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
LOCK = read(ROOT / "models.lock.yaml")


def manifest(run, type_, name=None) -> dict:
    found = [r for r in run.of_type(type_) if name is None or r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, [r.inputs["metadata"]["name"] for r in run.of_type(type_)]
    return mockrun.reveal(found[0].inputs)


def container(deployment: dict) -> dict:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


# The Deployment ---------------------------------------------------------------------------------

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
    assert e["API_KEY"] == {"secretKeyRef": {"name": "tgi-api-key", "key": "API_KEY"}}
    # Every variable is one TGI reads at the pinned tag (tests/data/tgi.yaml).
    assert set(e) <= set(TGI["env"]["launcher"]) | set(TGI["env"]["runtime"]), set(e)


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


def test_graceful_shutdown_outlasts_tgis_drain(dev_run):
    spec = manifest(dev_run, DEPLOYMENT)["spec"]["template"]["spec"]
    pre = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre >= 5
    assert spec["terminationGracePeriodSeconds"] >= pre + 90  # GRACEFUL_TERMINATION_TIMEOUT 90 s


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


def test_rollout_works_without_a_spare_gpu_node(dev_run):
    strategy = manifest(dev_run, DEPLOYMENT)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


# Cache, download Job and Pulumi's waiting ------------------------------------------------------

def test_cache_is_a_shared_efs_volume(prod_run):
    pvc = manifest(prod_run, "kubernetes:core/v1:PersistentVolumeClaim", "qwen-72b-cache")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "efs-model-cache"


def test_download_job_fetches_the_pinned_revision_into_the_cache(prod_run):
    job = manifest(prod_run, JOB, download_job_name("qwen-72b", "Qwen/Qwen2.5-72B-Instruct",
                                                    LOCK.models["Qwen/Qwen2.5-72B-Instruct"].revision))
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    e = env(c)
    assert e["REVISION"] == LOCK.models["Qwen/Qwen2.5-72B-Instruct"].revision
    assert e["HUGGINGFACE_HUB_CACHE"] == "/data/hub" and "HF_HUB_OFFLINE" not in e
    assert c["command"][:2] == ["python", "-c"] and "snapshot_download" in c["command"][2]
    assert pod["nodeSelector"] == {"llmserve/node-group": "system"}  # no GPU needed
    assert "HF_TOKEN" not in e  # not gated
    assert job["spec"]["activeDeadlineSeconds"] >= 145412407296 / (100 * 2**20)


def test_a_new_revision_gets_a_new_download_job():
    assert download_job_name("m", "org/x", "a" * 40) != download_job_name("m", "org/x", "b" * 40)
    assert len(download_job_name("a" * 40, "org/x", "a" * 40)) <= 63


def test_pulumi_waits_long_enough_and_in_order(prod_run):
    job = next(r for r in prod_run.of_type(JOB) if "qwen-72b" in r.name)
    deployment = next(r for r in prod_run.of_type(DEPLOYMENT) if r.name.endswith("qwen-72b-blue"))
    assert job.name in names(deployment.dependencies)  # only the cache is read at start
    job_s = int(job.custom_timeouts["create"].rstrip("s"))
    dep_s = int(deployment.custom_timeouts["create"].rstrip("s"))
    download = 145412407296 / (100 * 2**20)
    assert download < job_s < 3 * 3600  # neither gives up on a healthy download nor waits forever
    assert dep_s > 600 + 300 and dep_s < 2 * 3600  # a GPU node, the image, the cold start
    assert deployment.custom_timeouts["update"] == deployment.custom_timeouts["create"]


# Service, Ingress, WAF --------------------------------------------------------------------------

def test_service(dev_run):
    svc = manifest(dev_run, "kubernetes:core/v1:Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]}["http"] == "http"
    assert svc["spec"]["selector"] == {"llmserve/model": "qwen-7b", "llmserve/slot": "blue"}


def test_ingress_on_the_shared_alb(prod_run):
    ing = manifest(prod_run, "kubernetes:networking.k8s.io/v1:Ingress", "qwen-14b")
    a = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert a["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert a["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    assert a["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTPS": 443}]'
    assert "idle_timeout.timeout_seconds=900" in a["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert a["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"
    assert a["alb.ingress.kubernetes.io/inbound-cidrs"] == "10.0.0.0/8"
    acl = prod_run.one("aws:wafv2/webAcl:WebAcl")
    assert a["alb.ingress.kubernetes.io/wafv2-acl-arn"] == acl.outputs["arn"]
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "qwen-14b.llm.example.com"
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    assert paths["/v1"] == "Prefix" and paths["/generate_stream"] == "Exact"
    assert "/metrics" not in paths and "/docs" not in paths and "/" not in paths  # stay in the cluster
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"qwen-14b"}
    routes = TGI["routes"]["post"] + TGI["routes"]["get"]  # only real TGI routes
    for path, kind in paths.items():
        assert path in routes if kind == "Exact" else any(r.startswith(path) for r in routes), path
    assert prod_run.outputs["endpoints"] == {"qwen-14b": "https://qwen-14b.llm.example.com",
                                             "qwen-72b": "https://qwen-72b.llm.example.com"}


def test_waf_rate_limits_each_client(prod_run):
    acl = mockrun.reveal(prod_run.one("aws:wafv2/webAcl:WebAcl").inputs)
    assert acl["scope"] == "REGIONAL"
    [rule] = acl["rules"]
    assert rule["statement"]["rateBasedStatement"]["limit"] == 3000
    assert rule["statement"]["rateBasedStatement"]["aggregateKeyType"] == "IP"
    assert "block" in rule["action"]


def test_no_ingress_configured_means_no_load_balancer(dev_run):
    assert dev_run.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    assert dev_run.of_type("aws:wafv2/webAcl:WebAcl") == []
    policy = manifest(dev_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-7b")
    assert not any("ipBlock" in peer for rule in policy["spec"]["ingress"] for peer in rule["from"])


# Autoscaling, disruption budget, network policy -------------------------------------------------

def test_hpa_scales_on_tgi_queue_size(prod_run):
    hpa = manifest(prod_run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "qwen-14b-blue")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "tgi_queue_size"},
                                                         "target": {"type": "AverageValue", "averageValue": "10"}}}]
    assert hpa["behavior"]["scaleUp"]["policies"] and hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen-14b-blue"}
    assert "replicas" not in manifest(prod_run, DEPLOYMENT, "qwen-14b-blue")["spec"]  # the HPA's


def test_fixed_replicas_need_no_hpa(dev_settings):
    dev_settings["models"][0]["replicas"] = {"min": 2, "max": 2}
    run = run_settings(dev_settings)
    assert run.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") == []
    assert manifest(run, DEPLOYMENT)["spec"]["replicas"] == 2


def test_pdb_lets_drains_proceed_one_pod_at_a_time(dev_run):
    pdb = manifest(dev_run, "kubernetes:policy/v1:PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {"llmserve/model": "qwen-7b", "llmserve/slot": "blue"}}}


def test_network_policies_deny_by_default(prod_run):
    deny = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b")["spec"]
    lb, prometheus = policy["ingress"]
    private = sorted(s.inputs["cidrBlock"] for s in prod_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name)
    assert sorted(p["ipBlock"]["cidr"] for p in lb["from"]) == private  # the internal ALB's subnets
    assert lb["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert prometheus["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    [dns] = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    download = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-download")["spec"]
    https = download["egress"][1]
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    assert https["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16"]  # not the metadata service


def test_namespace_enforces_baseline_pod_security_and_alb_readiness_gates(dev_run):
    labels = manifest(dev_run, "kubernetes:core/v1:Namespace", "llm")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_download_job_starts_once_it_may_reach_the_hub(dev_run):
    job = dev_run.of_type(JOB)[0]
    assert {"llmserve-dev-qwen-7b-download-netpol", "llmserve-dev-qwen-7b-sa"} <= names(job.dependencies)


# Secrets ----------------------------------------------------------------------------------------

def test_api_key_from_config_stays_secret(dev_settings):
    dev_settings["apiKey"] = "key-from-config-123"
    run = run_settings(dev_settings)
    secret = run.one("kubernetes:core/v1:Secret", "llmserve-test-serving-api-key")
    assert mockrun.is_secret(secret.inputs["stringData"])
    assert mockrun.reveal(secret.inputs, mask=False)["stringData"] == {"API_KEY": "key-from-config-123"}
    assert [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")] == [
        "llmserve-test-monitoring-grafana-admin"]
    assert mockrun.is_secret(run.outputs["apiKey"])


def test_without_an_api_key_one_is_generated(dev_run):
    password = mockrun.reveal(dev_run.one("random:index/randomPassword:RandomPassword",
                                          "llmserve-dev-serving-api-key").inputs)
    assert password["length"] >= 32
    assert mockrun.is_secret(dev_run.outputs["apiKey"])


def test_hf_token_secret_and_gated_download(dev_settings):
    """A gated model's Job reads the token from the Secret; the token never appears in clear."""
    settings = validate_settings(dev_settings)
    model = settings.models[0]
    entry = LOCK.models[model.id]
    lock = LOCK.model_copy(update={"models": {model.id: entry.model_copy(update={"gated": True})}})
    from components.config import plan_models
    plans, _ = plan_models(settings, lock, "test")

    def program():
        TgiService("svc", TgiServiceArgs(
            model=model.name, namespace="llm", slots=slot_specs(model, settings, plans, lock),
            active="blue", replicas=model.replicas, storage_class="efs-model-cache",
            lb_source_cidrs=[], hf_token_secret="hf-token"))

    run = mockrun.run_mocked(program, "test", {})
    e = env(container(manifest(run, JOB)))
    assert e["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}
    assert "HF_TOKEN" not in env(container(manifest(run, DEPLOYMENT)))  # serving stays offline


def test_hf_token_becomes_a_kubernetes_secret(dev_settings):
    dev_settings["hfToken"] = "hf_plain_token_value"
    run = run_settings(dev_settings)
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "hf-token")
    assert mockrun.is_secret(secret.inputs["stringData"])


# Blue-green ------------------------------------------------------------------------------------

def _blue_green(settings: dict, active: str) -> dict:
    model = settings["models"][0]
    model["slots"] = {"blue": {}, "green": {"image": "ghcr.io/huggingface/text-generation-inference:3.3.6",
                                           "maxTotalTokens": 16384}}
    model["active"] = active
    return settings


def test_both_slots_run_while_configured_and_the_service_selects_the_active_one(dev_settings):
    run = run_settings(_blue_green(dev_settings, "green"))
    deployments = {r.inputs["metadata"]["name"]: mockrun.reveal(r.inputs) for r in run.of_type(DEPLOYMENT)}
    assert set(deployments) == {"qwen-7b-blue", "qwen-7b-green"}
    assert container(deployments["qwen-7b-green"])["image"].endswith(":3.3.6")
    assert env(container(deployments["qwen-7b-green"]))["MAX_TOTAL_TOKENS"] == "16384"
    assert env(container(deployments["qwen-7b-blue"]))["MAX_TOTAL_TOKENS"] == "8192"
    assert manifest(run, "kubernetes:core/v1:Service")["spec"]["selector"]["llmserve/slot"] == "green"
    assert len(run.of_type("kubernetes:policy/v1:PodDisruptionBudget")) == 2


def test_the_three_commits_of_a_rollout(dev_settings):
    """add green (blue stays active and unchanged), switch, remove blue."""
    before = run_settings(copy.deepcopy(dev_settings))
    step1 = run_settings(_blue_green(copy.deepcopy(dev_settings), "blue"))
    blue = lambda run: manifest(run, DEPLOYMENT, "qwen-7b-blue")  # noqa: E731
    assert blue(step1) == blue(before)  # same name, same spec: no restart of what serves
    step2 = run_settings(_blue_green(copy.deepcopy(dev_settings), "green"))
    assert manifest(step2, "kubernetes:core/v1:Service")["spec"]["selector"]["llmserve/slot"] == "green"
    three = _blue_green(copy.deepcopy(dev_settings), "green")
    del three["models"][0]["slots"]["blue"]
    step3 = run_settings(three)
    assert [r.inputs["metadata"]["name"] for r in step3.of_type(DEPLOYMENT)] == ["qwen-7b-green"]


def test_blue_green_across_two_revisions_of_one_repo(dev_settings):
    """Green runs a newer commit of the same repo: its own lock entry, download Job and REVISION."""
    from components.config import plan_models
    from components.modellock import LockEntry
    dev_settings["models"][0].update(slots={"blue": {}, "green": {"revision": "v2"}}, active="blue")
    settings = validate_settings(dev_settings)
    model = settings.models[0]
    blue = LOCK.models[model.id]
    green = LockEntry(**{**blue.model_dump(), "revision": "b" * 40, "requested_revision": "v2"})
    lock = LOCK.with_entry(model.id, green)
    assert set(lock.models) >= {model.id, f"{model.id}@v2"}
    plans, errors = plan_models(settings, lock, "test")
    assert errors == []

    def program():
        TgiService("svc", TgiServiceArgs(
            model=model.name, namespace="llm", slots=slot_specs(model, settings, plans, lock),
            active="blue", replicas=model.replicas, storage_class="efs-model-cache", lb_source_cidrs=[]))

    run = mockrun.run_mocked(program, "test", {})
    revisions = {r.inputs["metadata"]["name"]: env(container(mockrun.reveal(r.inputs)))["REVISION"]
                 for r in run.of_type(DEPLOYMENT)}
    assert revisions == {"qwen-7b-blue": blue.revision, "qwen-7b-green": "b" * 40}
    jobs = {r.inputs["metadata"]["name"] for r in run.of_type(JOB)}
    assert jobs == {download_job_name("qwen-7b", model.id, blue.revision),
                    download_job_name("qwen-7b", model.id, "b" * 40)}


def test_slot_errors_name_the_slot(dev_settings):
    from components.config import ConfigError
    settings = _blue_green(dev_settings, "red")
    with pytest.raises(ConfigError, match=r"models\[0\]\.active: 'red' is not one of blue, green"):
        validate_settings(settings)
    settings["models"][0]["active"] = "green"
    settings["models"][0]["slots"]["green"]["nodeGroup"] = "h100"
    with pytest.raises(ConfigError, match=r"models\[0\]\.slots\.green\.nodeGroup: 'h100' is not one of gpu-24g"):
        validate_settings(settings)
