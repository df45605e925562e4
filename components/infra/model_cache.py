"""ModelCache: an encrypted EFS file system shared by every TGI replica, its mount targets and
security group, the EFS CSI driver add-on with a Pod Identity role, and the StorageClass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_aws import ec2, efs, eks, vpc

from ..config.cluster import ADDON_VERSIONS
from .iam import MANAGED
from .pod_identity import PodIdentityRole, PodIdentityRoleArgs

STORAGE_CLASS = "efs-model-cache"
# docs/eks.md, "EFS as the shared model cache"
CSI_SERVICE_ACCOUNT = "efs-csi-controller-sa"
CSI_POLICY = f"{MANAGED}/service-role/AmazonEFSCSIDriverPolicy"
# The POSIX user and group of every access point the StorageClass provisions, and the mode of its
# root directory (StorageClass parameters `uid`, `gid`, `directoryPerms` of the EFS CSI driver,
# aws-efs-csi-driver v2.3.1 docs/parameters.md). The TGI image and the download Job run as root
# (uid 0) in their containers, yet they write: the access point replaces the NFS client's user and
# group with these for every operation, new files and directories are owned by them, and EFS
# creates the access point's root directory owned by them with this mode when the volume is
# first mounted (enforce-identity-access-points.html; CreationInfo,
# https://docs.aws.amazon.com/efs/latest/ug/API_CreationInfo.html). So the containers' root acts
# as uid 1000, the owner of the directory: owner-only access is enough, since nothing reaches the
# volume as any other user. Without `uid`/`gid` the driver would pick a gid per volume from 50000-
# 7000000 and use it as the uid too: never root either.
ACCESS_POINT_UID = 1000
ACCESS_POINT_GID = 1000
ACCESS_POINT_DIRECTORY_PERMS = "700"


def tls_only_policy(file_system_arn: str) -> str:
    """Clients may mount and write through the mount targets (a file system policy replaces EFS's
    default allow-all, so this must be said), only over TLS (the CSI driver mounts with TLS by
    default), and never with root access: no `elasticfilesystem:ClientRootAccess`. Every volume
    is an access point that enforces the StorageClass's POSIX user (ACCESS_POINT_UID, not root),
    which needs no root access ("Enforcing a user identity using an access point": only an access
    point whose user is root needs ClientRootAccess,
    https://docs.aws.amazon.com/efs/latest/ug/enforce-identity-access-points.html). The one
    driver feature that wants it, deleting an access point's directory with its volume
    (`deleteAccessPointRootDir`, off by default), stays off: a released volume's directory stays
    on the file system (aws-efs-csi-driver v2.3.1, examples/kubernetes/dynamic_provisioning)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AllowMountThroughMountTargets", "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
             "Resource": file_system_arn,
             "Condition": {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}},
            {"Sid": "DenyUnencryptedTransport", "Effect": "Deny", "Principal": {"AWS": "*"},
             "Action": "*", "Resource": file_system_arn,
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    })


@dataclass
class ModelCacheArgs:
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    availability_zones: list[str]
    private_subnet_ids: list[pulumi.Input[str]]  # one per AZ, same order
    node_security_group_id: pulumi.Input[str]
    throughput_mode: str
    # The cluster's Kubernetes version: the CSI driver add-on's version comes from ADDON_VERSIONS
    # (components/config/cluster.py), like the cluster's other add-ons.
    kubernetes_version: str
    provisioned_throughput_mibps: Optional[int] = None
    backup: bool = False
    protect: bool = False
    # The CSI controller runs on these nodes: its add-on is created once they exist.
    nodes: Sequence[pulumi.Resource] = field(default_factory=list)
    permissions_boundary: Optional[str] = None  # on the CSI driver's IAM role
    tags: Optional[dict[str, str]] = None


class ModelCache(pulumi.ComponentResource):
    file_system: efs.FileSystem
    storage_class_name: pulumi.Output[str]

    def __init__(self, name: str, args: ModelCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:ModelCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}

        sg = ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id,
                               description="EFS model cache: NFS from the cluster nodes only",
                               tags={**tags, "Name": f"{name}-efs"}, opts=child)
        vpc.SecurityGroupIngressRule(f"{name}-nfs", security_group_id=sg.id, ip_protocol="tcp",
                                     from_port=2049, to_port=2049,
                                     referenced_security_group_id=args.node_security_group_id,
                                     description="NFS from the EKS nodes", opts=child)

        # `protect` keeps `pulumi destroy` (and a replacing change) from deleting the cache.
        self.file_system = efs.FileSystem(
            f"{name}-efs", encrypted=True, performance_mode="generalPurpose",
            throughput_mode=args.throughput_mode,
            provisioned_throughput_in_mibps=args.provisioned_throughput_mibps,
            tags={**tags, "Name": f"{name}-efs"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        efs.FileSystemPolicy(f"{name}-tls-only", file_system_id=self.file_system.id,
                             policy=self.file_system.arn.apply(tls_only_policy), opts=child)
        if args.backup:
            efs.BackupPolicy(f"{name}-backup", file_system_id=self.file_system.id,
                             backup_policy=efs.BackupPolicyBackupPolicyArgs(status="ENABLED"),
                             opts=child)
        mounts = [efs.MountTarget(f"{name}-mount-{az}", file_system_id=self.file_system.id,
                                  subnet_id=subnet, security_groups=[sg.id], opts=child)
                  for az, subnet in zip(args.availability_zones, args.private_subnet_ids)]

        role = PodIdentityRole(f"{name}-csi", PodIdentityRoleArgs(
            cluster_name=args.cluster_name, namespace="kube-system",
            service_account=CSI_SERVICE_ACCOUNT, managed_policy_arns=[CSI_POLICY],
            associate=False, permissions_boundary=args.permissions_boundary, tags=tags), opts=child)
        addon = eks.Addon(
            f"{name}-csi", cluster_name=args.cluster_name, addon_name="aws-efs-csi-driver",
            addon_version=ADDON_VERSIONS[args.kubernetes_version]["aws-efs-csi-driver"],
            pod_identity_associations=[eks.AddonPodIdentityAssociationArgs(
                service_account=CSI_SERVICE_ACCOUNT, role_arn=role.role_arn)],
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.nodes)))

        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-sc",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=STORAGE_CLASS),
            provisioner="efs.csi.aws.com",
            # One access point (and directory) per volume, created by the CSI controller, with a
            # POSIX user that is not root (ACCESS_POINT_UID above). StorageClass parameters cannot
            # change in place: a change replaces the StorageClass (same name, deleted first); the
            # volumes already provisioned keep their access points.
            parameters={"provisioningMode": "efs-ap", "fileSystemId": self.file_system.id,
                        "uid": str(ACCESS_POINT_UID), "gid": str(ACCESS_POINT_GID),
                        "directoryPerms": ACCESS_POINT_DIRECTORY_PERMS, "basePath": "/models"},
            reclaim_policy="Retain" if args.protect else "Delete",
            volume_binding_mode="Immediate",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[addon, *mounts]),
        )
        self.storage_class_name = storage_class.metadata.name
        self.register_outputs({"fileSystemId": self.file_system.id,
                               "storageClassName": self.storage_class_name})
