"""The settings every bucket of the platform has: private (public access blocked, owner-enforced:
no ACLs), SSE-S3 encrypted, incomplete multipart uploads aborted, a policy that refuses requests
without TLS. A function, not a component: the resources keep the names and parent the caller
gives (the access-log bucket predates it)."""

from __future__ import annotations

import json
from typing import Callable, Optional

import pulumi
from pulumi_aws import s3


def deny_insecure_transport(bucket_arn: str) -> dict:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def private_bucket(name: str, parent: pulumi.Resource, tags: Optional[dict[str, str]],
                   lifecycle: s3.BucketLifecycleConfigurationRuleArgs, lifecycle_name: str,
                   policy: Callable[[str], pulumi.Input[str]] = lambda arn: json.dumps(
                       {"Version": "2012-10-17", "Statement": [deny_insecure_transport(arn)]}),
                   ) -> tuple[s3.Bucket, pulumi.Output[str]]:
    """The bucket `name` and its settings; `policy` makes the bucket policy from its ARN. Returns
    the bucket and its name once its policy is in place (what writes to the bucket wait for)."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = s3.Bucket(name, tags=tags, opts=child)  # auto-named: <name>-<random>
    sse_s3 = s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
        sse_algorithm="AES256")
    s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse", bucket=bucket.id,
        rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(apply_server_side_encryption_by_default=sse_s3)],
        opts=child)
    public = s3.BucketPublicAccessBlock(
        f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child)
    s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket.id,
        rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child)
    s3.BucketLifecycleConfiguration(f"{name}-{lifecycle_name}", bucket=bucket.id, rules=[lifecycle], opts=child)
    bucket_policy = s3.BucketPolicy(f"{name}-policy", bucket=bucket.id, policy=bucket.arn.apply(policy),
                                    opts=pulumi.ResourceOptions(parent=parent, depends_on=[public]))
    return bucket, pulumi.Output.all(bucket.id, bucket_policy.id).apply(lambda v: v[0])  # id: its name
