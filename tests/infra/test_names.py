"""Names at their documented limits still fit every limit AWS and Kubernetes set on the names
they produce (components/config/cluster.py computes the limits from these)."""

from __future__ import annotations

import re

import pytest

from components.config.cluster import CLUSTER_AND_GROUP_MAX, CLUSTER_NAME_MAX

from ..conftest import run_settings, stack_settings

# AWS's limits on the names the program's resources get (Pulumi auto-names them
# `<logical name>-<7 characters>` unless the program sets a name).
AWS_NAME_MAX = {
    "aws:iam/role:Role": 64,  # IAM quotas: role name
    "aws:iam/rolePolicy:RolePolicy": 128,  # IAM quotas: inline policy name
    "aws:eks/nodeGroup:NodeGroup": 63,  # EKS CreateNodegroup
    "aws:eks/cluster:Cluster": 100,  # EKS CreateCluster
    "aws:ec2/launchTemplate:LaunchTemplate": 128,  # EC2 CreateLaunchTemplate
    "aws:ec2/securityGroup:SecurityGroup": 255,  # EC2 security group name
    "aws:cloudwatch/logGroup:LogGroup": 512,  # CloudWatch Logs CreateLogGroup
    "aws:kms/alias:Alias": 256,  # KMS CreateAlias
    "aws:wafv2/webAcl:WebAcl": 128,  # WAFv2 CreateWebACL
    "aws:s3/bucket:Bucket": 63,  # S3 bucket naming rules
    # ElastiCache CreateReplicationGroup: ReplicationGroupId, 1 to 40 characters
    "aws:elasticache/replicationGroup:ReplicationGroup": 40,
    "aws:elasticache/subnetGroup:SubnetGroup": 255,  # CreateCacheSubnetGroup
}
NAME_OUTPUT = {"aws:eks/nodeGroup:NodeGroup": "nodeGroupName",
               "aws:elasticache/replicationGroup:ReplicationGroup": "replicationGroupId"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def longest_names(stack: str) -> dict:
    settings = stack_settings(stack)
    cluster = "c" * CLUSTER_NAME_MAX
    settings["cluster"]["name"] = cluster
    group = "g" * (CLUSTER_AND_GROUP_MAX - len(cluster))
    old = settings["gpuNodeGroups"][0]["name"]
    settings["gpuNodeGroups"][0]["name"] = group
    for m in settings["models"]:
        if m["nodeGroup"] == old:
            m["nodeGroup"] = group
    old = settings["models"][0]["name"]
    settings["models"][0]["name"] = "m" * 40
    for team in settings.get("gateway", {}).get("teams", []):
        team["models"] = [("m" * 40 if m == old else m) for m in team.get("models", [])] or None
    # The pull-through cache allows a cluster name of 19 characters at most (refused beyond:
    # tests/config/test_images.py); its own names are far from their limits.
    settings["images"]["pullThroughCache"] = False
    return settings


@pytest.fixture(scope="module")
def longest_runs():
    """Prod (the gateway, its quota store) and prod with the ingress (the WAF), names at their limits."""
    secrets = {"pagerdutyRoutingKey": "R" * 32, "slackWebhookUrl": "https://hooks.slack.com/services/T/B/x",
               "heartbeatUrl": "https://hc-ping.com/x"}  # prod's receivers need their secrets
    return [run_settings({**longest_names(stack), **secrets}, stack="s" * 40, secret_keys=tuple(secrets))
            for stack in ("prod", "ingress")]


def test_aws_names_fit(longest_runs):
    checked = set()
    for r in (r for run in longest_runs for r in run.resources):
        limit = AWS_NAME_MAX.get(r.type)
        if limit is None:
            continue
        name = r.outputs[NAME_OUTPUT.get(r.type, "name")]
        assert len(name) <= limit, f"{r.type} {name}: {len(name)} characters, AWS allows {limit}"
        checked.add(r.type)
    assert checked == set(AWS_NAME_MAX)  # every limited type was seen


def test_kubernetes_names_fit(longest_runs):
    for r in (r for run in longest_runs for r in run.resources):
        meta = r.inputs.get("metadata") if r.custom else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            continue
        name, kind = meta["name"], r.type.rsplit(":", 1)[-1]
        if kind in ("Service", "Namespace"):
            assert len(name) <= 63 and DNS_1035.match(name) or kind == "Namespace" and DNS_1123.match(name), name
        elif kind in ("Job", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert len(name) <= 63 and DNS_1123.match(name), name  # also label values (job-name)
        else:
            assert len(name) <= 253 and DNS_1123.match(name), name
        for key, value in (meta.get("labels") or {}).items():
            assert isinstance(value, str) and len(value) <= 63, (name, key, value)


def test_one_character_more_is_refused(dev_settings):
    from components.config import ConfigError

    from ..conftest import validate_settings
    dev_settings["cluster"]["name"] = "c" * (CLUSTER_NAME_MAX + 1)
    with pytest.raises(ConfigError, match=r"cluster.name: .* at most 33 characters.*IAM's 64"):
        validate_settings(dev_settings)


def test_a_long_stack_name_needs_a_cluster_name(dev_settings):
    from components.config import ConfigError
    with pytest.raises(ConfigError, match=r"cluster.name: the default, llmserve-<stack>, is .*set cluster.name"):
        run_settings(dev_settings, stack="a-stack-name-much-longer-than-allowed")
