"""Blue-green slots: both run while configured, the Service selects the active one, the three commits of a rollout."""

from __future__ import annotations

import asyncio
import copy

import pytest
from pulumi.runtime.settings import SETTINGS

from components.engines.registry import MEMORY_MODELS
from components.config import ConfigError
from components.offline import mockrun
from components.planning.lock import LockEntry
from components.planning.plans import plan_models
from components.serving.labels import download_job_name
from components.serving.model_service import ModelService, ModelServiceArgs
from components.serving.slots import slot_specs

from ..conftest import run_settings, validate_settings
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
                                   ["a-blue", "a"], ["cache", "serving", "monitoring"]])
def test_model_names_never_clash_with_other_objects(dev_settings, names):
    base = dev_settings["models"][0]
    dev_settings["models"] = [{**base, "name": n, "replicas": {"min": 1, "max": 1}} for n in names]
    dev_settings["gpuNodeGroups"][0]["maxSize"] = len(names)
    run = run_settings(dev_settings)  # two objects of one kind and name would not render
    objects = [(r.type, r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
               for r in run.resources if r.custom and "metadata" in r.inputs]
    assert len(objects) == len(set(objects))


def test_the_selector_waits_for_the_active_slots_deployment(dev_settings):
    """One commit that adds green and makes it active: the Service depends on green's Deployment,
    which Pulumi's Kubernetes provider finishes only once it is available."""
    run = run_settings(_blue_green(dev_settings, "green"))
    service = run.one("kubernetes:core/v1:Service")
    deployments = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type(DEPLOYMENT)}
    assert deployments["qwen-7b-green"] in service.dependencies
    assert deployments["qwen-7b-blue"] not in service.dependencies  # blue may change meanwhile


def test_a_green_that_never_gets_ready_leaves_the_service_on_blue(dev_settings, monkeypatch):
    """Green's Deployment fails (as when it is not ready within its timeout): the update stops
    there and the Service's selector is never sent, so the Service keeps selecting blue."""
    new_resource = mockrun.PlatformMocks.new_resource

    def failing(self, args):
        if args.typ == DEPLOYMENT and args.name.endswith("-green"):
            raise RuntimeError("the Deployment did not become ready")
        return new_resource(self, args)

    monkeypatch.setattr(mockrun.PlatformMocks, "new_resource", failing)
    run = mockrun.Run()
    with pytest.raises(RuntimeError, match="did not become ready"):
        run_settings(_blue_green(dev_settings, "green"), run=run)
    # What the failed run left pending settles here and is forgotten, as pulumi.runtime.mocks.test
    # does before each test, so that the next run does not await it.
    loop = asyncio.get_event_loop()
    if pending := asyncio.all_tasks(loop):
        _, stuck = loop.run_until_complete(asyncio.wait(pending, timeout=60))
        for task in stuck:
            task.cancel()
    SETTINGS.outputs.clear()
    SETTINGS.rpc_manager.clear()
    assert [r.inputs["metadata"]["name"] for r in run.of_type(DEPLOYMENT)] == ["qwen-7b-blue"]
    assert run.of_type("kubernetes:core/v1:Service") == []
