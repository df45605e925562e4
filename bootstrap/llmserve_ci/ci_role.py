"""CiRole: an IAM role a GitHub Actions job assumes through the OIDC provider, with its policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
from pulumi_aws import iam


@dataclass
class CiRoleArgs:
    role_name: str  # fixed, so the ARN copied into GitHub never changes
    description: str
    trust_policy: pulumi.Input[str]
    managed_policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)  # name -> ARN
    policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)  # inline: name -> JSON
    max_session_seconds: int = 3600
    tags: Optional[dict[str, str]] = None


class CiRole(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]  # once its policies are in place

    def __init__(self, name: str, args: CiRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve-bootstrap:ci:CiRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = iam.Role(f"{name}-role", name=args.role_name, description=args.description,
                        assume_role_policy=args.trust_policy,
                        max_session_duration=args.max_session_seconds, tags=args.tags, opts=child)
        grants: list[pulumi.CustomResource] = [
            iam.RolePolicyAttachment(f"{name}-{policy}", role=role.name, policy_arn=arn, opts=child)
            for policy, arn in args.managed_policies.items()]
        grants += [iam.RolePolicy(f"{name}-{policy}", name=policy, role=role.name, policy=document,
                                  opts=child)
                   for policy, document in args.policies.items()]
        # A job that gets the ARN before its policies exist would fail on its first call.
        self.role_arn = pulumi.Output.all(role.arn, *[g.id for g in grants]).apply(lambda v: v[0])
        self.register_outputs({"roleArn": self.role_arn})
