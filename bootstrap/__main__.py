"""The bootstrap program: run once per AWS account with admin credentials, before CI's first
`pulumi up` of the platform (docs/bootstrap.md). Reads and validates the settings, then builds
GitHub Actions' OIDC access: the provider, the boundary, one role per GitHub environment."""

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from llmserve_ci.ci_access import CiAccess, CiAccessArgs
from llmserve_ci.policies import ENVIRONMENTS, Account
from llmserve_ci.settings import check_account, parse

# The project's keys as the engine hands them over (explicit config and env). Raises
# BootstrapConfigError, naming every bad setting, before any resource is registered.
namespace = pulumi.get_project()
values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
settings = parse({k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{namespace}:")})
identity = aws.get_caller_identity()
check_account(settings, identity.account_id)
account = Account(id=identity.account_id, partition=identity.arn.split(":")[1])

access = CiAccess("llmserve-ci", CiAccessArgs(
    account=account,
    github_repository=settings.github_repository,
    role_prefix=settings.role_prefix,
    role_names={env: settings.ci_role_name(env) for env in ENVIRONMENTS},
    ci_role_prefix=settings.ci_role_prefix,
    existing_provider_arn=settings.existing_provider_arn,
    state_bucket_arn=settings.state_bucket_arn,
    secrets_key_arn=settings.secrets_key_arn,
    tags={"llmserve/bootstrap": pulumi.get_stack()},
))

pulumi.export("providerArn", access.provider_arn)
pulumi.export("boundaryArn", access.boundary_arn)
pulumi.export("devPreviewRoleArn", access.role_arns["dev-preview"])
pulumi.export("prodPreviewRoleArn", access.role_arns["prod-preview"])
pulumi.export("devDeployRoleArn", access.role_arns["dev"])
pulumi.export("prodDeployRoleArn", access.role_arns["prod"])
# What the operator copies into GitHub: environment -> the role its jobs assume.
pulumi.export("githubEnvironments", access.role_arns)
