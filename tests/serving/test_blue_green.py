"""Blue-green slots: both run while configured, the Service selects the active one, the three
commits of a rollout; behind the load balancer, a target group per slot and the switch moves
the weights."""

from __future__ import annotations

import asyncio
import copy
import json

import kubernetes_validate
import pytest
import yaml
from pulumi.runtime.settings import SETTINGS

from components.engines.registry import MEMORY_MODELS
from components.config import PROJECT, ConfigError, stack_file
from components.offline import mockrun, render
from components.planning.lock import LockEntry
from components.planning.plans import plan_models
from components.serving import exposure
from components.serving.labels import download_job_name
from components.serving.model_service import ModelService, ModelServiceArgs
from components.serving.slots import slot_specs

from ..conftest import run_settings, stack_path, stack_settings, validate_settings
from .helpers import DEPLOYMENT, JOB, LOCK, container, env, manifest


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
    dev_settings["models"][0].update(slots={"blue": {}, "green": {"revision": "v2"}}, active="blue")
    settings = validate_settings(dev_settings)
    model = settings.models[0]
    blue = LOCK.models[model.id]
    green = LockEntry(**{**blue.model_dump(), "revision": "b" * 40, "requested_revision": "v2"})
    lock = LOCK.with_entry(model.id, green)
    assert set(lock.models) >= {model.id, f"{model.id}@v2"}
    plans, errors = plan_models(settings, lock, "test", MEMORY_MODELS)
    assert errors == []

    def program():
        ModelService("svc", ModelServiceArgs(
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
    settings = _blue_green(dev_settings, "red")
    with pytest.raises(ConfigError, match=r"models\[0\]\.active: 'red' is not one of blue, green"):
        validate_settings(settings)
    settings["models"][0]["active"] = "green"
    settings["models"][0]["slots"]["green"]["nodeGroup"] = "h100"
    with pytest.raises(ConfigError, match=r"models\[0\]\.slots\.green\.nodeGroup: 'h100' is not one of gpu-24g"):
        validate_settings(settings)


def test_readme_step_one_renders_with_one_download_for_both_slots(dev_settings):
    """README's step 1: green changes only the image and the token limit, so both slots serve
    the same commit: one download Job, which both Deployments wait for."""
    model = dev_settings["models"][0]
    model["slots"] = {"blue": {}, "green": {"image": "ghcr.io/huggingface/text-generation-inference:3.3.7",
                                           "maxTotalTokens": 16384}}
    model["active"] = "blue"
    run = run_settings(dev_settings)
    [job] = run.of_type(JOB)
    assert job.inputs["metadata"]["name"] == download_job_name("qwen-7b", model["id"], LOCK.models[model["id"]].revision)
    deployments = run.of_type(DEPLOYMENT)
    assert {d.inputs["metadata"]["name"] for d in deployments} == {"qwen-7b-blue", "qwen-7b-green"}
    assert all(job.urn in d.dependencies for d in deployments)
    # Step 3 removes blue: the Job is the same resource with the same inputs (no new download).
    del model["slots"]["blue"]
    model["active"] = "green"
    [after] = run_settings(dev_settings).of_type(JOB)
    assert (after.urn, mockrun.reveal(after.inputs)) == (job.urn, mockrun.reveal(job.inputs))


@pytest.mark.parametrize("names", [["default-deny"], ["x", "x-download"], ["x-serving", "x"],
                                   ["a-blues", "a"], ["cache", "serving", "monitoring"]])
def test_model_names_never_clash_with_other_objects(dev_settings, names):
    base = dev_settings["models"][0]
    dev_settings["models"] = [{**base, "name": n, "replicas": {"min": 1, "max": 1}} for n in names]
    dev_settings["gpuNodeGroups"][0]["maxSize"] = len(names)
    run = run_settings(dev_settings)  # two objects of one kind and name would not render
    objects = [(r.type, r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
               for r in run.resources if r.custom and "metadata" in r.inputs]
    assert len(objects) == len(set(objects))


def test_a_model_named_like_another_models_slot_service_is_refused(dev_settings):
    """`a-blue` would be both model a-blue's Service and model a's blue slot Service."""
    base = dev_settings["models"][0]
    dev_settings["models"] = [{**base, "name": n, "replicas": {"min": 1, "max": 1}} for n in ("a-blue", "a")]
    dev_settings["gpuNodeGroups"][0]["maxSize"] = 2
    with pytest.raises(ConfigError, match=r"models\[1\]\.name: the Service of its blue slot is named a-blue"):
        run_settings(dev_settings)


def test_the_selector_waits_for_the_active_slots_deployment(dev_settings):
    """One commit that adds green and makes it active: the Service depends on green's Deployment,
    which Pulumi's Kubernetes provider finishes only once it is available."""
    run = run_settings(_blue_green(dev_settings, "green"))
    service = run.one("kubernetes:core/v1:Service")
    deployments = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type(DEPLOYMENT)}
    assert deployments["qwen-7b-green"] in service.dependencies
    assert deployments["qwen-7b-blue"] not in service.dependencies  # blue may change meanwhile


def _green_never_ready(monkeypatch, program) -> mockrun.Run:
    """Runs `program(run)` with every green Deployment failing (as when one is not ready within
    its timeout) and returns what was registered before the update stopped."""
    new_resource = mockrun.PlatformMocks.new_resource

    def failing(self, args):
        if args.typ == DEPLOYMENT and args.name.endswith("-green"):
            raise RuntimeError("the Deployment did not become ready")
        return new_resource(self, args)

    monkeypatch.setattr(mockrun.PlatformMocks, "new_resource", failing)
    run = mockrun.Run()
    with pytest.raises(RuntimeError, match="did not become ready"):
        program(run)
    # What the failed run left pending settles here and is forgotten, as pulumi.runtime.mocks.test
    # does before each test, so that the next run does not await it.
    loop = asyncio.get_event_loop()
    if pending := asyncio.all_tasks(loop):
        _, stuck = loop.run_until_complete(asyncio.wait(pending, timeout=60))
        for task in stuck:
            task.cancel()
    SETTINGS.outputs.clear()
    SETTINGS.rpc_manager.clear()
    return run


def test_a_green_that_never_gets_ready_leaves_the_service_on_blue(dev_settings, monkeypatch):
    """Green's Deployment fails: the update stops there and the Service's selector is never sent,
    so the Service keeps selecting blue."""
    run = _green_never_ready(monkeypatch, lambda run: run_settings(_blue_green(dev_settings, "green"), run=run))
    assert [r.inputs["metadata"]["name"] for r in run.of_type(DEPLOYMENT)] == ["qwen-7b-blue"]
    assert run.of_type("kubernetes:core/v1:Service") == []


# --------------------------------------------------------------------------------------------
# Blue-green behind the load balancer: a target group per slot, the switch moves the weights.

SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _prod_blue_green(active: str, green: dict | None = None, run: mockrun.Run | None = None) -> mockrun.Run:
    """Prod with the ingress (three models, tests/data/stacks) with its first model, qwen-14b, on
    two slots: blue as it is, green with its TGI image pinned unless `green` says otherwise."""
    config, secret_keys = stack_file.read(stack_path("ingress"), PROJECT)
    models = json.loads(config[f"{PROJECT}:models"])
    assert models[0]["name"] == "qwen-14b"
    models[0]["slots"] = {"blue": {}, "green": green or {
        "image": "ghcr.io/huggingface/text-generation-inference:3.3.7"}}
    models[0]["active"] = active
    config[f"{PROJECT}:models"] = json.dumps(models)
    config, secret_keys, _ = mockrun.stand_in_secrets(config, secret_keys, PROJECT)
    return mockrun.run_program("ingress", config, secret_keys, run=run)


@pytest.fixture(scope="module")
def prod_blue_green() -> dict[str, mockrun.Run]:
    return {active: _prod_blue_green(active) for active in ("blue", "green")}


def _action(ingress: dict) -> dict:
    [(key, value)] = [(k, v) for k, v in ingress["metadata"]["annotations"].items() if k.startswith(exposure.ACTIONS)]
    assert key == exposure.ACTIONS + ingress["metadata"]["name"]
    return json.loads(value)


def _weights(ingress: dict) -> dict[str, int]:
    action = _action(ingress)
    return {g["serviceName"]: g["weight"] for g in action["forwardConfig"]["targetGroups"]}


@pytest.mark.parametrize("active, other", [("blue", "green"), ("green", "blue")])
def test_each_slot_behind_the_load_balancer_has_its_own_service(prod_blue_green, active, other):
    run = prod_blue_green[active]
    for slot in ("blue", "green"):
        svc = manifest(run, SERVICE, f"qwen-14b-{slot}")
        assert svc["spec"]["selector"] == {"llmserve/model": "qwen-14b", "llmserve/slot": slot}
        assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
        # Its target group's tags: the stack's (the Ingress's) and the model's (the Service's).
        assert svc["metadata"]["annotations"] == {exposure.TAGS: "model=qwen-14b"}
        # Each slot's Deployment's pods are what its Service selects.
        pod = manifest(run, DEPLOYMENT, f"qwen-14b-{slot}")["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod.items()
    # The model's own Service stays, on the active slot (in-cluster clients, port-forward).
    model = manifest(run, SERVICE, "qwen-14b")
    assert model["spec"]["selector"] == {"llmserve/model": "qwen-14b", "llmserve/slot": active}
    assert {p["name"] for p in model["spec"]["ports"]} == {"http", "metrics"}
    assert exposure.TAGS not in model["metadata"].get("annotations", {})  # it backs no target group


@pytest.mark.parametrize("active, other", [("blue", "green"), ("green", "blue")])
def test_the_ingress_forwards_to_both_target_groups_weighted_on_the_active_slot(prod_blue_green, active, other):
    ing = manifest(prod_blue_green[active], INGRESS, "qwen-14b")
    # annotations.md v3.5.0, actions: the advanced schema of a forward to several target groups.
    action = _action(ing)
    assert action["type"] == "forward" and set(action["forwardConfig"]) == {"targetGroups"}
    assert action["forwardConfig"]["targetGroups"] == [
        {"serviceName": f"qwen-14b-{slot}", "servicePort": "http", "weight": 100 if slot == active else 0}
        for slot in ("blue", "green")]
    assert _weights(ing) == {f"qwen-14b-{active}": 100, f"qwen-14b-{other}": 0}
    # Every path goes to the action: the backend names it, its port is `use-annotation`.
    [rule] = ing["spec"]["rules"]
    assert rule["http"]["paths"]
    assert {json.dumps(p["backend"], sort_keys=True) for p in rule["http"]["paths"]} == {json.dumps(
        {"service": {"name": "qwen-14b", "port": {"name": "use-annotation"}}}, sort_keys=True)}
    # The health check and the drain apply to both slots' target groups (the Ingress's).
    a = ing["metadata"]["annotations"]
    assert a["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"
    assert a["alb.ingress.kubernetes.io/target-group-attributes"].startswith("deregistration_delay.timeout_seconds=")
    assert "model" not in a[exposure.TAGS]  # the IngressGroup's tags must agree


def test_the_switch_moves_only_the_weights(prod_blue_green):
    """Blue active, then green: the slot Services and every other annotation and path stay; the
    weights flip, and the model's Service selects the new slot."""
    before, after = (manifest(prod_blue_green[s], INGRESS, "qwen-14b") for s in ("blue", "green"))
    assert _weights(before) == {"qwen-14b-blue": 100, "qwen-14b-green": 0}
    assert _weights(after) == {"qwen-14b-blue": 0, "qwen-14b-green": 100}
    key = exposure.ACTIONS + "qwen-14b"
    strip = lambda ing: {**ing, "metadata": {**ing["metadata"], "annotations": {  # noqa: E731
        k: v for k, v in ing["metadata"]["annotations"].items() if k != key}}}
    assert strip(before) == strip(after)
    for slot in ("blue", "green"):
        assert (manifest(prod_blue_green["blue"], SERVICE, f"qwen-14b-{slot}")
                == manifest(prod_blue_green["green"], SERVICE, f"qwen-14b-{slot}"))


@pytest.mark.parametrize("active, other", [("blue", "green"), ("green", "blue")])
def test_the_weight_change_waits_for_the_active_slots_deployment(prod_blue_green, active, other):
    """The Ingress (its weights) is sent once the active slot's Deployment is available, as the
    model Service's selector is; the other slot's Deployment may change meanwhile."""
    run = prod_blue_green[active]
    ingress = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "qwen-14b")
    deployments = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type(DEPLOYMENT)}
    assert deployments[f"qwen-14b-{active}"] in ingress.dependencies
    assert deployments[f"qwen-14b-{other}"] not in ingress.dependencies
    services = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type(SERVICE)}
    # The slots' Services (the action's target groups) and the model's (the backend's name) first.
    assert {services["qwen-14b"], services["qwen-14b-blue"], services["qwen-14b-green"]} <= set(ingress.dependencies)


def test_a_green_that_never_gets_ready_leaves_the_weights_on_blue(monkeypatch):
    """Green's Deployment fails: the update stops there and the Ingress is never sent, so the
    load balancer keeps its weights (all on blue)."""
    run = _green_never_ready(monkeypatch, lambda run: _prod_blue_green("green", run=run))
    assert "qwen-14b" not in {r.inputs["metadata"]["name"] for r in run.of_type(INGRESS)}
    assert "qwen-14b" not in {r.inputs["metadata"]["name"] for r in run.of_type(SERVICE)}


def test_from_tgi_to_vllm_the_routes_follow_the_active_slot_and_the_targets_stay():
    """Green on vLLM, active: the paths are vLLM's, all to the action; both slots' Services
    target their pods' `http` port (each engine's own)."""
    run = _prod_blue_green("green", {"engine": "vllm"})
    ing = manifest(run, INGRESS, "qwen-14b")
    assert {p["path"] for p in ing["spec"]["rules"][0]["http"]["paths"]} == {"/v1", "/health"}
    assert _weights(ing) == {"qwen-14b-blue": 0, "qwen-14b-green": 100}
    for slot in ("blue", "green"):
        ports = manifest(run, DEPLOYMENT, f"qwen-14b-{slot}")["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert "http" in {p["name"] for p in ports}


def test_the_load_balancer_reaches_both_slots_pods(prod_blue_green):
    """The serving policy selects the model's server pods, whatever their slot: the ALB's
    subnets reach both target groups' pods (health checks of the idle slot included)."""
    run = prod_blue_green["blue"]
    policy = manifest(run, NETWORK_POLICY, "qwen-14b-serving")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert "llmserve/slot" not in selector
    [lb] = [r for r in policy["spec"]["ingress"] if any("ipBlock" in p for p in r["from"])]
    assert lb["ports"] == [{"protocol": "TCP", "port": "http"}]
    for slot in ("blue", "green"):
        pod = manifest(run, DEPLOYMENT, f"qwen-14b-{slot}")["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod.items()


def test_two_slot_objects_pass_strict_validation(prod_blue_green, tmp_path):
    version = validate_settings(stack_settings("ingress")).cluster.kubernetes_version + ".0"
    render.write(prod_blue_green["green"], tmp_path)
    names = {p.name for p in (tmp_path / "kubernetes").glob("*.yaml")}
    assert {"service-llm-qwen-14b-blue.yaml", "service-llm-qwen-14b-green.yaml", "ingress-llm-qwen-14b.yaml"} <= names
    for name in ("service-llm-qwen-14b-blue.yaml", "service-llm-qwen-14b-green.yaml", "service-llm-qwen-14b.yaml",
                 "ingress-llm-qwen-14b.yaml"):
        kubernetes_validate.validate(yaml.safe_load((tmp_path / "kubernetes" / name).read_text()), version,
                                     strict=True)


def test_a_slot_behind_the_load_balancer_has_its_target_group_from_its_first_commit(ingress_run, dev_settings):
    """One slot too: its Service and target group are those it keeps when green is added, so
    step 1 of a blue-green rollout moves no traffic to a new target group."""
    for ing in ingress_run.of_type(INGRESS):
        ing = mockrun.reveal(ing.inputs)
        model = ing["metadata"]["name"]
        action = json.loads(ing["metadata"]["annotations"][exposure.ACTIONS + model])
        assert action["forwardConfig"]["targetGroups"] == [
            {"serviceName": f"{model}-blue", "servicePort": "http", "weight": exposure.ACTIVE_WEIGHT}]
        assert {p["backend"]["service"]["port"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]} \
            == {exposure.USE_ANNOTATION}
    assert len(ingress_run.of_type(SERVICE)) == 2 * len(ingress_run.of_type(INGRESS))
    # Two slots but no ingress (dev): the model's Service only.
    run = run_settings(_blue_green(dev_settings, "green"))
    assert [r.inputs["metadata"]["name"] for r in run.of_type(SERVICE)] == ["qwen-7b"]
