"""What the models share: the namespace and its Pod Security, the API key and HF token Secrets,
the WAF with its logs, the load balancer's access log bucket."""

from __future__ import annotations

import json

from components.offline import mockrun
from components.serving.shared import ACCESS_LOGS_PREFIX, Serving, ServingArgs, access_logs_bucket_policy

from ..conftest import run_settings
from .helpers import manifest


def test_namespace_enforces_baseline_pod_security_and_alb_readiness_gates(dev_run):
    labels = manifest(dev_run, "kubernetes:core/v1:Namespace", "llm")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_api_key_from_config_stays_secret(dev_settings):
    del dev_settings["gateway"]  # the one shared key: stacks without the gateway
    dev_settings["apiKey"] = "key-from-config-123"
    run = run_settings(dev_settings)
    secret = run.one("kubernetes:core/v1:Secret", "llmserve-test-serving-api-key")
    assert mockrun.is_secret(secret.inputs["stringData"])
    assert mockrun.reveal(secret.inputs, mask=False)["stringData"] == {"API_KEY": "key-from-config-123"}
    assert [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")] == [
        "llmserve-test-monitoring-grafana-admin"]
    assert mockrun.is_secret(run.outputs["apiKey"])


def test_without_an_api_key_one_is_generated(ingress_run):
    password = mockrun.reveal(ingress_run.one("random:index/randomPassword:RandomPassword",
                                              "llmserve-ingress-serving-api-key").inputs)
    assert password["length"] >= 32
    assert mockrun.is_secret(ingress_run.outputs["apiKey"])


def test_hf_token_becomes_a_kubernetes_secret(dev_settings):
    dev_settings["hfToken"] = "hf_plain_token_value"
    run = run_settings(dev_settings)
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "hf-token")
    assert mockrun.is_secret(secret.inputs["stringData"])


# The WAF of the shared load balancer (prod: ingress.rateLimitPer5Min) and its logs.
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def test_waf_runs_the_aws_managed_rule_groups_with_their_own_actions(ingress_run):
    rules = {r["name"]: r for r in mockrun.reveal(ingress_run.one(WEB_ACL).inputs)["rules"]}
    assert "block" in rules["rate-limit-per-ip"]["action"]  # the rate limit stays, first
    assert rules["rate-limit-per-ip"]["priority"] == min(r["priority"] for r in rules.values())
    assert len({r["priority"] for r in rules.values()}) == len(rules)
    groups = {name: r for name, r in rules.items() if "managedRuleGroupStatement" in r["statement"]}
    assert set(groups) == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                           "AWSManagedRulesAmazonIpReputationList"}
    for name, rule in groups.items():
        statement = rule["statement"]["managedRuleGroupStatement"]
        assert statement["vendorName"] == "AWS" and statement["name"] == name
        assert rule["overrideAction"] == {"none": {}}  # the group's own actions: block
        assert "action" not in rule
        assert rule["visibilityConfig"]["cloudwatchMetricsEnabled"] is True


def test_waf_only_counts_large_bodies_since_prompts_are_large(ingress_run):
    rules = {r["name"]: r for r in mockrun.reveal(ingress_run.one(WEB_ACL).inputs)["rules"]}
    common = rules["AWSManagedRulesCommonRuleSet"]["statement"]["managedRuleGroupStatement"]
    assert common["ruleActionOverrides"] == [{"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
    for name in ("AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAmazonIpReputationList"):
        assert not rules[name]["statement"]["managedRuleGroupStatement"].get("ruleActionOverrides")


def test_waf_logs_every_request_to_cloudwatch_without_the_api_key(ingress_run):
    acl = ingress_run.one(WEB_ACL)
    logging = mockrun.reveal(ingress_run.one(WAF_LOGGING).inputs)
    assert logging["resourceArn"] == acl.outputs["arn"]
    [group] = [g for g in ingress_run.of_type(LOG_GROUP) if g.outputs["arn"] in logging["logDestinationConfigs"]]
    assert logging["logDestinationConfigs"] == [group.outputs["arn"]]
    assert group.inputs["name"].startswith("aws-waf-logs-")  # WAF requires it
    assert group.inputs["retentionInDays"] == 365  # the stack's cluster.logRetentionDays
    # The API key travels as `Authorization: Bearer ...`: WAF wants header names in lowercase.
    assert logging["redactedFields"] == [{"singleHeader": {"name": "authorization"}}]
    assert "loggingFilter" not in logging  # every request, not a sample


def test_no_waf_no_waf_logs(dev_run):
    assert dev_run.of_type(WEB_ACL) == [] and dev_run.of_type(WAF_LOGGING) == []
    assert not any(g.inputs["name"].startswith("aws-waf-logs-") for g in dev_run.of_type(LOG_GROUP))


def test_no_ingress_no_access_log_bucket(dev_run):
    assert not [r for r in dev_run.resources if r.type.startswith("aws:s3/")]


def serving_with_access_logs(retention: int | None = None) -> mockrun.Run:
    """Serving as the program builds it for a stack with an ingress (access logs on)."""
    def program():
        extra = {} if retention is None else {"log_retention_days": retention}
        Serving("svc", ServingArgs(namespace="llm", api_key=None, hf_token=None,
                                   rate_limit_per_5min=3000, access_logs=True, **extra))
    return mockrun.run_mocked(program, "test", {"aws:region": "eu-west-1"})


def test_access_log_bucket_is_private_encrypted_and_expires():
    run = serving_with_access_logs()
    bucket = run.one(BUCKET)
    settings = [r for r in run.resources if r.type.startswith("aws:s3/") and r.type != BUCKET]
    assert len(settings) == 5 and {r.inputs["bucket"] for r in settings} == {bucket.id}
    sse = mockrun.reveal(run.one(SSE).inputs)
    # SSE-S3: the only server-side encryption ALB access logs support.
    assert sse["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    ownership = mockrun.reveal(run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs)
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}  # no ACLs
    [rule] = mockrun.reveal(run.one(LIFECYCLE).inputs)["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": f"{ACCESS_LOGS_PREFIX}/"}
    assert rule["expiration"] == {"days": 90}
    [rule] = mockrun.reveal(serving_with_access_logs(365).one(LIFECYCLE).inputs)["rules"]
    assert rule["expiration"] == {"days": 365}  # the retention the caller passes


def test_access_log_bucket_policy_lets_only_elb_log_delivery_write_this_accounts_logs():
    run = serving_with_access_logs()
    bucket = run.one(BUCKET)
    policy = json.loads(run.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    allow, deny = policy["Statement"]
    # The service principal works in every Region now (ELB doc history, 2025-09-10).
    assert allow == {"Sid": "AllowElbLogDelivery", "Effect": "Allow",
                     "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                     "Action": "s3:PutObject",
                     "Resource": f"{bucket.outputs['arn']}/{ACCESS_LOGS_PREFIX}/AWSLogs/{mockrun.ACCOUNT}/*"}
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "AWSLogs" not in ACCESS_LOGS_PREFIX  # ELB adds it after the prefix
    # The policy waits for the public access block (two writes to the same bucket's policy state).
    assert run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").urn in \
        run.one("aws:s3/bucketPolicy:BucketPolicy").dependencies


def test_access_log_bucket_policy_document():
    doc = json.loads(access_logs_bucket_policy("arn:aws:s3:::b", "111122223333"))
    assert [s["Sid"] for s in doc["Statement"]] == ["AllowElbLogDelivery", "DenyInsecureTransport"]
    assert doc["Statement"][0]["Resource"] == "arn:aws:s3:::b/alb/AWSLogs/111122223333/*"
    assert doc["Statement"][1]["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
