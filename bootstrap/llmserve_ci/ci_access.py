"""CiAccess: GitHub Actions' way into one AWS account. The OIDC provider (or the account's existing
one), the permissions boundary of the roles the platform creates, and one role per GitHub
environment: dev-preview and prod-preview read, dev and prod deploy (their large policies managed,
shared by the roles of both stacks; what names the boundary or the state inline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_aws import iam

from . import policies
from .ci_role import CiRole, CiRoleArgs
from .policies import Account


@dataclass
class CiAccessArgs:
    account: Account
    github_repository: str  # owner/name, validated
    role_prefix: str  # the platform's role names start with it
    role_names: dict[str, str]  # GitHub environment -> the CI role's name
    ci_role_prefix: str  # the CI roles' and this project's policies' names start with it
    existing_provider_arn: Optional[str] = None
    state_bucket_arn: Optional[str] = None
    secrets_key_arn: Optional[str] = None
    tags: Optional[dict[str, str]] = None


class CiAccess(pulumi.ComponentResource):
    provider_arn: pulumi.Output[str]
    boundary_arn: pulumi.Output[str]
    role_arns: dict[str, pulumi.Output[str]]  # GitHub environment -> role ARN

    def __init__(self, name: str, args: CiAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve-bootstrap:ci:CiAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if args.existing_provider_arn:
            # An account has at most one provider per URL: an existing one is used, not managed.
            self.provider_arn = pulumi.Output.from_input(args.existing_provider_arn)
        else:
            # No thumbprints: AWS verifies GitHub's OIDC endpoint with its own library of trusted
            # root CAs (since 2023-07-06) and ignores configured thumbprints for it; the API takes
            # none and then fetches one itself (docs.aws.amazon.com/IAM/latest/UserGuide/
            # id_roles_providers_create_oidc_verify-thumbprint.html; CreateOpenIDConnectProvider:
            # "ThumbprintList ... This parameter is optional"; github.com/aws/aws-sdk/issues/563).
            # pulumi-aws 7.x takes thumbprintLists as optional.
            provider = iam.OpenIdConnectProvider(
                f"{name}-github", url=policies.GITHUB_OIDC_URL,
                client_id_lists=[policies.STS_AUDIENCE], tags=args.tags, opts=child)
            self.provider_arn = provider.arn

        def managed(suffix: str, description: str, document: str) -> iam.Policy:
            return iam.Policy(f"{name}-{suffix}", name=f"{args.ci_role_prefix}{suffix}",
                              description=description, policy=document, tags=args.tags, opts=child)

        boundary = managed(policies.BOUNDARY_POLICY,
                           "The most any IAM role the llmserve deploy roles create may do",
                           policies.boundary_policy(args.role_prefix))
        self.boundary_arn = boundary.arn
        read = managed(policies.READ_POLICY, "Read the llmserve platform (preview, refresh)",
                       policies.read_policy(args.account, args.role_prefix))
        network = managed(policies.DEPLOY_NETWORK_POLICY, "Deploy the llmserve platform: EC2",
                          policies.deploy_network_policy(args.account))
        services = managed(policies.DEPLOY_SERVICES_POLICY,
                           "Deploy the llmserve platform: EKS, EFS, KMS, logs, WAF, S3, Backup",
                           policies.deploy_services_policy(args.account, args.role_prefix))
        stores = managed(policies.DEPLOY_STORES_POLICY,
                         "Deploy the llmserve platform: the ECR pull-through cache, the quota store",
                         policies.deploy_stores_policy(args.account, args.role_prefix))

        state = {}
        for write in (False, True):
            document = policies.state_policy(args.state_bucket_arn, args.secrets_key_arn, write)
            state[write] = {"state": document} if document else {}

        self.role_arns = {}
        for environment in policies.ENVIRONMENTS:
            deploy = environment in policies.DEPLOY_ENVIRONMENTS
            trust = self.provider_arn.apply(
                lambda arn, env=environment: policies.trust_policy(arn, args.github_repository, env))
            attached = {policies.READ_POLICY: read.arn}
            if deploy:
                attached.update({policies.DEPLOY_NETWORK_POLICY: network.arn,
                                 policies.DEPLOY_SERVICES_POLICY: services.arn,
                                 policies.DEPLOY_STORES_POLICY: stores.arn})
                inline = {"platform-iam": self.boundary_arn.apply(lambda arn: policies.deploy_iam_policy(
                    args.account, args.role_prefix, arn, args.ci_role_prefix)), **state[True]}
                description = f"pulumi up of the llmserve platform from GitHub environment {environment}"
            else:
                inline = state[False]
                description = f"pulumi preview of the llmserve platform from GitHub environment {environment}"
            role = CiRole(f"{name}-{environment}", CiRoleArgs(
                role_name=args.role_names[environment], description=description,
                trust_policy=trust, managed_policies=attached, policies=inline,
                max_session_seconds=(policies.DEPLOY_SESSION_SECONDS if deploy
                                     else policies.PREVIEW_SESSION_SECONDS),
                tags=args.tags), opts=child)
            self.role_arns[environment] = role.role_arn

        self.register_outputs({"providerArn": self.provider_arn, "boundaryArn": self.boundary_arn,
                               "roleArns": self.role_arns})
