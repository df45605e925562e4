"""The bootstrap's settings, validated without Pulumi running: every bad one named, one line each."""

from __future__ import annotations

import pytest

from llmserve_ci.settings import BootstrapConfigError, Settings, check_account, parse

REPO = "octo-org/llmserve"


def errors(values: dict) -> list[str]:
    with pytest.raises(BootstrapConfigError) as caught:
        parse(values)
    return caught.value.errors


def test_defaults():
    settings = parse({"githubRepository": REPO, "stateBucketArn": ""})
    assert settings == Settings(github_repository=REPO, role_prefix="llmserve-",
                                ci_role_prefix="github-llmserve-")
    assert settings.ci_role_name("prod-preview") == "github-llmserve-prod-preview"
    assert settings.boundary_name == "github-llmserve-workload-boundary"


@pytest.mark.parametrize("repository", ["octo-org/llmserve", "o/r", "Octo-Org/llm.serve_2", "a1-b2/.github"])
def test_repositories_accepted(repository):
    assert parse({"githubRepository": repository}).github_repository == repository


@pytest.mark.parametrize("repository", ["octo-org/*", "*/llmserve", "octo-org/llm?erve", "*"])
def test_a_wildcard_repository_is_refused(repository):
    [line] = errors({"githubRepository": repository})
    assert line.startswith("githubRepository: ") and "wildcard" in line


@pytest.mark.parametrize("repository", [
    "octo-org", "octo-org/llmserve/extra", "octo org/llmserve", "-octo/llmserve", "octo--org/llmserve",
    "octo-org/", "/llmserve", "https://github.com/octo-org/llmserve", "repo:octo-org/llmserve",
    "octo-org/llm:serve", "octo-org/..", "a" * 40 + "/llmserve"])
def test_a_malformed_repository_is_refused(repository):
    [line] = errors({"githubRepository": repository})
    assert line.startswith("githubRepository: ") and "owner/name" in line


def test_the_repository_is_required():
    assert errors({}) == ["githubRepository: required: the GitHub repository as owner/name, "
                          "e.g. octo-org/llmserve"]


def test_every_bad_setting_is_named():
    lines = errors({"githubRepository": "x", "rolePrefix": "l*", "ciRolePrefix": "a b",
                    "stateBucketArn": "arn:aws:s3:::bucket/state", "secretsKeyArn": "alias/pulumi",
                    "existingProviderArn": "arn:aws:iam::123456789012:oidc-provider/example.com",
                    "githubRepo": REPO})
    assert [line.split(":", 1)[0] for line in lines] == [
        "githubRepo", "githubRepository", "rolePrefix", "ciRolePrefix", "existingProviderArn",
        "stateBucketArn", "secretsKeyArn"]


@pytest.mark.parametrize("role_prefix, ci_prefix", [
    ("llmserve-", "llmserve-ci-"), ("github-llmserve-dev", "github-llmserve-"), ("gh-", "gh-")])
def test_ci_roles_must_stay_outside_the_platforms_prefix(role_prefix, ci_prefix):
    lines = errors({"githubRepository": REPO, "rolePrefix": role_prefix, "ciRolePrefix": ci_prefix})
    assert any(line.startswith("ciRolePrefix: ") and "overlap" in line for line in lines)


@pytest.mark.parametrize("prefix", ["ll", "", "x" * 64])
def test_prefixes_of_a_useful_length(prefix):
    values = {"githubRepository": REPO, "rolePrefix": prefix}
    if prefix == "":
        assert parse(values).role_prefix == "llmserve-"  # empty means unset
    else:
        assert any(line.startswith("rolePrefix: ") for line in errors(values))


def test_an_adopted_provider_of_another_account_is_refused():
    settings = parse({"githubRepository": REPO, "existingProviderArn":
                      "arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"})
    with pytest.raises(BootstrapConfigError, match="existingProviderArn: .*another account"):
        check_account(settings, "123456789012")
    check_account(settings, "210987654321")


def test_the_state_bucket_stays_outside_the_platforms_prefix():
    [line] = errors({"githubRepository": REPO, "stateBucketArn": "arn:aws:s3:::llmserve-state"})
    assert line.startswith("stateBucketArn: ") and "rolePrefix" in line
