"""The bootstrap's policy documents as pure functions, without Pulumi: parsed and checked."""

from __future__ import annotations

import ast
import json

import pytest

from components.infra.addons import LBC_POLICY, cluster_autoscaler_policy
from components.infra.image_cache import NODE_PULL_ACTIONS
from components.serving.store import WRITE, store_policy
from llmserve_ci import policies
from llmserve_ci.policies import Account

from .conftest import BOOTSTRAP
from .iam import actions, as_list, statements, with_action

ACCOUNT = Account("123456789012")
PREFIX = "llmserve-"
CI_PREFIX = "github-llmserve-"
BOUNDARY = "arn:aws:iam::123456789012:policy/github-llmserve-workload-boundary"
PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
PLATFORM_ROLES = "arn:aws:iam::123456789012:role/llmserve-*"
# IAM's size limits, whitespace not counted: a customer managed policy, and all inline policies
# of one role together (docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MANAGED_POLICY_MAX = 6144
INLINE_PER_ROLE_MAX = 10240
READ_VERBS = ("Describe", "Get", "List")


def parsed(text: str) -> dict:
    doc = json.loads(text)
    assert doc["Version"] == "2012-10-17"
    return doc


def size(text: str) -> int:
    return len("".join(text.split()))


def deploy_docs() -> list[dict]:
    return [parsed(policies.read_policy(ACCOUNT, PREFIX)), parsed(policies.deploy_network_policy(ACCOUNT)),
            parsed(policies.deploy_services_policy(ACCOUNT, PREFIX)),
            parsed(policies.deploy_stores_policy(ACCOUNT, PREFIX)),
            parsed(policies.deploy_iam_policy(ACCOUNT, PREFIX, BOUNDARY, CI_PREFIX))]


def every_doc() -> list[dict]:
    return [*deploy_docs(),
            parsed(policies.boundary_policy(PREFIX)),
            parsed(policies.state_policy("arn:aws:s3:::b", "arn:aws:kms:us-east-1:1:key/k", True)),
            *(parsed(policies.trust_policy(PROVIDER, "o/r", env)) for env in policies.ENVIRONMENTS)]


def test_the_module_is_pure():
    tree = ast.parse((BOOTSTRAP / "llmserve_ci" / "policies.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m == "pulumi" or m.startswith(("pulumi.", "pulumi_"))}


@pytest.mark.parametrize("environment", policies.ENVIRONMENTS)
def test_trust_is_one_environment_of_one_repository(environment):
    [statement] = statements(parsed(policies.trust_policy(PROVIDER, "octo-org/llmserve", environment)))
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Federated": PROVIDER}
    assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity"]
    assert statement["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": f"repo:octo-org/llmserve:environment:{environment}"}}


def test_the_read_policy_reads_only():
    doc = parsed(policies.read_policy(ACCOUNT, PREFIX))
    assert all(s["Effect"] == "Allow" for s in statements(doc))
    writes = {a for a in actions(doc) if not a.split(":", 1)[1].startswith(READ_VERBS)}
    assert writes == set()
    [iam] = [s for s in statements(doc) if any(a.startswith("iam:") for a in s["Action"])]
    assert iam["Resource"] == [PLATFORM_ROLES]
    # What the program's data sources call, in previews too: the AZs, subnets of an adopted VPC,
    # the caller, S3's managed prefix list (ec2.get_managed_prefix_list: DescribeManagedPrefixLists,
    # GetManagedPrefixListEntries).
    for action in ("ec2:DescribeAvailabilityZones", "ec2:DescribeSubnets", "ec2:DescribeManagedPrefixLists",
                   "ec2:GetManagedPrefixListEntries", "ssm:GetParameter"):
        assert with_action(doc, action, "Allow"), action


def test_state_access_only_when_configured():
    assert policies.state_policy(None, None, write=True) is None
    read = parsed(policies.state_policy("arn:aws:s3:::b", "arn:aws:kms:us-east-1:1:key/k", write=False))
    assert {(a, r) for s in statements(read) for a in s["Action"] for r in s["Resource"]} == {
        ("s3:GetBucketLocation", "arn:aws:s3:::b"), ("s3:ListBucket", "arn:aws:s3:::b"),
        ("s3:GetObject", "arn:aws:s3:::b/*"), ("kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k")}
    write = parsed(policies.state_policy("arn:aws:s3:::b", None, write=True))
    assert actions(write) == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject",
                              "s3:PutObject", "s3:DeleteObject"}


def test_deploy_iam_only_on_platform_roles_and_only_under_the_boundary():
    iam_allows = [s for doc in deploy_docs() for s in statements(doc, "Allow")
                  if any(a.startswith("iam:") for a in s["Action"])]
    for s in iam_allows:
        assert all(a.startswith("iam:") for a in s["Action"]), s["Sid"]
        if s["Action"] == ["iam:CreateServiceLinkedRole"]:
            assert s["Resource"] == ["arn:aws:iam::123456789012:role/aws-service-role/*"]
            assert s["Condition"] == {"StringEquals": {"iam:AWSServiceName": [
                "eks.amazonaws.com", "eks-nodegroup.amazonaws.com", "elasticloadbalancing.amazonaws.com",
                "autoscaling.amazonaws.com", "spot.amazonaws.com", "elasticfilesystem.amazonaws.com",
                "backup.amazonaws.com", "pullthroughcache.ecr.amazonaws.com", "ecr.amazonaws.com",
                "elasticache.amazonaws.com"]}}
        else:
            assert s["Resource"] == [PLATFORM_ROLES], s["Sid"]
    bounded = {"iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy", "iam:PutRolePolicy"}
    for action in bounded:
        for s in with_action(deploy_docs()[-1], action, "Allow"):
            assert s["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY}}
    [pass_role] = [s for s in iam_allows if "iam:PassRole" in s["Action"]]
    assert pass_role["Action"] == ["iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": [
        "eks.amazonaws.com", "ec2.amazonaws.com", "pods.eks.amazonaws.com"]}}
    # Nothing else of IAM: no users, groups, policies, providers, instance profiles.
    allowed = {a for s in iam_allows for a in s["Action"]}
    assert allowed - bounded - {"iam:PassRole", "iam:CreateServiceLinkedRole"} == {
        "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
        "iam:ListInstanceProfilesForRole", "iam:ListRolePolicies", "iam:ListRoleTags",
        "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:TagRole",
        "iam:UntagRole", "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:DeleteRole"}


def test_deploy_cannot_touch_the_boundary_or_the_ci_roles():
    doc = parsed(policies.deploy_iam_policy(ACCOUNT, PREFIX, BOUNDARY, CI_PREFIX))
    for action in ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                   "iam:SetDefaultPolicyVersion"):
        assert any(BOUNDARY in s["Resource"] for s in with_action(doc, action, "Deny")), action
    assert any(s["Resource"] == ["*"] for s in with_action(doc, "iam:DeleteRolePermissionsBoundary", "Deny"))
    for action in ("iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DeleteRole"):
        assert any(s["Resource"] == ["arn:aws:iam::123456789012:role/github-llmserve-*"]
                   for s in with_action(doc, action, "Deny")), action


def test_deploy_scopes_what_the_platform_names_and_tags():
    doc = parsed(policies.deploy_services_policy(ACCOUNT, PREFIX))
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert all(r.split(":", 5)[5].split("/", 1)[1].startswith(PREFIX) for r in by_sid["Cluster"]["Resource"])
    assert "eks:DeleteCluster" in by_sid["Cluster"]["Action"]
    assert by_sid["CreatePlatformKeys"]["Condition"] == {"Null": {"aws:RequestTag/llmserve/cluster": "false"}}
    assert by_sid["ManagePlatformKeys"]["Condition"] == {"Null": {"aws:ResourceTag/llmserve/cluster": "false"}}
    # Never a key policy: that would open or lock any key the role can reach.
    assert not with_action(doc, "kms:PutKeyPolicy", "Allow")
    assert not with_action(doc, "kms:Decrypt", "Allow")


def test_no_statement_allows_everything():
    for doc in every_doc():
        for s in statements(doc, "Allow"):
            assert "NotAction" not in s and "NotResource" not in s and "NotPrincipal" not in s
            assert "*" not in s["Action"] and "iam:*" not in s["Action"], s.get("Sid")
            # No wildcard over IAM's verbs either (iam:Create*, iam:Put*...).
            assert not [a for a in s["Action"] if a.startswith("iam:") and "*" in a], s.get("Sid")
            if "*" in s["Resource"] and not s.get("Condition"):
                assert all(a.split(":", 1)[1] != "*" or a.split(":")[0] == "elasticloadbalancing"
                           for a in s["Action"]), s.get("Sid")


LONGEST_STATE = ("arn:aws:s3:::" + "b" * 63, "arn:aws:kms:us-east-1:123456789012:key/" + "k" * 36)


@pytest.mark.parametrize("name, text, limit", [
    ("boundary", policies.boundary_policy(PREFIX), MANAGED_POLICY_MAX),
    ("read", policies.read_policy(ACCOUNT, "x" * 33), MANAGED_POLICY_MAX),
    ("deploy network", policies.deploy_network_policy(ACCOUNT), MANAGED_POLICY_MAX),
    ("deploy services", policies.deploy_services_policy(ACCOUNT, "x" * 33), MANAGED_POLICY_MAX),
    ("deploy stores", policies.deploy_stores_policy(ACCOUNT, "x" * 33), MANAGED_POLICY_MAX),
    ("deploy inline, all together",
     policies.deploy_iam_policy(ACCOUNT, "x" * 33, BOUNDARY.replace("github-llmserve-", "y" * 40), "y" * 40)
     + policies.state_policy(*LONGEST_STATE, True), INLINE_PER_ROLE_MAX),
    ("preview inline, all together", policies.state_policy(*LONGEST_STATE, False), INLINE_PER_ROLE_MAX),
])
def test_within_iams_size_limits(name, text, limit):
    assert size(text) <= limit, name


def workload_grants() -> list[tuple[str, dict]]:
    """The platform's own policy documents for its workload roles (components/infra)."""
    cluster_kms = {"Statement": [{"Effect": "Allow", "Resource": "arn:aws:kms:us-east-1:1:key/k",
                                  "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]}]}
    # AmazonEFSCSIDriverPolicy v1 (docs.aws.amazon.com/aws-managed-policy/latest/reference/
    # AmazonEFSCSIDriverPolicy.html).
    efs_csi = {"Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:DescribeFileSystems",
        "elasticfilesystem:DescribeMountTargets", "ec2:DescribeAvailabilityZones",
        "elasticfilesystem:CreateAccessPoint", "elasticfilesystem:TagResource",
        "elasticfilesystem:DeleteAccessPoint"]}]}
    # What of CloudWatchAgentServerPolicy (docs.aws.amazon.com/aws-managed-policy/latest/reference/
    # CloudWatchAgentServerPolicy.html) the CloudWatch add-on uses with metrics and traces off.
    container_logs = {"Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups",
        "logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutRetentionPolicy",
        "cloudwatch:PutMetricData", "ec2:DescribeVolumes", "ec2:DescribeTags"]}]}
    # The nodes' pulls through the ECR pull-through cache (components/infra/image_cache.py).
    image_cache = {"Statement": [{"Effect": "Allow", "Resource": "arn:aws:ecr:us-east-1:1:repository/x/*",
                                  "Action": NODE_PULL_ACTIONS}]}
    # The S3 model store's writer (its reader does less), on a platform bucket.
    model_store = json.loads(store_policy("arn:aws:s3:::llmserve-prod-models-x", ["acme/m"], WRITE))
    return [("aws-load-balancer-controller", json.loads(LBC_POLICY.read_text())),
            ("image cache", image_cache), ("model store", model_store),
            ("cloudwatch-observability", container_logs),
            ("cluster-autoscaler", json.loads(cluster_autoscaler_policy("llmserve-dev"))),
            ("cluster secrets key", cluster_kms), ("efs-csi", efs_csi)]


@pytest.mark.parametrize("name, grant", workload_grants(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_boundary_allows_what_the_workload_roles_are_granted(name, grant):
    boundary = parsed(policies.boundary_policy(PREFIX))
    for s in statements(grant, "Allow"):
        for action in s["Action"]:
            allowing = with_action(boundary, action, "Allow")
            assert allowing, f"{name}: {action} is outside the boundary"
            assert not with_action(boundary, action, "Deny"), f"{name}: {action} is denied"
            if action == "iam:CreateServiceLinkedRole":
                assert allowing[0]["Condition"] == s["Condition"]  # elasticloadbalancing only


def test_the_boundary_denies_identity_administration_and_its_own_removal():
    boundary = parsed(policies.boundary_policy(PREFIX))
    for action in ("iam:CreateUser", "iam:CreateAccessKey", "iam:CreateRole", "iam:AttachRolePolicy",
                   "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:PassRole", "iam:CreatePolicy",
                   "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
                   "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary"):
        assert with_action(boundary, action, "Deny"), action
        assert all(s["Resource"] == ["*"] for s in with_action(boundary, action, "Deny"))
    # Nor anything else that would reach past the platform's own services.
    for action in ("sts:AssumeRole", "secretsmanager:GetSecretValue",
                   "ssm:GetParameter", "ec2:RunInstances", "ec2:CreateVpc", "eks:CreateCluster",
                   "kms:PutKeyPolicy", "organizations:LeaveOrganization"):
        assert not with_action(boundary, action, "Allow"), action
    # Objects only of the platform's own buckets (the S3 model store).
    for action in ("s3:GetObject", "s3:PutObject"):
        assert [s["Resource"] for s in with_action(boundary, action, "Allow")] == [[f"arn:aws:s3:::{PREFIX}*"]]


def test_boundary_keys_are_the_platforms_or_used_through_ec2():
    boundary = parsed(policies.boundary_policy(PREFIX))
    kms = [s for s in statements(boundary, "Allow") if any(a.startswith("kms:") for a in s["Action"])]
    assert {json.dumps(s["Condition"], sort_keys=True) for s in kms} == {
        json.dumps({"Null": {"aws:ResourceTag/llmserve/cluster": "false"}}, sort_keys=True),
        json.dumps({"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}, sort_keys=True)}
    assert all(as_list(s["Resource"]) == ["*"] for s in kms)


def test_the_deploy_role_may_grant_the_cluster_key_to_eks():
    """CreateCluster with secrets encryption needs the creator's kms:CreateGrant, and does not
    support the kms:GrantIsForAWSResource condition (Amazon EKS User Guide)."""
    doc = parsed(policies.deploy_services_policy(ACCOUNT, PREFIX))
    [grant] = [s for s in statements(doc) if s["Sid"] == "GrantPlatformKeysToEks"]
    assert grant["Action"] in (["kms:CreateGrant"], "kms:CreateGrant")
    assert "kms:GrantIsForAWSResource" not in json.dumps(grant)
