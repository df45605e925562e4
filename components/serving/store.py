"""A model's access to the stack's S3 model store (`models[].store: s3`, infra/model_store.py): the
serving pods (ServiceAccount `<model>`) may read its repos' prefixes, its S3 download Jobs
(ServiceAccount `<model>-writer`) may also write them; nothing else of the bucket, by EKS Pod
Identity (the nodes' role has no S3 access)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from ..config.models import STORE_WRITER
from ..infra.pod_identity import PodIdentityRole, PodIdentityRoleArgs
from .scope import Scope

READ = ["s3:GetObject"]
WRITE = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]


@dataclass
class StoreAccess:
    bucket: pulumi.Input[str]  # ModelStore.bucket
    bucket_arn: pulumi.Input[str]
    region: str
    cluster_name: pulumi.Input[str]  # once the cluster is ready (Cluster.ready_name)
    role_prefix: str  # the cluster's name: the roles are `<cluster>-store-reader|-store-writer-<8 hex of the model's digest>`
    # S3's addresses in the region (ModelStore.cidrs): what the pods' NetworkPolicy lets them reach.
    cidrs: pulumi.Input[list[str]]
    permissions_boundary: Optional[str] = None
    tags: Optional[dict[str, str]] = None

    def region_env(self) -> list[dict]:
        """The region for the AWS SDKs of the pods that use the store (boto3, the Run:ai streamer)."""
        return [{"name": "AWS_REGION", "value": self.region}, {"name": "AWS_DEFAULT_REGION", "value": self.region}]


def store_policy(bucket_arn: str, repo_ids: list[str], actions: list[str]) -> str:
    prefixes = [f"{repo}/" for repo in sorted(set(repo_ids))]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Objects", "Effect": "Allow", "Action": actions,
         "Resource": [f"{bucket_arn}/{p}*" for p in prefixes]},
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}}},
    ]})


def store_access(scope: Scope, access: StoreAccess, repo_ids: list[str],
                 reader_account: k8s.core.v1.ServiceAccount) -> tuple[k8s.core.v1.ServiceAccount, list[pulumi.Resource]]:
    """The writer ServiceAccount, and the roles' associations the pods wait for."""
    writer = k8s.core.v1.ServiceAccount(f"{scope.name}-{STORE_WRITER}-sa", metadata=scope.metadata(
        f"{scope.model}-{STORE_WRITER}"), automount_service_account_token=False, opts=scope.opts())
    roles = []
    for role, account, actions in (("store-reader", reader_account, READ), ("store-writer", writer, WRITE)):
        roles.append(PodIdentityRole(f"{scope.name}-{role}", PodIdentityRoleArgs(
            cluster_name=access.cluster_name, namespace=scope.namespace, service_account=account.metadata.name,
            policy=pulumi.Output.from_input(access.bucket_arn).apply(
                lambda arn, actions=actions: store_policy(arn, repo_ids, actions)),
            permissions_boundary=access.permissions_boundary, tags=access.tags,
            # `<cluster>-<model>-store-reader-role-<8>` can exceed IAM's 64 characters.
            role_name=f"{access.role_prefix}-{role}-{hashlib.sha256(scope.model.encode()).hexdigest()[:8]}"),
            opts=scope.opts()))
    return writer, roles
