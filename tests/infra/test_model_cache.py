"""Model cache: encrypted EFS, mount targets, NFS only from the nodes, CSI driver, StorageClass."""

from __future__ import annotations

import fnmatch
import json

from components.offline import mockrun

from ..conftest import inputs, names, run_settings

EFS = "aws:efs/fileSystem:FileSystem"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"


def test_file_system_is_encrypted_with_elastic_throughput(dev_run):
    fs = inputs(dev_run, EFS)
    assert fs["encrypted"] is True
    assert fs["throughputMode"] == "elastic"
    assert dev_run.outputs["efsId"].startswith("fs-")


def test_provisioned_throughput(dev_settings):
    dev_settings["storage"] = {"throughputMode": "provisioned", "provisionedThroughputMibps": 256}
    fs = inputs(run_settings(dev_settings), EFS)
    assert fs["throughputMode"] == "provisioned" and fs["provisionedThroughputInMibps"] == 256


def test_one_mount_target_per_az_reachable_only_from_the_nodes(prod_run):
    private = sorted(s.name for s in prod_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name)
    mounts = prod_run.of_type("aws:efs/mountTarget:MountTarget")
    assert len(mounts) == 3
    assert sorted(n for m in mounts for n in names(m.dependencies) if "-private-" in n) == private
    sg = prod_run.one("aws:ec2/securityGroup:SecurityGroup", "llmserve-prod-cache-sg")
    assert all(m.inputs["securityGroups"] == [sg.id] for m in mounts)
    [rule] = prod_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rule.inputs["securityGroupId"] == sg.id
    assert rule.inputs["ipProtocol"] == "tcp"
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 2049
    assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs
    # EKS puts its cluster security group on managed nodes: NFS from the nodes only.
    cluster = prod_run.one("aws:eks/cluster:Cluster")
    assert rule.inputs["referencedSecurityGroupId"] == cluster.outputs["vpcConfig"]["clusterSecurityGroupId"]


def test_nfs_clients_mount_through_mount_targets_and_only_over_tls(dev_run):
    policy = json.loads(inputs(dev_run, "aws:efs/fileSystemPolicy:FileSystemPolicy")["policy"])
    allow, deny = policy["Statement"]
    # With a policy in place EFS no longer allows anonymous mounts by default: say it.
    assert allow["Effect"] == "Allow"
    assert set(allow["Action"]) == {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
    assert allow["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_no_client_acts_as_root_on_the_file_system(prod_run):
    """No statement allows ClientRootAccess, by name or by a wildcard: the access points' POSIX
    user (not root) is all the CSI driver's volumes need."""
    policy = json.loads(inputs(prod_run, "aws:efs/fileSystemPolicy:FileSystemPolicy")["policy"])
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        root = [a for a in actions if fnmatch.fnmatchcase("elasticfilesystem:ClientRootAccess", a)]
        assert root == [], actions


def test_csi_driver_addon_uses_pod_identity(dev_run):
    addon = next(a for a in dev_run.of_type("aws:eks/addon:Addon")
                 if a.inputs["addonName"] == "aws-efs-csi-driver")
    [assoc] = mockrun.reveal(addon.inputs["podIdentityAssociations"])
    assert assoc["serviceAccount"] == "efs-csi-controller-sa"
    role = next(r for r in dev_run.of_type("aws:iam/role:Role") if r.name == "llmserve-dev-cache-csi-role")
    assert assoc["roleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    attachment = inputs(dev_run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                        "llmserve-dev-cache-csi-AmazonEFSCSIDriverPolicy")
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"


def test_storage_class(dev_run):
    sc = dev_run.one(STORAGE_CLASS, "llmserve-dev-cache-sc")
    manifest = mockrun.reveal(sc.inputs)
    assert manifest["provisioner"] == "efs.csi.aws.com"
    assert manifest["parameters"]["provisioningMode"] == "efs-ap"
    assert manifest["parameters"]["fileSystemId"] == dev_run.outputs["efsId"]
    # The access points' POSIX user, group and root directory mode (the CSI driver's names), not
    # root: the TGI containers run as root but act as this user on the volume.
    assert manifest["parameters"]["uid"] == manifest["parameters"]["gid"] == "1000"
    assert manifest["parameters"]["directoryPerms"] == "700"
    assert manifest["parameters"]["basePath"] == "/models"
    assert manifest["reclaimPolicy"] == "Delete"
    # Volumes are provisioned once the driver and the mount targets are there.
    deps = names(sc.dependencies)
    assert "llmserve-dev-cache-csi" in deps
    assert {m.name for m in dev_run.of_type("aws:efs/mountTarget:MountTarget")} <= deps


def test_dev_cache_is_disposable(dev_run):
    assert not dev_run.one(EFS).protect
    assert dev_run.of_type("aws:efs/backupPolicy:BackupPolicy") == []


def test_prod_cache_is_backed_up_and_protected(prod_run):
    assert prod_run.one(EFS).protect
    backup = inputs(prod_run, "aws:efs/backupPolicy:BackupPolicy")
    assert backup["backupPolicy"] == {"status": "ENABLED"}
    assert mockrun.reveal(prod_run.one(STORAGE_CLASS, "llmserve-prod-cache-sc").inputs)["reclaimPolicy"] == "Retain"
