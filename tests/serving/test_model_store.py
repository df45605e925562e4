"""The S3 model store as prod uses it (qwen-7b on vLLM, `store: s3`): a private bucket, the
download Job writing the locked commit where the serving pods stream it from, each by its own
Pod Identity role on the model's prefix only, and the pods reaching S3 and the Pod Identity agent
and nothing else."""

from __future__ import annotations

import json

import pytest

from components.config import ConfigError
from components.engines.base import store_prefix
from components.engines import vllm
from components.offline import mockrun

from ..conftest import inputs, run_prod, run_settings, stack_settings
from .helpers import DEPLOYMENT, JOB, container, env, manifest
from .test_vllm_workload import VLLM

REPO = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def job(prod_run) -> dict:
    [found] = [mockrun.reveal(r.inputs) for r in prod_run.of_type(JOB)
               if r.inputs["metadata"]["name"].startswith("qwen-7b-download-")]
    return found


def test_the_bucket_is_private_encrypted_and_tls_only(prod_run):
    bucket = prod_run.one("aws:s3/bucket:Bucket", "llmserve-prod-models").outputs["bucket"]
    block = inputs(prod_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "llmserve-prod-models-public-access")
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = inputs(prod_run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                 "llmserve-prod-models-sse")
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    [deny] = json.loads(inputs(prod_run, "aws:s3/bucketPolicy:BucketPolicy", "llmserve-prod-models-policy")["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert prod_run.outputs["modelBucket"] == bucket


def test_the_job_writes_where_the_pods_read(prod_run, job):
    c = job["spec"]["template"]["spec"]["containers"][0]
    written = env(c)
    deployment = container(manifest(prod_run, DEPLOYMENT, "qwen-7b-blue"))
    read = env(deployment)
    commit = written["REVISION"]
    assert written["PREFIX"] == store_prefix(REPO, commit) == f"{REPO}/{commit}/"
    assert read["MODEL_URI"] == f"s3://{written['BUCKET']}/{written['PREFIX']}"
    # vLLM streams it: the URI first (Kubernetes expands it), the Run:ai loader, no Hub revision.
    args = deployment["args"]
    assert args[:5] == ["$(MODEL_URI)", "--load-format", "runai_streamer", "--model-loader-extra-config",
                        # the concurrency data-on-eks measured 860 MiB/s with, a 5 GiB CPU buffer
                        json.dumps({"concurrency": 32, "memory_limit": 5 * 2**30})]
    assert "--revision" not in args and args[args.index("--served-model-name") + 1] == "qwen-7b"
    assert {a for a in args if a.startswith("--")} <= set(VLLM["flags"])
    assert set(json.loads(args[4])) <= set(VLLM["runai_streamer"]["extra_config_keys"])
    # The streamer's buffer, not the whole checkpoint, in the pod's memory.
    limit = int(container(manifest(prod_run, DEPLOYMENT, "qwen-7b-blue"))["resources"]["limits"]["memory"][:-2])
    assert vllm.STREAMER_MEMORY_LIMIT < limit * 1024**3 / 2
    assert read["MODEL_URI"].startswith(tuple(VLLM["runai_streamer"]["schemes"]))
    assert read["AWS_REGION"] == written["AWS_REGION"] == "us-east-1"


def test_the_job_runs_vllms_image_as_its_user_without_the_efs_cache(job):
    spec = job["spec"]["template"]["spec"]
    [c] = spec["containers"]
    assert spec["serviceAccountName"] == "qwen-7b-writer"
    assert c["image"].endswith("/docker/vllm/vllm-openai:v0.33.0")
    assert c["command"] == ["python3", "-c", vllm.store_script()]
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"]}["scratch"] == "50Gi"


def _role_policy(run, role: str) -> dict:
    return json.loads(inputs(run, "aws:iam/rolePolicy:RolePolicy", f"llmserve-prod-qwen-7b-{role}-policy")["policy"])


@pytest.mark.parametrize("role, account, actions", [
    ("store-reader", "qwen-7b", ["s3:GetObject"]),
    ("store-writer", "qwen-7b-writer", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]),
])
def test_each_side_gets_its_own_role_on_the_models_prefix_only(prod_run, role, account, actions):
    bucket = prod_run.one("aws:s3/bucket:Bucket", "llmserve-prod-models").outputs["arn"]
    objects, listing = _role_policy(prod_run, role)["Statement"]
    assert objects["Action"] == actions and objects["Resource"] == [f"{bucket}/{REPO}/*"]
    assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == bucket
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{REPO}/*"]}}
    association = inputs(prod_run, "aws:eks/podIdentityAssociation:PodIdentityAssociation",
                         f"llmserve-prod-qwen-7b-{role}-association")
    assert (association["namespace"], association["serviceAccount"]) == ("llm", account)


def test_the_pods_wait_for_their_credentials(prod_run):
    """Pod Identity gives credentials to pods created after their association only."""
    associations = {r.urn for r in prod_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                    if "qwen-7b-store" in r.name}
    assert len(associations) == 2
    waiting = [r for r in prod_run.of_type(DEPLOYMENT) if r.name == "llmserve-prod-qwen-7b-blue"]
    waiting += [r for r in prod_run.of_type(JOB) if r.name.startswith("llmserve-prod-qwen-7b-download")]
    assert len(waiting) == 2 and all(associations <= set(r.dependencies) for r in waiting)


def test_only_the_s3_models_pods_reach_s3_and_the_agent(prod_run):
    policies = {r.inputs["metadata"]["name"]: mockrun.reveal(r.inputs)["spec"]
                for r in prod_run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    egress = policies["qwen-7b-serving"]["egress"]
    agent = {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}
    assert agent in egress
    [s3] = [e for e in egress if e["ports"] == [{"protocol": "TCP", "port": 443}]]
    assert {b["ipBlock"]["cidr"] for b in s3["to"]} == {"3.5.0.0/19", "52.216.0.0/15"}  # the mocks' prefix list
    assert agent in policies["qwen-7b-download"]["egress"]
    for other in ("qwen-14b", "qwen-72b"):
        assert len(policies[f"{other}-serving"]["egress"]) == 1  # DNS only
        assert agent not in policies[f"{other}-download"]["egress"]


def test_an_efs_and_an_s3_slot_of_one_commit_download_twice():
    settings = stack_settings("prod")
    model = next(m for m in settings["models"] if m["name"] == "qwen-7b")
    model.pop("store")
    model["slots"] = {"blue": {}, "green": {"store": "s3"}}
    model["active"] = "blue"
    run = run_prod(settings)
    jobs = {r.inputs["metadata"]["name"]: mockrun.reveal(r.inputs)["spec"]["template"]["spec"]
            for r in run.of_type(JOB) if r.inputs["metadata"]["name"].startswith("qwen-7b-")}
    assert sorted(s["serviceAccountName"] for s in jobs.values()) == ["qwen-7b", "qwen-7b-writer"]
    blue = env(container(manifest(run, DEPLOYMENT, "qwen-7b-blue")))
    assert "MODEL_URI" not in blue and container(manifest(run, DEPLOYMENT, "qwen-7b-blue"))["args"][0] == REPO


def test_s3_is_refused_for_tgi(dev_settings):
    dev_settings["models"][0]["store"] = "s3"
    with pytest.raises(ConfigError) as err:
        run_settings(dev_settings)
    assert "models[0].store: 's3' is not a store TGI reads from (efs): only vLLM streams weights from S3" in str(err.value)
