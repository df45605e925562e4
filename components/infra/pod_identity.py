"""PodIdentityRole: an IAM role a Kubernetes service account assumes through EKS Pod Identity
(nodes keep IMDS hop limit 1, so pods cannot use the node's role)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
from pulumi_aws import eks, iam

from .iam import after, pod_identity_trust


@dataclass
class PodIdentityRoleArgs:
    cluster_name: pulumi.Input[str]
    namespace: str
    service_account: str
    policy: Optional[pulumi.Input[str]] = None  # an inline policy document (JSON)
    managed_policy_arns: list[str] = field(default_factory=list)
    # False for EKS add-ons, which take the role in their own podIdentityAssociations.
    associate: bool = True
    permissions_boundary: Optional[str] = None
    tags: Optional[dict[str, str]] = None
    # The role's name, when the component's name would make one over IAM's 64 characters
    # (Pulumi's auto-name: the resource name plus 8); unset, auto-named.
    role_name: Optional[str] = None


class PodIdentityRole(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]  # once its policies are attached

    def __init__(self, name: str, args: PodIdentityRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:PodIdentityRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke)
        cluster_arn = pulumi.Output.concat(
            "arn:", identity.arn.apply(lambda arn: arn.split(":")[1]), ":eks:",
            aws.get_region_output(opts=invoke).region, ":", identity.account_id, ":cluster/",
            args.cluster_name)
        role = iam.Role(f"{name}-role", assume_role_policy=pod_identity_trust(
            cluster_arn, args.namespace, args.service_account),
            permissions_boundary=args.permissions_boundary, tags=args.tags, name=args.role_name,
            # A named role cannot exist twice: a replacement deletes the old one first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=args.role_name is not None))
        grants: list[pulumi.CustomResource] = [
            iam.RolePolicyAttachment(f"{name}-{arn.rsplit('/', 1)[-1]}", role=role.name,
                                     policy_arn=arn, opts=child)
            for arn in args.managed_policy_arns]
        if args.policy is not None:
            grants.append(iam.RolePolicy(f"{name}-policy", role=role.name, policy=args.policy,
                                         opts=child))
        self.role_arn = after(role.arn, grants)
        if args.associate:
            eks.PodIdentityAssociation(
                f"{name}-association", cluster_name=args.cluster_name, namespace=args.namespace,
                service_account=args.service_account, role_arn=self.role_arn, tags=args.tags,
                opts=child)
        self.register_outputs({"roleArn": self.role_arn})
