"""The ECR pull-through cache as prod builds it: a rule per upstream registry the engines' images
come from, the sign-ins in Secrets Manager, encrypted repositories, the nodes allowed to fill the
cache, and every engine image pulled through it."""

from __future__ import annotations

import json

import pytest

from components.offline import mockrun

from ..conftest import inputs, run_settings, stack_settings

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmserve-prod"
TOKENS = {"githubToken": "ghp_GithubTokenOfTheCiAccount0123456789", "dockerHubToken": "dckr_pat_HubTokenOfTheCi0123"}


def test_a_rule_per_upstream_of_the_engines_images(prod_run):
    rules = {r.name: mockrun.reveal(r.inputs) for r in prod_run.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")}
    assert {n: (r["ecrRepositoryPrefix"], r["upstreamRegistryUrl"]) for n, r in rules.items()} == {
        "llmserve-prod-images-ghcr": ("llmserve-prod/ghcr", "ghcr.io"),  # TGI
        "llmserve-prod-images-docker": ("llmserve-prod/docker", "registry-1.docker.io"),  # vLLM
    }
    secrets = {s.name: mockrun.reveal(s.inputs) for s in prod_run.of_type("aws:secretsmanager/secret:Secret")}
    for name, rule in rules.items():
        # ECR accepts only secrets named ecr-pullthroughcache/..., with the default key.
        assert secrets[name]["namePrefix"].startswith("ecr-pullthroughcache/llmserve-prod-")
        assert "kmsKeyId" not in secrets[name]
        assert rule["credentialArn"]


def test_the_cached_repositories_are_encrypted_and_pruned(prod_run):
    for prefix in ("ghcr", "docker"):
        template = inputs(prod_run, "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate",
                          f"llmserve-prod-images-{prefix}")
        assert template["prefix"] == f"llmserve-prod/{prefix}"
        assert template["appliedFors"] == ["PULL_THROUGH_CACHE"]
        assert template["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
        [rule] = json.loads(template["lifecyclePolicy"])["rules"]
        assert rule["selection"]["countType"] == "imageCountMoreThan" and rule["action"] == {"type": "expire"}
        # Never the untagged per-platform manifests of a multi-platform image it keeps.
        assert rule["selection"]["tagStatus"] == "tagged" and rule["selection"]["tagPatternList"] == ["*"]


def test_the_nodes_may_fill_the_cache_and_nothing_else(prod_run):
    policy = inputs(prod_run, "aws:iam/rolePolicy:RolePolicy", "llmserve-prod-images-node-pull")
    node_role = inputs(prod_run, "aws:iam/role:Role", "llmserve-prod-node-role")
    assert policy["role"].startswith("llmserve-prod-node-role")
    [statement] = json.loads(policy["policy"])["Statement"]
    assert statement["Action"] == ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"]
    assert sorted(statement["Resource"]) == [
        f"arn:aws:ecr:us-east-1:123456789012:repository/llmserve-prod/{p}/*" for p in ("docker", "ghcr")]
    assert node_role  # the grant is on the node role, beside its managed policies


def _containers(run: mockrun.Run, kind: str) -> dict[str, str]:
    out = {}
    for r in run.of_type(f"kubernetes:{kind}"):
        spec = mockrun.reveal(r.inputs)["spec"]["template"]["spec"]
        out.update({f"{r.name}/{c['name']}": c["image"] for c in spec["containers"] + spec.get("initContainers", [])})
    return out


def test_every_engine_image_is_pulled_through_the_cache(prod_run):
    images = {**_containers(prod_run, "apps/v1:Deployment"), **_containers(prod_run, "batch/v1:Job")}
    engines = {k: v for k, v in images.items() if k.startswith(("llmserve-prod-qwen",))}
    assert engines and all(v.startswith(f"{REGISTRY}/") for v in engines.values()), engines
    assert engines["llmserve-prod-qwen-7b-blue/vllm"] == f"{REGISTRY}/docker/vllm/vllm-openai:v0.33.0"
    assert engines["llmserve-prod-qwen-14b-blue/tgi"] == \
        f"{REGISTRY}/ghcr/huggingface/text-generation-inference:3.3.7"
    assert prod_run.outputs["imageRegistry"] == REGISTRY


def test_dev_pulls_from_the_upstream_registries(dev_run):
    assert not dev_run.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert all(not i.startswith(REGISTRY.split("/")[0]) for i in _containers(dev_run, "apps/v1:Deployment").values())


def test_the_registry_tokens_stay_secret():
    settings = {**stack_settings("prod"), **TOKENS,
                **{k: "stand-in-" + k for k in ("pagerdutyRoutingKey", "slackWebhookUrl", "heartbeatUrl")}}
    settings["slackWebhookUrl"] = settings["heartbeatUrl"] = "https://example.com/stand-in"
    run = run_settings(settings, stack="prod", secret_keys=(*TOKENS, "pagerdutyRoutingKey", "slackWebhookUrl",
                                                             "heartbeatUrl"))
    version = next(r for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                   if r.name == "llmserve-prod-images-ghcr")
    assert mockrun.is_secret(version.inputs["secretString"])
    assert json.loads(mockrun.reveal(version.inputs["secretString"], mask=False)) == {
        "username": "acme-ci", "accessToken": TOKENS["githubToken"]}
    shown = json.dumps([mockrun.reveal(r.inputs) for r in run.resources]) + json.dumps(mockrun.reveal(run.outputs))
    assert not any(token in shown for token in TOKENS.values())


@pytest.mark.parametrize("stack", ["prod"])
def test_render_shows_no_token(rendered, stack):
    text = "".join(p.read_text() for p in rendered[stack].rglob("*") if p.is_file())
    assert "ecr-pullthroughcache/" in text and "accessToken" not in text
