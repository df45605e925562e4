"""ModelStore: the S3 bucket vLLM streams weights from (`models[].store: s3`, docs/vllm.md).

Each model's download Job writes the locked commit under `<repo id>/<commit>/`; the serving pods
read it with the Run:ai model streamer, by EKS Pod Identity (serving/model_service.py grants each
model its own prefixes). Private, SSE-S3, TLS only, reached through the VPC's S3 gateway
endpoint. Objects are immutable per commit, so no versioning; a commit no slot uses any more stays
until deleted (`aws s3 rm --recursive s3://<bucket>/<repo id>/<commit>/`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_aws import ec2, s3

from .buckets import private_bucket
from .network import s3_service


@dataclass
class ModelStoreArgs:
    region: str
    tags: Optional[dict[str, str]] = None


class ModelStore(pulumi.ComponentResource):
    bucket: pulumi.Output[str]  # its name, once its policy is in place
    arn: pulumi.Output[str]
    cidrs: pulumi.Output[list[str]]  # S3's in the region

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:ModelStore", name, None, opts)
        abort_uploads = s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=1)  # a download Job that died mid-upload
        bucket, self.bucket = private_bucket(
            name, self, args.tags, lifecycle_name="uploads",
            lifecycle=s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-uploads", status="Enabled",
                filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                abort_incomplete_multipart_upload=abort_uploads))
        self.arn = bucket.arn
        # S3's addresses in the region, as its AWS-managed prefix list has them (what the gateway
        # endpoint routes; https://docs.aws.amazon.com/vpc/latest/userguide/working-with-aws-managed-prefix-lists.html).
        prefix_list = ec2.get_managed_prefix_list_output(name=s3_service(args.region),
                                                         opts=pulumi.InvokeOutputOptions(parent=self))
        self.cidrs = prefix_list.entries.apply(lambda entries: sorted(e.cidr for e in entries))
        self.register_outputs({"bucket": self.bucket})
