"""ImageCache: an ECR pull-through cache for the upstream registries of the engines' images
(docs/images.md). The nodes pull `<account>.dkr.ecr.<region>.amazonaws.com/<cluster>/<upstream>/...`:
the first pull of a tag fetches it from the upstream once, every later pull is served in-region
(its layers through the VPC's S3 gateway endpoint, not the NAT gateways).

- One rule per upstream registry, under the prefix `<cluster>/<upstream>` (rules are per account
  and region: each stack's are its own).
- Registries that require a sign-in (GitHub Container Registry, Docker Hub) get a Secrets
  Manager secret `ecr-pullthroughcache/<cluster>-<upstream>-...` holding `username` and
  `accessToken` (the name prefix and keys ECR requires: https://docs.aws.amazon.com/AmazonECR/
  latest/userguide/pull-through-cache-creating-secret.html). It is encrypted with the default
  `aws/secretsmanager` key: the same page requires it, ECR does not support a customer managed
  key for this secret.
- A repository creation template per prefix: the repositories ECR creates on a first pull are
  encrypted (AES256: a customer managed key would need a role of its own for ECR,
  repository-creation-templates-create-iam.html), keep the newest images only.
- The node role may create those repositories and import into them, nothing else
  (pull-through-cache-iam.html: `ecr:CreateRepository` for a first pull, `ecr:BatchImportUpstreamImage`;
  the node role's AmazonEC2ContainerRegistryPullOnly grants the latter account-wide, not the
  former)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
from pulumi_aws import ecr, iam, secretsmanager

from ..config.images import Upstream

# Cached images each repository keeps (the engine's current release and its predecessors a
# rollback may need); older ones go and are fetched again if asked for.
KEEP_IMAGES = 5
NODE_PULL_ACTIONS = ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"]


def repository_prefix(cluster_name: str, upstream: Upstream) -> str:
    """The rule's ecrRepositoryPrefix (2-30 characters: config/images.py PREFIX_MAX)."""
    return f"{cluster_name}/{upstream.prefix}"


@dataclass
class ImageCacheArgs:
    cluster_name: str
    region: str
    upstreams: list[Upstream]
    node_role_name: pulumi.Input[str]
    # By upstream host: the user ECR signs in as, and its access token (a Pulumi secret).
    usernames: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    tags: Optional[dict[str, str]] = None


class ImageCache(pulumi.ComponentResource):
    # <account>.dkr.ecr.<region>.amazonaws.com/<cluster>, where the rules' prefixes start, once
    # the rules and the nodes' grant exist.
    registry: pulumi.Output[str]

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rules = []
        for upstream in args.upstreams:
            prefix = repository_prefix(args.cluster_name, upstream)
            credential = None
            if upstream.secret:
                secret = secretsmanager.Secret(
                    f"{name}-{upstream.prefix}",
                    name_prefix=f"ecr-pullthroughcache/{args.cluster_name}-{upstream.prefix}-",
                    description=f"{upstream.label} sign-in of the {args.cluster_name} ECR pull-through cache",
                    tags=args.tags, opts=child)
                version = secretsmanager.SecretVersion(
                    f"{name}-{upstream.prefix}", secret_id=secret.id,
                    secret_string=pulumi.Output.secret(pulumi.Output.json_dumps({
                        "username": args.usernames[upstream.host],
                        "accessToken": args.tokens[upstream.host]})),
                    opts=child)
                credential = pulumi.Output.all(secret.arn, version.id).apply(lambda v: v[0])
            template = ecr.RepositoryCreationTemplate(
                f"{name}-{upstream.prefix}", prefix=prefix, applied_fors=["PULL_THROUGH_CACHE"],
                description=f"Repositories of the {upstream.label} pull-through cache",
                encryption_configurations=[ecr.RepositoryCreationTemplateEncryptionConfigurationArgs(
                    encryption_type="AES256")],
                image_tag_mutability="MUTABLE",  # the cache follows the upstream's tags
                # Tagged images only: a multi-platform image's per-platform manifests are untagged
                # images of their own, which a count over all images would expire under it.
                lifecycle_policy=json.dumps({"rules": [{
                    "rulePriority": 1, "description": f"keep the newest {KEEP_IMAGES} tagged images",
                    "selection": {"tagStatus": "tagged", "tagPatternList": ["*"],
                                  "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
                    "action": {"type": "expire"}}]}),
                opts=child)
            # The template applies to repositories created after it: the rule, and so the first
            # pull, comes after it.
            rules.append(ecr.PullThroughCacheRule(
                f"{name}-{upstream.prefix}", ecr_repository_prefix=prefix,
                upstream_registry_url=upstream.url, credential_arn=credential,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[template])))
        account = rules[0].registry_id
        repositories = [pulumi.Output.concat("arn:aws:ecr:", args.region, ":", account, ":repository/",
                                             rule.ecr_repository_prefix, "/*") for rule in rules]
        grant = iam.RolePolicy(
            f"{name}-node-pull", role=args.node_role_name,
            policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "PullThroughCache", "Effect": "Allow",
                "Action": NODE_PULL_ACTIONS,
                "Resource": repositories}]}),
            opts=child)
        self.registry = pulumi.Output.all(account, grant.id).apply(
            lambda v: f"{v[0]}.dkr.ecr.{args.region}.amazonaws.com/{args.cluster_name}")
        self.register_outputs({"registry": self.registry})
