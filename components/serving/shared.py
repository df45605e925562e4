"""Serving: what the models of a stack share. One namespace (Pod Security `baseline`, everything
denied until a model's NetworkPolicy allows it), the API key and Hugging Face token Secrets from
Pulumi secrets, the AWS WAFv2 web ACL of the shared load balancer with its logs, and the S3
bucket of the load balancer's access logs.

One namespace for all models: the models share the API key, the load balancer and the monitoring;
each model still gets its own ServiceAccount, cache volume, NetworkPolicy, budget and autoscaler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi_aws import cloudwatch, s3, wafv2

from ..infra.buckets import deny_insecure_transport, private_bucket
from ..infra.secrets import SECRET_DATA

API_KEY_SECRET = "tgi-api-key"
API_KEY_KEY = "API_KEY"  # TGI's variable (docs/tgi.md)
HF_TOKEN_SECRET = "hf-token"
HF_TOKEN_KEY = "HF_TOKEN"

# How long the WAF's and the load balancer's logs are kept unless the caller says (the program
# passes the stack's cluster.logRetentionDays).
LOG_RETENTION_DAYS = 90

# AWS managed rule groups in front of the models, each with the rules of it that only count.
# Names and capacities (WCU: 25, 700, 200; with the rate rule well under a web ACL's 1,500):
# https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-ip-rep.html and
# https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html.
# SizeRestrictions_BODY blocks request bodies over 8 KB, and prompts are larger: it only counts
# (and labels). The WAF still inspects the first 8 KB of every body on an ALB.
MANAGED_RULE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AWSManagedRulesAmazonIpReputationList", ()),
    ("AWSManagedRulesCommonRuleSet", ("SizeRestrictions_BODY",)),
    ("AWSManagedRulesKnownBadInputsRuleSet", ()),
)
# WAF requires its log destination's name to start with this
# (https://docs.aws.amazon.com/waf/latest/APIReference/API_LoggingConfiguration.html).
WAF_LOG_GROUP_PREFIX = "aws-waf-logs-"
# Kept out of the WAF logs: the API key travels as `Authorization: Bearer ...`. Header names in
# lowercase, as the WAFv2 API wants them (pulumi-aws 7.x, WebAclLoggingConfiguration
# redactedFields.singleHeader.name).
REDACTED_HEADERS = ("authorization",)

# The load balancer's access logs land under `<bucket>/<prefix>/AWSLogs/<account>/...`; the
# prefix must not contain `AWSLogs`
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
ACCESS_LOGS_PREFIX = "alb"
# ELB's log delivery service principal. Since 2025-09-10 the bucket policy with this principal is
# supported in all Regions (the per-Region ELB account IDs are only the legacy form): "Bucket
# policies for access logs and connection logs" in
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/doc-history.html.
ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"


def access_logs_bucket_policy(bucket_arn: str, account_id: str) -> str:
    """ELB's log delivery may put objects under this account's log prefix, nothing else, and
    nobody may use the bucket without TLS."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AllowElbLogDelivery", "Effect": "Allow",
             "Principal": {"Service": ELB_LOG_DELIVERY}, "Action": "s3:PutObject",
             "Resource": f"{bucket_arn}/{ACCESS_LOGS_PREFIX}/AWSLogs/{account_id}/*"},
            deny_insecure_transport(bucket_arn),
        ],
    })


def _visibility(metric: str) -> wafv2.WebAclVisibilityConfigArgs:
    return wafv2.WebAclVisibilityConfigArgs(
        cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)


def _rule_visibility(metric: str) -> wafv2.WebAclRuleVisibilityConfigArgs:
    return wafv2.WebAclRuleVisibilityConfigArgs(
        cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)


def waf_rules(rate_limit_per_5min: int) -> list[wafv2.WebAclRuleArgs]:
    """The rate limit per client IP first, then the managed rule groups with their own actions
    (`override_action none`), the rules named in MANAGED_RULE_GROUPS set to count."""
    rules = [wafv2.WebAclRuleArgs(
        name="rate-limit-per-ip", priority=1,
        action=wafv2.WebAclRuleActionArgs(block=wafv2.WebAclRuleActionBlockArgs()),
        statement=wafv2.WebAclRuleStatementArgs(
            rate_based_statement=wafv2.WebAclRuleStatementRateBasedStatementArgs(
                limit=rate_limit_per_5min, aggregate_key_type="IP", evaluation_window_sec=300)),
        visibility_config=_rule_visibility("rate-limit-per-ip"),
    )]
    group_statement = wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs
    override = wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArgs
    action = wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideActionToUseArgs
    count = wafv2.WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideActionToUseCountArgs
    for priority, (group, counted) in enumerate(MANAGED_RULE_GROUPS, start=2):
        rules.append(wafv2.WebAclRuleArgs(
            name=group, priority=priority,
            override_action=wafv2.WebAclRuleOverrideActionArgs(none=wafv2.WebAclRuleOverrideActionNoneArgs()),
            statement=wafv2.WebAclRuleStatementArgs(managed_rule_group_statement=group_statement(
                vendor_name="AWS", name=group,
                rule_action_overrides=[override(name=rule, action_to_use=action(count=count()))
                                       for rule in counted] or None)),
            visibility_config=_rule_visibility(group),
        ))
    return rules


@dataclass
class ServingArgs:
    namespace: str
    api_key: Optional[pulumi.Output[str]]  # None: a random key is generated (output `apiKey`)
    hf_token: Optional[pulumi.Output[str]]
    rate_limit_per_5min: Optional[int] = None  # None: no WAF
    # True when the stack has an ingress: the shared ALB's access log bucket is created.
    access_logs: bool = False
    # The engines' shared key (`apiKey`); False behind the gateway, whose teams have keys of their own.
    client_key: bool = True
    log_retention_days: int = LOG_RETENTION_DAYS  # the WAF's log group, the access log bucket
    tags: Optional[dict[str, str]] = None


class Serving(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    api_key: Optional[pulumi.Output[str]]
    hf_token_secret: Optional[pulumi.Output[str]]
    waf_acl_arn: Optional[pulumi.Output[str]]
    # The bucket's name, known once its policy is in place (ELB checks it when logs are enabled).
    access_logs_bucket: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:serving:Serving", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The TGI image runs as root (docs/tgi.md), which `restricted` refuses: enforce
        # `baseline` (no privileged pods, no host namespaces) and warn about the rest.
        ns = k8s.core.v1.Namespace(f"{name}-ns", metadata={
            "name": args.namespace,
            "labels": {"pod-security.kubernetes.io/enforce": "baseline",
                       "pod-security.kubernetes.io/warn": "restricted",
                       "pod-security.kubernetes.io/audit": "restricted",
                       # A new pod takes traffic only once the ALB sees it healthy, and an old
                       # one leaves only after (target type ip): rollouts without 5xx.
                       "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"},
        }, opts=child)
        self.namespace = ns.metadata.name
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        k8s.networking.v1.NetworkPolicy(f"{name}-default-deny", metadata={
            "name": "default-deny", "namespace": args.namespace,
        }, spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, opts=in_ns)

        self.api_key = None
        if args.client_key:
            key = args.api_key if args.api_key is not None else random.RandomPassword(
                f"{name}-api-key", length=48, special=False, opts=child).result
            self.api_key = pulumi.Output.secret(key)
            k8s.core.v1.Secret(f"{name}-api-key", metadata={
                "name": API_KEY_SECRET, "namespace": args.namespace,
            }, type="Opaque", string_data={API_KEY_KEY: self.api_key}, opts=in_ns.merge(SECRET_DATA))

        self.hf_token_secret = None
        if args.hf_token is not None:
            secret = k8s.core.v1.Secret(f"{name}-hf-token", metadata={
                "name": HF_TOKEN_SECRET, "namespace": args.namespace,
            }, type="Opaque", string_data={HF_TOKEN_KEY: pulumi.Output.secret(args.hf_token)},
                opts=in_ns.merge(SECRET_DATA))
            self.hf_token_secret = secret.metadata.name

        self.waf_acl_arn = None
        if args.rate_limit_per_5min is not None:
            acl = wafv2.WebAcl(
                f"{name}-waf", scope="REGIONAL",
                description="Rate limit per client IP and AWS managed rules for the LLM endpoints",
                default_action=wafv2.WebAclDefaultActionArgs(allow=wafv2.WebAclDefaultActionAllowArgs()),
                rules=waf_rules(args.rate_limit_per_5min),
                visibility_config=_visibility(f"{name}-waf"),
                tags=args.tags, opts=child)
            self.waf_acl_arn = acl.arn
            # Every request the WAF sees, in CloudWatch Logs. WAF puts the resource policy its log
            # delivery needs on the log group itself (API_LoggingConfiguration.html above); pulumi-
            # aws 7.x warns that this shared policy (`AWSWAF-LOGS`) can outgrow its size limit in
            # accounts with many web ACLs, then a managed cloudwatch.LogResourcePolicy is the fix.
            logs = cloudwatch.LogGroup(f"{name}-waf-logs", name=f"{WAF_LOG_GROUP_PREFIX}{name}",
                                       retention_in_days=args.log_retention_days,
                                       tags=args.tags, opts=child)
            wafv2.WebAclLoggingConfiguration(
                f"{name}-waf-logging", resource_arn=acl.arn, log_destination_configs=[logs.arn],
                redacted_fields=[wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
                    single_header=wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs(name=h))
                    for h in REDACTED_HEADERS],
                opts=child)

        self.access_logs_bucket = None
        if args.access_logs:
            self.access_logs_bucket = self._access_logs_bucket(name, args)
        self.register_outputs({"namespace": self.namespace})

    def _access_logs_bucket(self, name: str, args: ServingArgs) -> pulumi.Output[str]:
        """The ALB's access logs: private, owner-enforced (no ACLs), SSE-S3 (the only encryption
        ALB access logs support, enable-access-logging.html above), expired after the retention."""
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        abort_uploads = s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=7)
        _, bucket_name = private_bucket(
            f"{name}-alb-logs", self, args.tags, lifecycle_name="expiry",
            lifecycle=s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-access-logs", status="Enabled",
                filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{ACCESS_LOGS_PREFIX}/"),
                expiration=s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.log_retention_days),
                abort_incomplete_multipart_upload=abort_uploads),
            policy=lambda arn: pulumi.Output.from_input(account).apply(
                lambda account_id: access_logs_bucket_policy(arn, account_id)))
        # Whatever uses the name waits for the policy: ELB writes a test file when logs are enabled.
        return bucket_name
