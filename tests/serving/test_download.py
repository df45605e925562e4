"""The model cache volume and the download Job of each slot: the pinned revision, the token of gated models, the order of creation."""

from __future__ import annotations

import json

from components.engines.registry import MEMORY_MODELS
from components.offline import mockrun
from components.planning.plans import plan_models
from components.serving.labels import download_job_name
from components.serving.model_service import ModelService, ModelServiceArgs
from components.serving.slots import slot_specs

from ..conftest import names, validate_settings
from .helpers import DEPLOYMENT, JOB, LOCK, container, env, manifest


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


def test_download_job_starts_once_it_may_reach_the_hub(dev_run):
    job = dev_run.of_type(JOB)[0]
    assert {"llmserve-dev-qwen-7b-download-netpol", "llmserve-dev-qwen-7b-sa"} <= names(job.dependencies)


def test_hf_token_secret_and_gated_download(dev_settings):
    """A gated model's Job reads the token from the Secret; the token never appears in clear."""
    settings = validate_settings(dev_settings)
    model = settings.models[0]
    entry = LOCK.models[model.id]
    lock = LOCK.model_copy(update={"models": {model.id: entry.model_copy(update={"gated": True})}})
    plans, _ = plan_models(settings, lock, "test", MEMORY_MODELS)

    def program():
        ModelService("svc", ModelServiceArgs(
            model=model.name, namespace="llm", slots=slot_specs(model, settings, plans, lock),
            active="blue", replicas=model.replicas, storage_class="efs-model-cache",
            lb_source_cidrs=[], hf_token_secret="hf-token"))

    run = mockrun.run_mocked(program, "test", {})
    e = env(container(manifest(run, JOB)))
    assert e["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}
    assert "HF_TOKEN" not in env(container(manifest(run, DEPLOYMENT)))  # serving stays offline


def test_download_job_writes_through_an_access_point_not_as_root(prod_run):
    """The Job runs as root in its container (the TGI image), but the cache is an EFS access point
    that acts as its own POSIX user for every request, owner of the volume's directory: it writes
    without any root access on the file system."""
    job = manifest(prod_run, JOB, download_job_name("qwen-72b", "Qwen/Qwen2.5-72B-Instruct",
                                                    LOCK.models["Qwen/Qwen2.5-72B-Instruct"].revision))
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert "runAsUser" not in pod["securityContext"] and "runAsUser" not in c["securityContext"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "cache"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = manifest(prod_run, "kubernetes:core/v1:PersistentVolumeClaim", claim)
    sc = manifest(prod_run, "kubernetes:storage.k8s.io/v1:StorageClass", pvc["spec"]["storageClassName"])
    assert sc["parameters"]["provisioningMode"] == "efs-ap"
    assert sc["parameters"]["uid"] != "0" and sc["parameters"]["gid"] != "0"
    efs_policy = prod_run.one("aws:efs/fileSystemPolicy:FileSystemPolicy")
    policy = json.loads(mockrun.reveal(efs_policy.inputs)["policy"])
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert "elasticfilesystem:ClientWrite" in allowed and "elasticfilesystem:ClientRootAccess" not in allowed
