"""The bootstrap stack's settings (`llmserve-bootstrap:*`), validated before anything is built: an
invalid one is a `BootstrapConfigError` naming every bad setting, one line each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import pulumi

from .policies import BOUNDARY_POLICY, ENVIRONMENTS, GITHUB_OIDC_HOST

DEFAULT_ROLE_PREFIX = "llmserve-"
DEFAULT_CI_ROLE_PREFIX = "github-llmserve-"
KEYS = ("githubRepository", "rolePrefix", "ciRolePrefix", "existingProviderArn", "stateBucketArn",
        "secretsKeyArn")
# GitHub: an owner (user or organization) is alphanumerics and single hyphens inside, at most 39
# characters; a repository name is letters, digits, '.', '-', '_', at most 100.
REPOSITORY = re.compile(r"^([A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/([A-Za-z0-9._-]{1,100})$")
ROLE_NAME_CHARACTERS = re.compile(r"^[A-Za-z0-9+=,.@_-]+$")  # what IAM allows in a role name
IAM_ROLE_NAME_MAX = 64
MIN_PREFIX = 3  # a prefix of one or two characters would cover most names in an account
PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):oidc-provider/" + re.escape(GITHUB_OIDC_HOST) + "$")
BUCKET_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")


class BootstrapConfigError(pulumi.RunError):
    """Invalid bootstrap settings. Pulumi prints a RunError without a traceback."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid bootstrap configuration:\n" + "\n".join(f"  {e}" for e in errors))


@dataclass(frozen=True)
class Settings:
    github_repository: str
    role_prefix: str = DEFAULT_ROLE_PREFIX
    ci_role_prefix: str = DEFAULT_CI_ROLE_PREFIX
    existing_provider_arn: Optional[str] = None
    state_bucket_arn: Optional[str] = None
    secrets_key_arn: Optional[str] = None

    def ci_role_name(self, environment: str) -> str:
        return f"{self.ci_role_prefix}{environment}"

    @property
    def boundary_name(self) -> str:
        return f"{self.ci_role_prefix}{BOUNDARY_POLICY}"


def _repository(value: Optional[str]) -> Optional[str]:
    if not value:
        return "required: the GitHub repository as owner/name, e.g. octo-org/llmserve"
    if "*" in value or "?" in value:
        return (f"{value!r} has a wildcard (* or ?): the roles trust exactly one repository, "
                "written as owner/name")
    if not REPOSITORY.match(value) or value.split("/")[1] in (".", ".."):
        return f"{value!r} is not a GitHub repository as owner/name, e.g. octo-org/llmserve"
    return None


def _prefix(value: str, longest_suffix: int) -> Optional[str]:
    if "*" in value or "?" in value:
        return f"{value!r} has a wildcard (* or ?): write the literal start of the names"
    if not ROLE_NAME_CHARACTERS.match(value):
        return f"{value!r}: only letters, digits and + = , . @ _ - (IAM role names)"
    if len(value) < MIN_PREFIX:
        return f"{value!r} is too short: at least {MIN_PREFIX} characters"
    if len(value) + longest_suffix > IAM_ROLE_NAME_MAX:
        return f"{value!r} is too long: the names it starts must fit IAM's {IAM_ROLE_NAME_MAX} characters"
    return None


def parse(values: dict[str, Optional[str]]) -> Settings:
    """The settings from the project's config keys (without the namespace, as strings; empty
    means unset). Raises BootstrapConfigError naming every bad setting."""
    errors = [f"{key}: unknown setting; allowed here: {', '.join(KEYS)}"
              for key in sorted(values) if key not in KEYS]
    given = {k: v for k, v in values.items() if k in KEYS and v not in (None, "")}
    problem = _repository(given.get("githubRepository"))
    if problem:
        errors.append(f"githubRepository: {problem}")
    role_prefix = given.get("rolePrefix", DEFAULT_ROLE_PREFIX)
    ci_prefix = given.get("ciRolePrefix", DEFAULT_CI_ROLE_PREFIX)
    # A platform role name is the cluster name and a suffix; the cluster name has at most 33.
    for key, value, suffix in (("rolePrefix", role_prefix, 1),
                               ("ciRolePrefix", ci_prefix, max(map(len, ENVIRONMENTS)))):
        problem = _prefix(value, suffix)
        if problem:
            errors.append(f"{key}: {problem}")
    if ci_prefix.startswith(role_prefix) or role_prefix.startswith(ci_prefix):
        errors.append(f"ciRolePrefix: {ci_prefix!r} and rolePrefix {role_prefix!r} overlap: the deploy "
                      "roles manage every role named rolePrefix*, so the CI roles' names must not "
                      "start with it (nor the platform's with ciRolePrefix)")
    for key, pattern, example in (
            ("existingProviderArn", PROVIDER_ARN,
             f"arn:aws:iam::123456789012:oidc-provider/{GITHUB_OIDC_HOST}"),
            ("stateBucketArn", BUCKET_ARN, "the bucket's ARN without a key, arn:aws:s3:::my-pulumi-state"),
            ("secretsKeyArn", KEY_ARN, "a key ARN (not an alias), arn:aws:kms:us-east-1:123456789012:key/<id>")):
        if key in given and not pattern.match(given[key]):
            errors.append(f"{key}: {given[key]!r} is not {example}")
    bucket = given.get("stateBucketArn", "")
    if BUCKET_ARN.match(bucket) and bucket.split(":::", 1)[1].startswith(role_prefix):
        errors.append(f"stateBucketArn: {bucket!r} is named rolePrefix* ({role_prefix!r}): the deploy "
                      "roles manage those buckets; keep the state in a bucket outside the prefix")
    if errors:
        raise BootstrapConfigError(errors)
    return Settings(github_repository=given["githubRepository"], role_prefix=role_prefix,
                    ci_role_prefix=ci_prefix,
                    existing_provider_arn=given.get("existingProviderArn"),
                    state_bucket_arn=given.get("stateBucketArn"),
                    secrets_key_arn=given.get("secretsKeyArn"))


def check_account(settings: Settings, account_id: str) -> None:
    """What can be checked only once the account is known (still before anything is built)."""
    adopted = settings.existing_provider_arn
    if adopted and PROVIDER_ARN.match(adopted)[1] != account_id:
        raise BootstrapConfigError([f"existingProviderArn: {adopted!r} belongs to another account "
                                    f"than the one these credentials are for ({account_id})"])
