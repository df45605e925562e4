"""Serving: what the models of a stack share. One namespace (Pod Security `baseline`, everything
denied until a model's NetworkPolicy allows it), the API key and Hugging Face token Secrets from
Pulumi secrets, and the AWS WAFv2 web ACL of the shared load balancer.

One namespace for all models: the models share the API key, the load balancer and the monitoring;
each model still gets its own ServiceAccount, cache volume, NetworkPolicy, budget and autoscaler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi_aws import wafv2

from ..infra.secrets import SECRET_DATA

API_KEY_SECRET = "tgi-api-key"
API_KEY_KEY = "API_KEY"  # TGI's variable (docs/tgi.md)
HF_TOKEN_SECRET = "hf-token"
HF_TOKEN_KEY = "HF_TOKEN"


@dataclass
class ServingArgs:
    namespace: str
    api_key: Optional[pulumi.Output[str]]  # None: a random key is generated (output `apiKey`)
    hf_token: Optional[pulumi.Output[str]]
    rate_limit_per_5min: Optional[int] = None  # None: no WAF
    tags: Optional[dict[str, str]] = None


class Serving(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    api_key: pulumi.Output[str]
    hf_token_secret: Optional[pulumi.Output[str]]
    waf_acl_arn: Optional[pulumi.Output[str]]

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
            visibility = lambda metric: wafv2.WebAclVisibilityConfigArgs(  # noqa: E731
                cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)
            acl = wafv2.WebAcl(
                f"{name}-waf", scope="REGIONAL",
                description="Rate limit per client IP for the LLM endpoints",
                default_action=wafv2.WebAclDefaultActionArgs(allow={}),
                rules=[wafv2.WebAclRuleArgs(
                    name="rate-limit-per-ip", priority=1,
                    action=wafv2.WebAclRuleActionArgs(block={}),
                    statement=wafv2.WebAclRuleStatementArgs(
                        rate_based_statement=wafv2.WebAclRuleStatementRateBasedStatementArgs(
                            limit=args.rate_limit_per_5min, aggregate_key_type="IP",
                            evaluation_window_sec=300)),
                    visibility_config=visibility("rate-limit-per-ip"),
                )],
                visibility_config=visibility(f"{name}-waf"),
                tags=args.tags, opts=child)
            self.waf_acl_arn = acl.arn
        self.register_outputs({"namespace": self.namespace})
