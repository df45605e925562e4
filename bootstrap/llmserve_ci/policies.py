"""The IAM policy documents of the bootstrap, as pure functions (strings in, JSON out; no Pulumi).

Who may do what:
- the four CI roles are assumed only through GitHub's OIDC provider, each from one GitHub
  environment of one repository (`trust_policy`);
- the preview roles read (`preview_policy`, `state_policy`);
- the deploy roles build the platform (`deploy_policy`) and manage only the platform's IAM roles,
  always under the permissions boundary (`deploy_iam_policy`);
- the boundary (`boundary_policy`) is the most any role the deploy roles make can ever do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

VERSION = "2012-10-17"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
STS_AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks GitHub for
PREVIEW_ENVIRONMENTS = ("dev-preview", "prod-preview")
DEPLOY_ENVIRONMENTS = ("dev", "prod")
ENVIRONMENTS = PREVIEW_ENVIRONMENTS + DEPLOY_ENVIRONMENTS
# The tag the platform puts on its AWS resources (`tags` in the platform's __main__.py); the KMS
# statements below match keys by it.
PLATFORM_TAG = "llmserve/cluster"
# The services the platform hands its roles to: the EKS cluster and node roles, the Pod Identity
# roles (components/infra/cluster.py, pod_identity.py).
PASSED_TO_SERVICES = ("eks.amazonaws.com", "ec2.amazonaws.com", "pods.eks.amazonaws.com")
# The service-linked roles a first `pulumi up` in an account makes AWS create with the caller's
# rights: EKS, its managed node groups, load balancers, the node groups' auto-scaling groups and
# spot capacity, and EFS and AWS Backup (mount targets; EFS automatic backups run as
# AWSServiceRoleForBackup, docs.aws.amazon.com/aws-backup/latest/devguide/
# using-service-linked-roles-AWSServiceRoleForBackup.html).
SERVICE_LINKED_ROLE_SERVICES = (
    "eks.amazonaws.com", "eks-nodegroup.amazonaws.com", "elasticloadbalancing.amazonaws.com",
    "autoscaling.amazonaws.com", "spot.amazonaws.com", "elasticfilesystem.amazonaws.com",
    "backup.amazonaws.com",
    # ECR makes AWSServiceRoleForECRPullThroughCache with the first pull-through cache rule and
    # AWSServiceRoleForECRTemplate with the first repository creation template
    # (docs.aws.amazon.com/AmazonECR/latest/userguide/slr-pullthroughcache.html, slr-rct.html).
    "pullthroughcache.ecr.amazonaws.com", "ecr.amazonaws.com",
    # ElastiCache's AWSServiceRoleForElastiCache, with the first cache (the gateway's quota store).
    "elasticache.amazonaws.com")
# The managed policies made here, named <ciRolePrefix><suffix>: the boundary, and the CI roles'
# policies that are too large to be inline (IAM allows 10,240 characters of inline policy per role,
# 6,144 per managed policy).
BOUNDARY_POLICY = "workload-boundary"
READ_POLICY = "platform-read"
DEPLOY_NETWORK_POLICY = "platform-deploy-network"
DEPLOY_SERVICES_POLICY = "platform-deploy-services"
DEPLOY_STORES_POLICY = "platform-deploy-stores"
# What the platform's CI roles' session lengths must allow: pulumi-up.yml asks for 3 hours
# (role-duration-seconds: 10800), previews and drift checks run within one.
DEPLOY_SESSION_SECONDS = 10800
PREVIEW_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class Account:
    id: str
    partition: str = "aws"

    def arn(self, service: str, resource: str, region: str = "*") -> str:
        return f"arn:{self.partition}:{service}:{region}:{self.id}:{resource}"

    def role(self, name: str) -> str:
        return self.arn("iam", f"role/{name}", region="")


def document(*statements: dict) -> str:
    return json.dumps({"Version": VERSION, "Statement": list(statements)})


def allow(sid: str, actions: list[str], resources: list[str] | str = "*",
          condition: Optional[dict] = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                 "Resource": resources if isinstance(resources, str) else list(resources)}
    if condition:
        statement["Condition"] = condition
    return statement


def deny(sid: str, actions: list[str], resources: list[str] | str = "*") -> dict:
    return {"Sid": sid, "Effect": "Deny", "Action": sorted(actions),
            "Resource": resources if isinstance(resources, str) else list(resources)}


def subject(repository: str, environment: str) -> str:
    """The `sub` claim of a job that runs in a GitHub environment:
    `repo:ORG-NAME/REPO-NAME:environment:ENVIRONMENT-NAME` (docs.github.com/en/actions/reference/
    security/oidc, "Filtering for a specific environment")."""
    return f"repo:{repository}:environment:{environment}"


def trust_policy(provider_arn: str, repository: str, environment: str) -> str:
    """Only GitHub's tokens for this repository's jobs in this environment, issued for STS. Exact
    matches (StringEquals, no wildcards): a pull request, another branch without the
    environment, or a fork gets another `sub`."""
    return document({
        "Sid": "GithubEnvironment" + "".join(p.capitalize() for p in environment.split("-")),
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": ["sts:AssumeRoleWithWebIdentity"],
        "Condition": {"StringEquals": {
            f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
            f"{GITHUB_OIDC_HOST}:sub": subject(repository, environment),
        }},
    })


BUCKET_READS = ["s3:GetBucket*", "s3:GetAccelerateConfiguration", "s3:GetEncryptionConfiguration",
                "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:ListBucket"]


def platform_buckets(account: Account, prefix: str) -> str:
    return f"arn:{account.partition}:s3:::{prefix}*"


def _read_statements(account: Account, prefix: str) -> list[dict]:
    """What `pulumi preview --refresh` reads of the platform: every service it builds with, and
    IAM only for the platform's own roles."""
    return [
        allow("ReadPlatformServices", [
            "ec2:Describe*", "eks:Describe*", "eks:List*", "elasticfilesystem:Describe*",
            # S3's managed prefix list, which the S3 model store's NetworkPolicies read.
            "ec2:GetManagedPrefixListEntries",
            "elasticfilesystem:ListTagsForResource", "elasticloadbalancing:Describe*",
            "autoscaling:Describe*", "logs:DescribeLogGroups", "logs:ListTagsForResource",
            "logs:ListTagsLogGroup", "logs:GetDataProtectionPolicy", "kms:DescribeKey",
            "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
            "kms:ListAliases", "kms:ListKeys", "kms:ListResourceTags", "wafv2:GetWebACL",
            "wafv2:GetLoggingConfiguration", "wafv2:ListWebACLs", "wafv2:ListTagsForResource",
            "wafv2:DescribeManagedRuleGroup", "elasticache:Describe*", "elasticache:ListTagsForResource",
            "ecr:DescribePullThroughCacheRules",
            "ecr:DescribeRepositoryCreationTemplates", "backup:DescribeBackupVault",
            "backup:GetBackupPlan", "backup:GetBackupSelection", "backup:ListBackupPlans",
            "backup:ListBackupSelections", "backup:ListBackupVaults", "backup:ListTags"]),
        allow("ReadPlatformRoles", [
            "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole", "iam:ListRolePolicies", "iam:ListRoleTags"],
            account.role(f"{prefix}*")),
        # The platform's buckets (the load balancer's access logs): their settings, not objects.
        allow("ReadPlatformBuckets", BUCKET_READS, platform_buckets(account, prefix)),
        # AWS's public parameters (EKS and Bottlerocket AMI ids), none of the account's own.
        allow("ReadPublicParameters", ["ssm:GetParameter", "ssm:GetParameters"],
              f"arn:{account.partition}:ssm:*::parameter/aws/service/*"),
    ]


def read_policy(account: Account, prefix: str) -> str:
    """Read-only: Describe/Get/List of the platform's services. All four roles have it."""
    return document(*_read_statements(account, prefix))


def state_policy(bucket_arn: Optional[str], key_arn: Optional[str], write: bool) -> Optional[str]:
    """The Pulumi state in S3 (read; deploys also write it and its lock files) and the awskms
    secrets provider's key (decrypt: Pulumi decrypts the stack's data key with it, then works
    with that key locally). A preview on a DIY backend takes no lock and writes nothing
    (pulumi/pulumi pkg/backend/diy/backend.go, Preview). None when neither is set."""
    statements = []
    if bucket_arn:
        statements.append(allow("StateBucket", ["s3:GetBucketLocation", "s3:ListBucket"], bucket_arn))
        objects = ["s3:GetObject"] + (["s3:DeleteObject", "s3:PutObject"] if write else [])
        statements.append(allow("StateObjects", objects, f"{bucket_arn}/*"))
    if key_arn:
        statements.append(allow("SecretsProviderKey", ["kms:Decrypt"], key_arn))
    return document(*statements) if statements else None


def deploy_network_policy(account: Account) -> str:
    """What `pulumi up` (and `destroy`) of the platform does in EC2: the VPC, its subnets,
    gateways, routes, endpoint and security groups, and the node groups' launch templates."""
    return document(
        allow("Network", [
            "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:ModifyVpcAttribute",
            "ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute",
            "ec2:CreateInternetGateway", "ec2:DeleteInternetGateway", "ec2:AttachInternetGateway",
            "ec2:DetachInternetGateway", "ec2:AllocateAddress", "ec2:ReleaseAddress",
            "ec2:DisassociateAddress", "ec2:CreateNatGateway", "ec2:DeleteNatGateway",
            "ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:CreateRoute", "ec2:DeleteRoute",
            "ec2:ReplaceRoute", "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
            "ec2:ReplaceRouteTableAssociation", "ec2:CreateVpcEndpoint", "ec2:ModifyVpcEndpoint",
            "ec2:DeleteVpcEndpoints", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
            "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
            "ec2:ModifySecurityGroupRules", "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
            "ec2:UpdateSecurityGroupRuleDescriptionsEgress", "ec2:CreateTags", "ec2:DeleteTags",
            # EFS mount targets are network interfaces made with the caller's rights; an ENI a
            # controller left behind blocks deleting its subnet.
            "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
            "ec2:ModifyNetworkInterfaceAttribute"]),
        allow("NodeLaunchTemplates", [
            "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
            "ec2:DeleteLaunchTemplate", "ec2:DeleteLaunchTemplateVersions", "ec2:GetLaunchTemplateData",
            "ec2:RunInstances"]),
    )


def deploy_services_policy(account: Account, prefix: str) -> str:
    """What `pulumi up` (and `destroy`) of the platform does outside EC2 and IAM: EKS and its node
    groups, EFS, KMS, logs, WAF and its logs, the access log bucket, the node-template tags on
    auto-scaling groups, AWS Backup's default plan for EFS. Names the platform chooses are scoped
    by the prefix; KMS keys by the platform's tag."""
    platform_key = {"Null": {f"aws:ResourceTag/{PLATFORM_TAG}": "false"}}
    return document(
        allow("Cluster", [
            "eks:CreateCluster", "eks:DeleteCluster", "eks:UpdateClusterConfig",
            "eks:UpdateClusterVersion", "eks:AssociateEncryptionConfig", "eks:TagResource",
            "eks:UntagResource", "eks:CreateAddon", "eks:UpdateAddon", "eks:DeleteAddon",
            "eks:CreateNodegroup", "eks:UpdateNodegroupConfig", "eks:UpdateNodegroupVersion",
            "eks:DeleteNodegroup", "eks:CreateAccessEntry", "eks:UpdateAccessEntry",
            "eks:DeleteAccessEntry", "eks:AssociateAccessPolicy", "eks:DisassociateAccessPolicy",
            "eks:CreatePodIdentityAssociation", "eks:UpdatePodIdentityAssociation",
            "eks:DeletePodIdentityAssociation"],
            [account.arn("eks", f"{kind}/{prefix}*") for kind in (
                "cluster", "nodegroup", "addon", "access-entry", "podidentityassociation")]),
        allow("ModelCache", [
            "elasticfilesystem:CreateFileSystem", "elasticfilesystem:UpdateFileSystem",
            "elasticfilesystem:UpdateFileSystemProtection", "elasticfilesystem:DeleteFileSystem",
            "elasticfilesystem:CreateMountTarget", "elasticfilesystem:DeleteMountTarget",
            "elasticfilesystem:ModifyMountTargetSecurityGroups",
            "elasticfilesystem:PutFileSystemPolicy", "elasticfilesystem:DeleteFileSystemPolicy",
            "elasticfilesystem:PutBackupPolicy", "elasticfilesystem:PutLifecycleConfiguration",
            "elasticfilesystem:TagResource", "elasticfilesystem:UntagResource",
            "elasticfilesystem:CreateTags", "elasticfilesystem:DeleteTags"]),
        allow("EfsAutomaticBackups", [
            "backup:CreateBackupVault", "backup:CreateBackupPlan", "backup:CreateBackupSelection",
            "backup:TagResource", "backup-storage:MountCapsule"]),
        # The control plane's logs, the containers' (the CloudWatch add-on writes to
        # /aws/containerinsights/<cluster>/...) and the WAF's (WAF wants aws-waf-logs-*).
        allow("PlatformLogGroups", [
            "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy",
            "logs:DeleteRetentionPolicy", "logs:TagResource", "logs:UntagResource",
            "logs:TagLogGroup", "logs:UntagLogGroup",
            # The control-plane log group is encrypted with the cluster's key, the container
            # logs' with a key of their own; the application group masks the API key.
            "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:PutDataProtectionPolicy",
            "logs:DeleteDataProtectionPolicy"],
            [account.arn("logs", f"log-group:{group}{suffix}")
             for group in (f"/aws/eks/{prefix}*", f"/aws/containerinsights/{prefix}*",
                           f"aws-waf-logs-{prefix}*") for suffix in ("", ":*")]),
        # WAF's logs are a vended log delivery: what setting one up to CloudWatch Logs takes
        # (docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-infrastructure-CWL.html).
        allow("WafLogDelivery", ["logs:CreateLogDelivery", "logs:DeleteLogDelivery",
                                 "logs:GetLogDelivery", "logs:ListLogDeliveries",
                                 "logs:UpdateLogDelivery"]),
        allow("WafLogGroupPolicy", ["logs:DescribeLogGroups", "logs:DescribeResourcePolicies",
                                    "logs:PutResourcePolicy"], account.arn("logs", "*")),
        # New keys must carry the platform's tag; afterwards only tagged keys are managed, and
        # never their key policy (PutKeyPolicy is not here): the program sets it once, at
        # CreateKey; changing it later takes an administrator.
        allow("CreatePlatformKeys", ["kms:CreateKey", "kms:TagResource"], "*",
              {"Null": {f"aws:RequestTag/{PLATFORM_TAG}": "false"}}),
        allow("ManagePlatformKeys", [
            "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
            "kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource", "kms:ListGrants",
            "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"], "*", platform_key),
        # EKS encrypts Secrets with a grant made with the cluster creator's rights. Not with
        # kms:GrantIsForAWSResource: CreateCluster does not support it (Amazon EKS User Guide,
        # "Enable secret encryption on an existing cluster", last note).
        allow("GrantPlatformKeysToEks", ["kms:CreateGrant"], "*", platform_key),
        allow("PlatformKeyAliases", ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
              account.arn("kms", f"alias/eks/{prefix}*")),
        # The web ACL, its logging, and the AWS managed rule groups it references.
        allow("WebAcl", ["wafv2:CreateWebACL", "wafv2:UpdateWebACL", "wafv2:DeleteWebACL",
                         "wafv2:TagResource", "wafv2:UntagResource", "wafv2:PutLoggingConfiguration",
                         "wafv2:DeleteLoggingConfiguration"],
              account.arn("wafv2", f"regional/webacl/{prefix}*/*")),
        allow("ManagedRuleGroups", ["wafv2:CreateWebACL", "wafv2:UpdateWebACL"],
              f"arn:{account.partition}:wafv2:*:*:regional/managedruleset/*"),
        allow("AccessLogBuckets", [
            "s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging", "s3:PutBucketPolicy",
            "s3:DeleteBucketPolicy", "s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls",
            "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration"],
            platform_buckets(account, prefix)),
        # The Cluster Autoscaler's node-template tags, on the groups EKS made for this cluster.
        allow("NodeGroupTemplateTags", ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"],
              "*", {"StringLike": {"aws:ResourceTag/eks:cluster-name": f"{prefix}*"}}),
    )


def deploy_stores_policy(account: Account, prefix: str) -> str:
    """What `pulumi up` (and `destroy`) of the platform does for its caches and stores: the ECR
    pull-through cache (rules, templates, repositories, sign-in secrets) and the gateway's token
    quota store (ElastiCache). A policy of its own: the services policy is at IAM's size limit."""
    return document(
        # The ECR pull-through cache (components/infra/image_cache.py): its rules and repository
        # creation templates are per registry, not resources of their own; the repositories and
        # the sign-in secrets carry the platform's prefix (pull-through-cache-iam.html; creating a
        # template takes ecr:CreateRepository too, repository-creation-templates-create.html).
        allow("ImageCacheRules", [
            "ecr:CreatePullThroughCacheRule", "ecr:UpdatePullThroughCacheRule",
            "ecr:DeletePullThroughCacheRule", "ecr:ValidatePullThroughCacheRule",
            "ecr:CreateRepositoryCreationTemplate", "ecr:UpdateRepositoryCreationTemplate",
            "ecr:DeleteRepositoryCreationTemplate"]),
        # A template with a lifecycle policy also takes ecr:PutLifecyclePolicy
        # (repository-creation-templates-create.html).
        allow("ImageCacheRepositories", ["ecr:CreateRepository", "ecr:PutLifecyclePolicy"],
              account.arn("ecr", f"repository/{prefix}*")),
        allow("ImageCacheSignIns", [
            "secretsmanager:CreateSecret", "secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret",
            "secretsmanager:TagResource", "secretsmanager:UntagResource", "secretsmanager:GetResourcePolicy"],
            account.arn("secretsmanager", f"secret:ecr-pullthroughcache/{prefix}*")),
        # The gateway's token quota store (components/infra/quota_store.py): the replication
        # group and its member clusters (<group>-001, -002), its subnet group, the engine's
        # default parameter group it uses.
        allow("QuotaStore", [
            "elasticache:CreateReplicationGroup", "elasticache:ModifyReplicationGroup",
            "elasticache:DeleteReplicationGroup", "elasticache:CreateCacheCluster",
            "elasticache:CreateCacheSubnetGroup", "elasticache:ModifyCacheSubnetGroup",
            "elasticache:DeleteCacheSubnetGroup", "elasticache:AddTagsToResource",
            "elasticache:RemoveTagsFromResource", "elasticache:ListTagsForResource"],
            [account.arn("elasticache", f"{kind}:{name}") for kind, name in (
                ("replicationgroup", f"{prefix}*"), ("cluster", f"{prefix}*"), ("subnetgroup", f"{prefix}*"),
                ("parametergroup", "default.*"))])
    )


def deploy_iam_policy(account: Account, prefix: str, boundary_arn: str, ci_prefix: str) -> str:
    """IAM for `pulumi up` of the platform: only roles named `<prefix>*`, created and granted
    policies only with the boundary set, handed only to the services the platform uses; the
    boundary, the CI roles and their policies are out of reach."""
    platform_roles = account.role(f"{prefix}*")
    return document(
        allow("ManagePlatformRoles", [
            "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole", "iam:ListRolePolicies", "iam:ListRoleTags",
            "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy",
            "iam:TagRole", "iam:UntagRole", "iam:DetachRolePolicy", "iam:DeleteRolePolicy",
            "iam:DeleteRole"], platform_roles),
        allow("BoundedPlatformRoles", [
            "iam:CreateRole", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy",
            "iam:PutRolePolicy"], platform_roles,
            {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}}),
        allow("PassPlatformRoles", ["iam:PassRole"], platform_roles,
              {"StringEquals": {"iam:PassedToService": list(PASSED_TO_SERVICES)}}),
        allow("ServiceLinkedRoles", ["iam:CreateServiceLinkedRole"],
              account.role("aws-service-role/*"),
              {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}}),
        # The boundary and the CI roles' own managed policies (all named <ci_prefix>*).
        deny("KeepTheBootstrapPolicies", [
            "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
            "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"],
            [boundary_arn, account.arn("iam", f"policy/{ci_prefix}*", region="")]),
        deny("NoBoundaryRemoval", ["iam:DeleteRolePermissionsBoundary",
                                   "iam:DeleteUserPermissionsBoundary"]),
        deny("KeepTheCiRoles", [
            "iam:AttachRolePolicy", "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy",
            "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy", "iam:TagRole", "iam:UntagRole",
            "iam:UpdateAssumeRolePolicy", "iam:UpdateRole"], account.role(f"{ci_prefix}*")),
    )


# IAM administration no role under the boundary may do, even if a policy granted it.
IDENTITY_ADMINISTRATION = [
    "iam:AddRoleToInstanceProfile", "iam:AddUserToGroup", "iam:AttachGroupPolicy",
    "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:CreateAccessKey", "iam:CreateGroup",
    "iam:CreateInstanceProfile", "iam:CreateLoginProfile", "iam:CreateOpenIDConnectProvider",
    "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:CreateRole", "iam:CreateSAMLProvider",
    "iam:CreateUser", "iam:DeleteGroupPolicy", "iam:DeletePolicy", "iam:DeletePolicyVersion",
    "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DeleteUser", "iam:DeleteUserPolicy",
    "iam:DetachGroupPolicy", "iam:DetachRolePolicy", "iam:DetachUserPolicy", "iam:PassRole",
    "iam:PutGroupPolicy", "iam:PutRolePolicy", "iam:PutUserPolicy", "iam:SetDefaultPolicyVersion",
    "iam:TagRole", "iam:UntagRole", "iam:UpdateAccessKey", "iam:UpdateAssumeRolePolicy",
    "iam:UpdateLoginProfile", "iam:UpdateOpenIDConnectProviderThumbprint", "iam:UpdateRole",
    "iam:UpdateUser", "iam:UploadSSHPublicKey", "iam:UploadServerCertificate",
    "iam:UploadSigningCertificate",
]
BOUNDARY_CHANGES = [
    "iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
    "iam:PutRolePermissionsBoundary", "iam:PutUserPermissionsBoundary",
]


def boundary_policy(prefix: str) -> str:
    """The permissions boundary of every role the deploy roles create: the union of what the
    platform's workload roles are granted, by service (components/infra): the EKS cluster role
    (AmazonEKSClusterPolicy, its secrets key), the node role (AmazonEKSWorkerNodePolicy,
    AmazonEC2ContainerRegistryPullOnly, AmazonEKS_CNI_Policy), the EBS and EFS CSI drivers'
    managed policies, the AWS Load Balancer Controller's published policy
    (components/infra/policies/aws-load-balancer-controller.json) and the Cluster Autoscaler's
    (components/infra/addons.py), the CloudWatch add-on's (container logs), the nodes' pulls
    through the ECR pull-through cache (components/infra/image_cache.py), the S3 model store's
    Pod Identity roles (components/serving/store.py). Not IAM
    administration, not the boundary's removal."""
    return document(
        allow("WorkloadServices", [
            # Nodes, the VPC CNI, EBS volumes, the controllers' security groups and routes.
            "ec2:Describe*", "ec2:Get*", "ec2:*NetworkInterface*", "ec2:*PrivateIpAddresses",
            "ec2:*Ipv6Addresses", "ec2:*Tags", "ec2:*SecurityGroup*", "ec2:*Volume*",
            "ec2:*Snapshot*", "ec2:*Route", "ec2:ModifyInstanceAttribute",
            "elasticloadbalancing:*",
            "autoscaling:Describe*", "autoscaling:SetDesiredCapacity",
            "autoscaling:TerminateInstanceInAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup",
            "eks:DescribeCluster", "eks:DescribeNodegroup", "eks:ListNodegroups",
            "eks-auth:AssumeRoleForPodIdentity",
            "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability", "ecr:BatchImportUpstreamImage",
            "ecr:CreateRepository",  # the nodes' first pull through the cache (image_cache.py)
            "elasticfilesystem:Describe*", "elasticfilesystem:CreateAccessPoint",
            "elasticfilesystem:DeleteAccessPoint", "elasticfilesystem:TagResource",
            "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
            "elasticfilesystem:ClientRootAccess",
            "acm:DescribeCertificate", "acm:ListCertificates", "acm:GetCertificate",
            "iam:GetServerCertificate", "iam:ListServerCertificates",
            "cognito-idp:DescribeUserPoolClient",
            "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL",
            "wafv2:DisassociateWebACL", "waf-regional:GetWebACL", "waf-regional:GetWebACLForResource",
            "waf-regional:AssociateWebACL", "waf-regional:DisassociateWebACL",
            "shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection",
            "shield:DeleteProtection"]),
        # The CloudWatch add-on's agent and Fluent Bit (CloudWatchAgentServerPolicy): container
        # logs into the platform's /aws/containerinsights/<cluster>/ log groups only.
        allow("ContainerLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                "logs:DescribeLogStreams", "logs:PutRetentionPolicy"],
              [f"arn:aws:logs:*:*:log-group:/aws/containerinsights/*{suffix}" for suffix in ("", ":*")]),
        allow("ContainerLogsDiscovery", ["logs:DescribeLogGroups", "cloudwatch:PutMetricData"]),
        # The S3 model store's readers and writers (components/serving/store.py), on the
        # platform's buckets only.
        allow("ModelStore", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"],
              f"arn:aws:s3:::{prefix}*"),
        allow("LoadBalancerServiceLinkedRole", ["iam:CreateServiceLinkedRole"], "*",
              {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}),
        allow("PlatformKeys", ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                               "kms:GenerateDataKey*", "kms:ListGrants", "kms:ReEncrypt*"], "*",
              {"Null": {f"aws:ResourceTag/{PLATFORM_TAG}": "false"}}),
        # Encrypted EBS volumes (the gp3 StorageClass, node root volumes), through EC2 only.
        allow("VolumeEncryption", ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                                   "kms:GenerateDataKey*", "kms:ReEncrypt*"], "*",
              {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}),
        deny("NoIdentityAdministration", IDENTITY_ADMINISTRATION),
        deny("NoBoundaryRemoval", BOUNDARY_CHANGES),
    )
