"""The bootstrap as a project of its own (its files, pins, example stack, layout), and as the
platform needs it: what the platform's program builds is what the deploy roles may build."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml

from components.config import stack_file
from components.offline import mockrun
from llmserve_ci import policies
from llmserve_ci.settings import DEFAULT_ROLE_PREFIX, KEYS, Settings

from ..conftest import ROOT, STACKS
from .conftest import BOOTSTRAP, PROJECT, run_bootstrap
from .iam import matches, with_action

MODULES = sorted(BOOTSTRAP.rglob("*.py"))


def pins(path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("-r"))


def test_project_file():
    project = yaml.safe_load((BOOTSTRAP / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT == mockrun.project_name(BOOTSTRAP)
    runtime = project["runtime"]
    assert (runtime if isinstance(runtime, str) else runtime["name"]) == "python"


def test_requirements_pin_the_platforms_versions():
    ours, platform = pins(BOOTSTRAP / "requirements.txt"), pins(ROOT / "requirements.txt")
    assert ours == {"pulumi": platform["pulumi"], "pulumi-aws": platform["pulumi-aws"]}


def test_the_example_stack_runs():
    config, secret_keys = stack_file.read(BOOTSTRAP / "Pulumi.example.yaml", PROJECT)
    assert secret_keys == []
    settings = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{PROJECT}:")}
    run = run_bootstrap(settings)
    assert set(run.outputs["githubEnvironments"]) == set(policies.ENVIRONMENTS)


@pytest.mark.parametrize("path", [BOOTSTRAP / "Pulumi.example.yaml", ROOT / "docs" / "bootstrap.md"],
                         ids=lambda p: p.name)
def test_every_setting_is_shown(path):
    text = path.read_text()
    assert [key for key in KEYS if key not in text] == []


def imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BOOTSTRAP)))
def test_the_bootstrap_stands_alone(path):
    """Deployed from bootstrap/ with its own requirements: nothing of the platform's code."""
    assert not {m for m in imports(path) if m.split(".")[0] == "components"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BOOTSTRAP)))
def test_house_style(path):
    source = path.read_text()
    tree = ast.parse(source)
    components = [c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                  and any(ast.unparse(b).endswith("ComponentResource") for b in c.bases)]
    assert len(components) <= 1
    if components:
        [args] = [c for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name.endswith("Args")]
        assert args.decorator_list and ast.unparse(args.decorator_list[0]) == "dataclass"
        init = next(f for f in components[0].body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
        assert ast.unparse(init.body[-1]).startswith("self.register_outputs(")
    if path.name != "__main__.py":  # only the program reads config
        assert not re.search(r"pulumi\.Config\(|runtime_config|get_config", source)


# What the deploy roles must be allowed for each kind of AWS resource the platform's program
# registers: a new kind in components/ fails here until the bootstrap grants it.
CREATES = {
    "aws:autoscaling/tag:Tag": ["autoscaling:CreateOrUpdateTags"],
    "aws:cloudwatch/logGroup:LogGroup": ["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
    "aws:cloudwatch/logDataProtectionPolicy:LogDataProtectionPolicy": [
        "logs:PutDataProtectionPolicy", "logs:GetDataProtectionPolicy", "logs:DeleteDataProtectionPolicy"],
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": ["ec2:RevokeSecurityGroupIngress",
                                                          "ec2:RevokeSecurityGroupEgress"],
    "aws:ec2/eip:Eip": ["ec2:AllocateAddress", "ec2:ReleaseAddress"],
    "aws:ec2/internetGateway:InternetGateway": ["ec2:CreateInternetGateway", "ec2:AttachInternetGateway"],
    "aws:ec2/launchTemplate:LaunchTemplate": ["ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion"],
    "aws:ec2/natGateway:NatGateway": ["ec2:CreateNatGateway", "ec2:DeleteNatGateway"],
    "aws:ec2/routeTable:RouteTable": ["ec2:CreateRouteTable", "ec2:CreateRoute"],
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ["ec2:AssociateRouteTable"],
    "aws:ec2/securityGroup:SecurityGroup": ["ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup"],
    "aws:ec2/subnet:Subnet": ["ec2:CreateSubnet", "ec2:DeleteSubnet"],
    "aws:ec2/tag:Tag": ["ec2:CreateTags", "ec2:DeleteTags"],
    "aws:ec2/vpc:Vpc": ["ec2:CreateVpc", "ec2:ModifyVpcAttribute", "ec2:DeleteVpc"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["ec2:CreateVpcEndpoint", "ec2:DeleteVpcEndpoints"],
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": ["ecr:CreatePullThroughCacheRule",
                                                          "ecr:DeletePullThroughCacheRule",
                                                          "iam:CreateServiceLinkedRole"],
    "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate": [
        "ecr:CreateRepositoryCreationTemplate", "ecr:DeleteRepositoryCreationTemplate", "ecr:CreateRepository",
        "ecr:PutLifecyclePolicy", "iam:CreateServiceLinkedRole"],
    "aws:secretsmanager/secret:Secret": ["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"],
    "aws:secretsmanager/secretVersion:SecretVersion": ["secretsmanager:PutSecretValue",
                                                       "secretsmanager:GetSecretValue"],
    "aws:elasticache/replicationGroup:ReplicationGroup": ["elasticache:CreateReplicationGroup",
                                                          "elasticache:DeleteReplicationGroup",
                                                          "iam:CreateServiceLinkedRole"],
    "aws:elasticache/subnetGroup:SubnetGroup": ["elasticache:CreateCacheSubnetGroup",
                                                "elasticache:DeleteCacheSubnetGroup"],
    "aws:efs/backupPolicy:BackupPolicy": ["elasticfilesystem:PutBackupPolicy"],
    "aws:efs/fileSystem:FileSystem": ["elasticfilesystem:CreateFileSystem", "elasticfilesystem:DeleteFileSystem"],
    "aws:efs/fileSystemPolicy:FileSystemPolicy": ["elasticfilesystem:PutFileSystemPolicy"],
    "aws:efs/mountTarget:MountTarget": ["elasticfilesystem:CreateMountTarget", "ec2:CreateNetworkInterface"],
    "aws:eks/accessEntry:AccessEntry": ["eks:CreateAccessEntry"],
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": ["eks:AssociateAccessPolicy"],
    "aws:eks/addon:Addon": ["eks:CreateAddon", "eks:DescribeAddonVersions"],
    "aws:eks/cluster:Cluster": ["eks:CreateCluster", "eks:DeleteCluster", "iam:PassRole"],
    "aws:eks/nodeGroup:NodeGroup": ["eks:CreateNodegroup", "iam:PassRole"],
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ["eks:CreatePodIdentityAssociation", "iam:PassRole"],
    "aws:iam/role:Role": ["iam:CreateRole", "iam:TagRole", "iam:DeleteRole"],
    "aws:iam/rolePolicy:RolePolicy": ["iam:PutRolePolicy", "iam:DeleteRolePolicy"],
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
    "aws:kms/alias:Alias": ["kms:CreateAlias"],
    "aws:kms/key:Key": ["kms:CreateKey", "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ["ec2:AuthorizeSecurityGroupIngress"],
    "aws:wafv2/webAcl:WebAcl": ["wafv2:CreateWebACL", "wafv2:DeleteWebACL"],
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": [
        "wafv2:PutLoggingConfiguration", "logs:CreateLogDelivery", "logs:PutResourcePolicy"],
    "aws:s3/bucket:Bucket": ["s3:CreateBucket", "s3:PutBucketTagging", "s3:DeleteBucket"],
    "aws:s3/bucketPolicy:BucketPolicy": ["s3:PutBucketPolicy"],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ["s3:PutBucketPublicAccessBlock"],
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ["s3:PutBucketOwnershipControls"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": [
        "s3:PutEncryptionConfiguration"],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ["s3:PutLifecycleConfiguration"],
}
ACCOUNT = policies.Account("123456789012")
BOUNDARY = "arn:aws:iam::123456789012:policy/github-llmserve-workload-boundary"
DEPLOY = [json.loads(text) for text in (
    policies.read_policy(ACCOUNT, DEFAULT_ROLE_PREFIX), policies.deploy_network_policy(ACCOUNT),
    policies.deploy_services_policy(ACCOUNT, DEFAULT_ROLE_PREFIX),
    policies.deploy_stores_policy(ACCOUNT, DEFAULT_ROLE_PREFIX),
    policies.deploy_iam_policy(ACCOUNT, DEFAULT_ROLE_PREFIX, BOUNDARY, "github-llmserve-"))]


def aws_resources(stack_runs) -> list[mockrun.Registration]:
    return [r for run in stack_runs.values() for r in run.resources if r.type.startswith("aws:")]


def test_deploy_roles_may_build_every_kind_of_resource_the_platform_registers(stack_runs):
    kinds = {r.type for r in aws_resources(stack_runs)}
    assert kinds - set(CREATES) == set(), "a new kind of AWS resource: grant it in bootstrap/"
    for kind in kinds:
        for action in CREATES[kind]:
            assert any(with_action(doc, action, "Allow") for doc in DEPLOY), (kind, action)


def test_the_platforms_names_fall_within_the_deploy_roles_scopes(stack_runs):
    """The deploy policy scopes by rolePrefix what the platform names from its cluster name."""
    statements = {s["Sid"]: s for doc in DEPLOY for s in doc["Statement"]}

    def within(sid: str, arn: str) -> bool:
        return any(matches(pattern, arn) for pattern in statements[sid]["Resource"])

    for r in aws_resources(stack_runs):
        name = r.outputs.get("name", "")
        if r.type == "aws:iam/role:Role":
            assert within("ManagePlatformRoles", f"arn:aws:iam::123456789012:role/{name}"), name
            trust = json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"]
            assert trust in policies.PASSED_TO_SERVICES
        elif r.type == "aws:secretsmanager/secret:Secret":
            arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{r.inputs['namePrefix']}abc-AbCdEf"
            assert within("ImageCacheSignIns", arn), arn
        elif r.type in ("aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
                        "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"):
            prefix = r.inputs.get("ecrRepositoryPrefix") or r.inputs["prefix"]
            assert within("ImageCacheRepositories", f"arn:aws:ecr:us-east-1:123456789012:repository/{prefix}/x"), prefix
        elif r.type == "aws:eks/cluster:Cluster":
            assert within("Cluster", f"arn:aws:eks:us-east-1:123456789012:cluster/{name}"), name
        elif r.type == "aws:cloudwatch/logGroup:LogGroup":
            assert within("PlatformLogGroups", f"arn:aws:logs:us-east-1:123456789012:log-group:{name}"), name
        elif r.type == "aws:cloudwatch/logDataProtectionPolicy:LogDataProtectionPolicy":
            group = r.inputs["logGroupName"]
            assert within("PlatformLogGroups", f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"), group
            assert "logs:PutDataProtectionPolicy" in statements["PlatformLogGroups"]["Action"]
        elif r.type == "aws:s3/bucket:Bucket":
            assert within("AccessLogBuckets", f"arn:aws:s3:::{name}"), name
        elif r.type == "aws:kms/alias:Alias":
            assert within("PlatformKeyAliases", f"arn:aws:kms:us-east-1:123456789012:{name}"), name
        elif r.type == "aws:wafv2/webAcl:WebAcl":
            assert within("WebAcl", f"arn:aws:wafv2:us-east-1:123456789012:regional/webacl/{name}/id"), name
        elif r.type == "aws:kms/key:Key":
            # The KMS statements of the deploy roles and the boundary match keys by this tag.
            assert policies.PLATFORM_TAG in r.inputs["tags"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_files_name_the_bootstraps_roles_and_boundary(stack):
    """A platform stack lists the CI roles of its environments (deploy: admin, preview: view) and
    sets the boundary the deploy roles require, under the names this project gives them."""
    cluster = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"].get("llmserve:cluster", {})
    names = Settings(github_repository="o/r")
    boundary_arn = cluster.get("permissionsBoundaryArn")
    if boundary_arn is not None:
        assert boundary_arn.endswith(f":policy/{names.boundary_name}")
    access = {names.ci_role_name(stack): "admin", names.ci_role_name(f"{stack}-preview"): "view"}
    for entry in cluster.get("accessEntries", []):
        role = entry["principalArn"].rsplit("/", 1)[-1]
        if role.startswith(names.ci_role_prefix):
            assert access.get(role) == entry["access"], role
