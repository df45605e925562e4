"""`cluster`: the EKS control plane, its access and logs, and the VPC (new or existing)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from .fields import Cidrs, PolicyArn, PrincipalArn, Settings, SubnetId, dns_label

# EKS standard support (docs/eks.md): 1.34 leaves standard support on 2026-12-02,
# so new clusters start on 1.35 or newer. Extended support costs six times as much per hour.
KUBERNETES_VERSIONS = ("1.35", "1.36")
# The EKS add-ons' versions per Kubernetes version: bumping kubernetesVersion moves them in the
# same preview (docs/upgrade.md). None: no public source was found that names an EKS add-on
# version (vX.Y.Z-eksbuild.N) compatible with that Kubernetes version; EKS then installs its
# default for the cluster's version and keeps it (`aws eks describe-addon-versions --addon-name
# <add-on> --kubernetes-version <k8s>`, the version marked defaultVersion, is the one to pin).
# Sources, per add-on:
# - kube-proxy: https://docs.aws.amazon.com/eks/latest/userguide/managing-kube-proxy.html
#   ("kube-proxy versions"; read in its ja_jp copy, managing-kube-proxy.md);
# - coredns: v1.14.3-eksbuild.3 for both 1.35 and 1.36, the "CoreDNS versions" table of
#   https://docs.aws.amazon.com/ja_jp/eks/latest/userguide/managing-coredns.md (the newest copy
#   found that lists 1.36; the zh_cn and en_us copies on docs.amazonaws.cn stop at 1.35);
# - aws-ebs-csi-driver (1.36): v1.66.0-eksbuild.1, "the version AWS currently marks
#   defaultVersion for Kubernetes 1.36" (DescribeAddonVersions), mitodl/ol-infrastructure pull
#   request #5959 (https://github.com/mitodl/ol-infrastructure/pull/5959, 2026-09-21);
#   1.35: no source names a version for it;
# - aws-efs-csi-driver (1.36): v3.4.2-eksbuild.1, "the newest AWS offers for 1.36", the same
#   pull request; 1.35: no source names a version for it;
# - amazon-cloudwatch-observability: v6.2.0-eksbuild.1, the AddonVersion of AWS's template in
#   "Deploy OTel Container Insights with CloudFormation" (https://docs.amazonaws.cn/en_us/
#   AmazonCloudWatch/latest/monitoring/container-insights-eks-otel-cfn.md: EKS on Kubernetes
#   1.28 or later), the first version with the containerInsights/applicationSignals switches
#   (install-CloudWatch-Observability-EKS-addon.html; the values of
#   aws-observability/helm-charts@amazon-cloudwatch-observability-6.2.0, which the add-on shares).
# Unpinned:
# - vpc-cni: the managing-vpc-cni tables found (docs.aws.amazon.com, its translations, and
#   awsdocs/amazon-eks-user-guide latest/ug/networking/managing-vpc-cni.adoc) stop at 1.33;
# - eks-pod-identity-agent: AWS documents no version per Kubernetes version (its user guide pages
#   point to describe-addon-versions), and no quoted output for 1.35/1.36 was found;
# - eks-node-monitoring-agent: v1.7.0-eksbuild.1 is only the image tag of
#   aws/eks-node-monitoring-agent@v1.7.0 charts/eks-node-monitoring-agent/values.yaml
#   (nodeAgent.image.tag), not a documented add-on version, and no source found names an add-on
#   version for 1.35/1.36. Unpinned, EKS's default must accept components/infra/cluster.py
#   NODE_HEALTH_CONFIGURATION (dcgmAgent is already in charts/configuration.schema.json at
#   v1.6.1): pin it once describe-addon-versions names a version for the cluster's Kubernetes.
_UNPINNED = {"vpc-cni": None, "eks-pod-identity-agent": None, "eks-node-monitoring-agent": None}
ADDON_VERSIONS: dict[str, dict[str, Optional[str]]] = {
    "1.35": {**_UNPINNED, "kube-proxy": "v1.35.3-eksbuild.13",
             "coredns": "v1.14.3-eksbuild.3",
             "aws-ebs-csi-driver": None,
             "aws-efs-csi-driver": None,
             "amazon-cloudwatch-observability": "v6.2.0-eksbuild.1"},
    "1.36": {**_UNPINNED, "kube-proxy": "v1.36.0-eksbuild.14",
             "coredns": "v1.14.3-eksbuild.3",
             "aws-ebs-csi-driver": "v1.66.0-eksbuild.1",
             "aws-efs-csi-driver": "v3.4.2-eksbuild.1",
             "amazon-cloudwatch-observability": "v6.2.0-eksbuild.1"},
}
# The AWS names the cluster's name ends up in. Pulumi names AWS resources `<logical name>-<7
# random characters>` (auto-naming, 8 more characters); the logical names come from
# components/infra. The longest from the cluster name alone: the autoscaler's Pod Identity role,
# `<cluster>-addons-autoscaler-role-xxxxxxx`, within IAM's 64 characters for a role name
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html). With a node
# group's name: its EKS node group, `<cluster>-<group>-ng-xxxxxxx`, within EKS's 63
# (CreateNodegroup). tests/infra/test_names.py renders names at these limits.
AUTONAME = 8
IAM_ROLE_NAME_MAX = 64
NODE_GROUP_NAME_MAX = 63
CLUSTER_NAME_MAX = IAM_ROLE_NAME_MAX - AUTONAME - len("-addons-autoscaler-role")  # 33
CLUSTER_AND_GROUP_MAX = NODE_GROUP_NAME_MAX - AUTONAME - len("--ng")  # 51: both names together
WHY_CLUSTER_NAME = (f"; the longest AWS name it makes, the autoscaler's IAM role, must fit IAM's "
                    f"{IAM_ROLE_NAME_MAX}")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)  # the values CloudWatch Logs accepts


class VpcConfig(Settings):
    """Either a new VPC (`cidr`, `azCount`) or an existing one (`id`, subnet ids)."""

    cidr: Optional[str] = None
    az_count: int = Field(2, ge=2, le=6)
    single_nat_gateway: bool = False
    id: Optional[str] = None
    private_subnet_ids: list[SubnetId] = []
    public_subnet_ids: list[SubnetId] = []
    # Subnets for internal load balancers only: the serving pods admit these, not the private
    # subnets where every node and pod lives.
    load_balancer_subnet_ids: list[SubnetId] = []

    @field_validator("cidr")
    @classmethod
    def _vpc_cidr(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            net = ipaddress.IPv4Network(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 network in CIDR form, e.g. 10.0.0.0/16") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"{v!r}: the prefix must be /16 to /20 (room for one private and "
                             "one public subnet per AZ, pods take VPC addresses)")
        return v

    @model_validator(mode="after")
    def _new_or_existing(self) -> "VpcConfig":
        existing = self.id is not None
        if existing and self.cidr is not None:
            raise ValueError("set either cidr (a new VPC) or id (an existing VPC), not both")
        if not existing:
            if self.cidr is None:
                raise ValueError("set cidr for a new VPC, or id with privateSubnetIds for an "
                                 "existing one")
            if self.private_subnet_ids or self.public_subnet_ids or self.load_balancer_subnet_ids:
                raise ValueError("privateSubnetIds, publicSubnetIds and loadBalancerSubnetIds belong "
                                 "to an existing VPC: set id too, or remove them")
        elif len(set(self.private_subnet_ids)) < 2:
            raise ValueError("privateSubnetIds: an existing VPC needs private subnets in at "
                             "least 2 AZs")
        if existing and not re.match(r"^vpc-[0-9a-f]{8,17}$", self.id):
            raise ValueError(f"id: {self.id!r} is not a VPC id (vpc-0123abcd...)")
        return self


class AccessEntry(Settings):
    """An IAM principal's access to the Kubernetes API (an EKS access entry): `admin` (the
    AmazonEKSClusterAdminPolicy) or `view` (AmazonEKSViewPolicy: no Secrets), in the whole
    cluster or in the listed namespaces only."""

    principal_arn: PrincipalArn
    access: Literal["admin", "view"]
    namespaces: list[str] = []

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        return [dns_label(n, 63) for n in v]


class ClusterConfig(Settings):
    name: Optional[str] = None
    kubernetes_version: str = "1.35"
    public_access_cidrs: Cidrs = []
    # Nobody gets access implicitly (not even whoever created the cluster): every principal is
    # listed, the role that runs `pulumi up` as an admin of the whole cluster.
    access_entries: list[AccessEntry] = Field(min_length=1)
    # A permissions boundary set on every IAM role the program creates (the bootstrap project's
    # deploy roles may create roles only with it: docs/bootstrap.md).
    permissions_boundary_arn: Optional[PolicyArn] = None
    log_retention_days: int = 90
    deletion_protection: bool = False
    vpc: VpcConfig

    @field_validator("name")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else dns_label(v, CLUSTER_NAME_MAX, WHY_CLUSTER_NAME)

    @field_validator("access_entries")
    @classmethod
    def _access(cls, v: list[AccessEntry]) -> list[AccessEntry]:
        principals = [e.principal_arn for e in v]
        if len(set(principals)) != len(principals):
            raise ValueError("a principal is listed twice; one entry per principal")
        if not any(e.access == "admin" and not e.namespaces for e in v):
            raise ValueError("no admin of the whole cluster: list the role that runs `pulumi up` "
                             "(access: admin, no namespaces), or nothing can manage the cluster")
        return v

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise ValueError(f"write the version as a string in quotes ('{v}'): YAML reads "
                             "1.30 as the number 1.3")
        if v not in KUBERNETES_VERSIONS:
            raise ValueError(f"{v!r} is not one of {', '.join(KUBERNETES_VERSIONS)} (EKS "
                             "standard support; 1.34 leaves it on 2026-12-02)")
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"{v} is not one of {', '.join(map(str, LOG_RETENTION_DAYS))} "
                             "(the values CloudWatch Logs accepts)")
        return v
