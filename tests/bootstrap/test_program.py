"""bootstrap/__main__.py under the mocks: what it registers, in the wire form `pulumi up` sends."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.offline import mockrun

from .conftest import (PROVIDER, REPOSITORY, ROLE, SECRETS_KEY, STATE_BUCKET, boundary, role_policies,
                       roles, run_bootstrap)
from .iam import actions, statements, with_action

ACCOUNT = "123456789012"
PREVIEW = {"dev-preview": "github-llmserve-dev-preview", "prod-preview": "github-llmserve-prod-preview"}
DEPLOY = {"dev": "github-llmserve-dev", "prod": "github-llmserve-prod"}
ENVIRONMENTS = {**PREVIEW, **DEPLOY}
PLATFORM_ROLES = f"arn:aws:iam::{ACCOUNT}:role/llmserve-*"
READ_VERBS = ("Describe", "Get", "List")
ADOPTED = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


def test_the_provider_is_githubs_for_sts(minimal_run):
    provider = minimal_run.one(PROVIDER)
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider.inputs  # AWS verifies GitHub with its trusted CAs
    assert minimal_run.outputs["providerArn"] == provider.outputs["arn"]


def test_four_roles_one_per_github_environment(minimal_run):
    assert set(roles(minimal_run)) == set(ENVIRONMENTS.values())
    for name, role in roles(minimal_run).items():
        # pulumi-up.yml asks for 3-hour sessions; previews and drift checks take one hour at most.
        assert role["maxSessionDuration"] == (10800 if name in DEPLOY.values() else 3600)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_role_trusts_one_environment_of_the_repository(minimal_run, environment):
    trust = json.loads(roles(minimal_run)[ENVIRONMENTS[environment]]["assumeRolePolicy"])
    [statement] = statements(trust)
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Principal"] == {"Federated": minimal_run.one(PROVIDER).outputs["arn"]}
    assert statement["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": f"repo:{REPOSITORY}:environment:{environment}"}}


def test_an_existing_provider_is_adopted_not_created():
    run = run_bootstrap({"githubRepository": REPOSITORY, "existingProviderArn": ADOPTED})
    assert run.of_type(PROVIDER) == []
    assert run.outputs["providerArn"] == ADOPTED
    for role in roles(run).values():
        [statement] = statements(json.loads(role["assumeRolePolicy"]))
        assert statement["Principal"] == {"Federated": ADOPTED}


@pytest.mark.parametrize("environment", PREVIEW)
def test_preview_roles_read_only(full_run, environment):
    granted = role_policies(full_run, PREVIEW[environment])
    assert set(granted) == {"github-llmserve-platform-read", "state"}
    for doc in granted.values():
        assert all(s["Effect"] == "Allow" for s in statements(doc))
        for action in actions(doc):
            service, verb = action.split(":", 1)
            assert verb.startswith(READ_VERBS) or action == "kms:Decrypt", action
            assert service != "iam" or verb.startswith(("Get", "List")), action
    iam = [s for s in statements(granted["github-llmserve-platform-read"])
           if any(a.startswith("iam:") for a in s["Action"])]
    assert [s["Resource"] for s in iam] == [[PLATFORM_ROLES]]
    state = statements(granted["state"])
    assert {(a, r) for s in state for a in s["Action"] for r in s["Resource"]} == {
        ("s3:GetBucketLocation", STATE_BUCKET), ("s3:ListBucket", STATE_BUCKET),
        ("s3:GetObject", f"{STATE_BUCKET}/*"), ("kms:Decrypt", SECRETS_KEY)}


def test_no_state_access_unless_configured(minimal_run):
    for name in ENVIRONMENTS.values():
        assert "state" not in role_policies(minimal_run, name)


@pytest.mark.parametrize("environment", DEPLOY)
def test_deploy_roles_write_the_state(full_run, environment):
    state = role_policies(full_run, DEPLOY[environment])["state"]
    assert with_action(state, "s3:PutObject", "Allow")[0]["Resource"] == [f"{STATE_BUCKET}/*"]
    assert with_action(state, "kms:Decrypt", "Allow")[0]["Resource"] == [SECRETS_KEY]


@pytest.mark.parametrize("environment", DEPLOY)
def test_deploy_roles_iam_is_the_platforms_roles_under_the_boundary(minimal_run, environment):
    boundary_arn, _ = boundary(minimal_run)
    assert minimal_run.outputs["boundaryArn"] == boundary_arn
    granted = role_policies(minimal_run, DEPLOY[environment])
    assert set(granted) == {"github-llmserve-platform-read", "github-llmserve-platform-deploy-network",
                            "github-llmserve-platform-deploy-services", "github-llmserve-platform-deploy-stores",
                            "platform-iam"}
    iam_allows = [s for doc in granted.values() for s in statements(doc, "Allow")
                  if any(a.startswith("iam:") for a in s["Action"])]
    assert iam_allows
    for s in iam_allows:
        if s["Action"] == ["iam:CreateServiceLinkedRole"]:
            assert s["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/*"]
            assert set(s["Condition"]) == {"StringEquals"}
            assert set(s["Condition"]["StringEquals"]) == {"iam:AWSServiceName"}
            continue
        assert s["Resource"] == [PLATFORM_ROLES], s["Sid"]
        writes = [a for a in s["Action"] if not a.split(":", 1)[1].startswith(READ_VERBS)]
        if {"iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
                "iam:PutRolePolicy"} & set(writes):
            assert s["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}}
        if "iam:PassRole" in writes:
            assert s["Condition"] == {"StringEquals": {"iam:PassedToService": [
                "eks.amazonaws.com", "ec2.amazonaws.com", "pods.eks.amazonaws.com"]}}
    for action in ("iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
                   "iam:PutRolePolicy", "iam:PassRole"):
        assert all(s.get("Condition") for doc in granted.values()
                   for s in with_action(doc, action, "Allow")), action
    denies = granted["platform-iam"]
    for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
        assert any(boundary_arn in s["Resource"] for s in with_action(denies, action, "Deny")), action
    assert with_action(denies, "iam:DeleteRolePermissionsBoundary", "Deny")
    assert not with_action(denies, "iam:DeleteRolePermissionsBoundary", "Allow")


def test_no_statement_anywhere_allows_everything(full_run):
    docs = [json.loads(r.inputs["policy"]) for r in full_run.resources if "policy" in r.inputs]
    docs += [json.loads(role["assumeRolePolicy"]) for role in roles(full_run).values()]
    # Managed: boundary, read, deploy (3); inline: preview state (2), deploy iam and state (2 x 2);
    # the four trust policies.
    assert len(docs) == 5 + 2 + 4 + 4
    for doc in docs:
        for s in statements(doc, "Allow"):
            assert "*" not in s["Action"] and "iam:*" not in s["Action"], s.get("Sid")
            assert "NotAction" not in s and "NotResource" not in s
            if s["Resource"] == ["*"] and not s.get("Condition"):
                assert not [a for a in s["Action"] if a.startswith("iam:") and "*" in a]


def test_outputs_name_every_arn(minimal_run):
    out = minimal_run.outputs
    arns = {role["name"]: r.outputs["arn"] for r in minimal_run.of_type(ROLE)
            for role in [mockrun.reveal(r.inputs)]}
    assert out["githubEnvironments"] == {env: arns[name] for env, name in ENVIRONMENTS.items()}
    assert {k: out[k] for k in ("devPreviewRoleArn", "prodPreviewRoleArn", "devDeployRoleArn",
                                "prodDeployRoleArn")} == {
        "devPreviewRoleArn": arns[PREVIEW["dev-preview"]], "prodPreviewRoleArn": arns[PREVIEW["prod-preview"]],
        "devDeployRoleArn": arns[DEPLOY["dev"]], "prodDeployRoleArn": arns[DEPLOY["prod"]]}
    assert out["providerArn"] and out["boundaryArn"]


def test_every_child_is_parented_by_the_component(minimal_run):
    components = {r.urn: r for r in minimal_run.resources if not r.custom}
    for r in minimal_run.resources:
        if r.custom:
            assert r.parent in components, r.name
            assert r.name.startswith(components[r.parent].name), r.name


def refused(settings: dict) -> tuple[str, mockrun.Run]:
    run = mockrun.Run()
    with pytest.raises(pulumi.RunError) as caught:
        run_bootstrap(settings, run=run)
    return str(caught.value), run


@pytest.mark.parametrize("repository", ["octo-org/*", "*/*", "octo-org/llm?erve"])
def test_a_wildcard_repository_is_refused_before_any_resource(repository):
    message, run = refused({"githubRepository": repository})
    assert "githubRepository:" in message and "wildcard" in message
    assert run.resources == []


@pytest.mark.parametrize("settings", [
    {"githubRepository": "octo-org"}, {"githubRepository": "octo-org/llmserve/main"},
    {"githubRepository": "https://github.com/octo-org/llmserve"}, {}])
def test_a_malformed_repository_is_refused_before_any_resource(settings):
    message, run = refused(settings)
    assert "githubRepository:" in message
    assert run.resources == []


@pytest.mark.parametrize("settings, named", [
    ({"githubRepository": REPOSITORY, "githubRepo": REPOSITORY}, "githubRepo: unknown setting"),
    ({"githubRepository": REPOSITORY, "rolePrefix": "github-"}, "ciRolePrefix:"),
    ({"githubRepository": REPOSITORY, "existingProviderArn":
      "arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"}, "existingProviderArn:"),
])
def test_other_bad_settings_are_refused_before_any_resource(settings, named):
    message, run = refused(settings)
    assert named in message
    assert run.resources == []
