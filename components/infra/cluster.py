"""Cluster: EKS with a private endpoint, KMS-encrypted secrets, control-plane logs, managed add-ons
at pinned versions (node health, container logs), IAM roles, the system node group, a kubeconfig
that uses `aws eks get-token`, and the explicit Kubernetes provider every Kubernetes resource of
the stack is created with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_aws import cloudwatch, eks, iam, kms

from ..config import AccessEntry, SystemNodeGroupConfig
from ..config.cluster import ADDON_VERSIONS
from ..config.node_groups import SYSTEM_GROUP
from .iam import MANAGED, after, cluster_key_policy, container_logs_key_policy, trust_policy
from .node_group import GPU_TOLERATION, NodeGroup, NodeGroupArgs
from .pod_identity import PodIdentityRole, PodIdentityRoleArgs

# Control-plane log types worth their cost (docs/eks.md, "Security defaults").
LOG_TYPES = ["api", "audit", "authenticator"]
# https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html
ACCESS_POLICIES = {"admin": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                   "view": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"}
# EBS CSI driver add-on: service account and managed policy (docs.aws.amazon.com/eks/latest/
# userguide/ebs-csi.html).
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
CNI_SERVICE_ACCOUNT = "aws-node"  # the VPC CNI's DaemonSet
EBS_CSI_POLICY = f"{MANAGED}/service-role/AmazonEBSCSIDriverPolicy"
BLOCK_STORAGE_CLASS = "gp3"
# Container logs (amazon-cloudwatch-observability: Fluent Bit and the CloudWatch agent): its
# service account and policy (https://docs.aws.amazon.com/eks/latest/userguide/
# amazon-cloudwatch-observability.html), and the log groups its Fluent Bit writes
# (aws-observability/helm-charts@amazon-cloudwatch-observability-6.2.0, values.yaml
# `log_group_name`). On AL2023 nodes only `application` fills by default; `dataplane` and `host`
# read logs AL2023 keeps in journald (https://docs.aws.amazon.com/AmazonCloudWatch/latest/
# monitoring/Container-Insights-setup-EKS-addon.html).
LOGS_NAMESPACE, LOGS_SERVICE_ACCOUNT = "amazon-cloudwatch", "cloudwatch-agent"
LOGS_POLICY = f"{MANAGED}/CloudWatchAgentServerPolicy"
CONTAINER_LOG_GROUPS = ("application", "dataplane", "host")
# Logs only: Container Insights and Application Signals metrics are billed per observation or
# request, and Prometheus with the GPU operator's DCGM exporter already has the metrics; the
# add-on's own DCGM exporter would be a second one on every GPU node. Fluent Bit tolerates every
# taint (the chart's root `tolerations`), said here so GPU pods' logs keep shipping.
LOGS_CONFIGURATION = {"containerLogs": {"enabled": True}, "tolerations": [{"operator": "Exists"}],
                      "containerInsights": {"enabled": False}, "applicationSignals": {"enabled": False},
                      "dcgmExporter": {"enabled": False}, "neuronMonitor": {"enabled": False}}
# The serving pods' API key in the application log group. TGI's launcher logs its parsed arguments
# once at every start, `tracing::info!("{:#?}", args)`, the key included (`api_key: Some(` then
# the key quoted on the next line), and with JSON_OUTPUT=true as one JSON line whose
# fields.message is that pretty Debug text with its newlines and quotes escaped
# (huggingface/text-generation-inference@v3.3.7 launcher/src/main.rs, `main`). Fluent Bit ships
# the line twice in one event: the raw `log` string (escaped once more) and its parsed
# `log_processed` (Merge_Log, aws-observability/helm-charts@amazon-cloudwatch-observability-6.2.0
# values.yaml). A data protection policy masks every match on ingestion; only a principal with
# logs:Unmask reads it back (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/
# mask-sensitive-log-data.html). Custom data identifiers allow 200 characters of letters, digits,
# `_ # = @ / ; , -`, space and `^ $ ? [ ] { } | \ * + .` (no parentheses or quotes:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/CWL-custom-data-identifiers.html), so the
# match runs from `api_key` over a fixed span after `Some`: at most 16 characters of escaped
# newline, indentation and quote, then the key (apiKey: at most 128 characters of an RFC 6750
# b64token, config/load.py; 320 even were each character escaped once more).
API_KEY_IDENTIFIER = "TgiLauncherApiKey"
API_KEY_REGEX = "api_key.{1,8}Some.{1,320}"


def application_logs_protection(cluster_name: str) -> str:
    """The data protection policy of the application log group: audit (no findings destination)
    and mask the launcher's API key (API_KEY_REGEX). The Audit and Deidentify statements must name
    the same identifiers (PutDataProtectionPolicy, Amazon CloudWatch Logs API Reference)."""
    identifiers = [API_KEY_IDENTIFIER]
    return json.dumps({
        "Name": f"{cluster_name}-application-logs",
        "Description": "Masks the serving engine's API key in the launcher's logged arguments",
        "Version": "2021-06-01",
        "Configuration": {"CustomDataIdentifier": [{"Name": API_KEY_IDENTIFIER, "Regex": API_KEY_REGEX}]},
        "Statement": [
            {"Sid": "audit", "DataIdentifier": identifiers,
             "Operation": {"Audit": {"FindingsDestination": {}}}},
            {"Sid": "mask", "DataIdentifier": identifiers, "Operation": {"Deidentify": {"MaskConfig": {}}}},
        ],
    })


# Node health (eks-node-monitoring-agent): node conditions such as AcceleratedHardwareReady (GPU
# XID errors, DCGM checks) that node auto repair acts on
# (https://docs.aws.amazon.com/eks/latest/userguide/node-health.html). Its node agent tolerates
# every taint; its DCGM host engine (dcgm-server) tolerates none by default, so it is told to
# tolerate the GPU taint (aws/eks-node-monitoring-agent@v1.7.0, charts/configuration.schema.json
# and values.yaml). No IAM role: it only reads node logs and writes node conditions.
NODE_HEALTH_CONFIGURATION = {"dcgmAgent": {"tolerations": [GPU_TOLERATION]}}


def kubeconfig(cluster_name: pulumi.Input[str], endpoint: pulumi.Input[str],
               ca_data: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """A kubeconfig whose user runs `aws eks get-token` (the exec credential of
    https://docs.aws.amazon.com/eks/latest/userguide/create-kubeconfig.html): no long-lived
    credential in it, and it works for whoever holds an IAM identity with an access entry."""
    return pulumi.Output.json_dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name,
                      "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name,
                      "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["--region", region, "eks", "get-token", "--cluster-name", cluster_name,
                     "--output", "json"],
            "interactiveMode": "Never",
        }}}],
    })


@dataclass
class ClusterArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    private_subnet_ids: list[pulumi.Input[str]]
    public_access_cidrs: list[str]
    access_entries: list[AccessEntry]
    log_retention_days: int
    system_nodes: SystemNodeGroupConfig
    deletion_protection: bool = False
    permissions_boundary_arn: Optional[str] = None  # on every IAM role
    tags: Optional[dict[str, str]] = None
    # Stack.cost_tags: on the system nodes' instances and volumes and on the gp3 volumes.
    cost_tags: dict[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    cluster: eks.Cluster
    # The cluster's name, resolved once the networking add-ons are in: node groups created with
    # it wait for them (a component's depends_on does not reach its children).
    ready_name: pulumi.Output[str]
    node_role: iam.Role
    node_role_arn: pulumi.Output[str]  # once the node policies are attached
    system_nodes: NodeGroup
    node_security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    block_storage_class: pulumi.Output[str]  # encrypted gp3, the default StorageClass

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}
        versions = ADDON_VERSIONS[args.kubernetes_version]

        boundary = args.permissions_boundary_arn
        role = iam.Role(f"{name}-cluster-role", assume_role_policy=trust_policy("eks.amazonaws.com"),
                        permissions_boundary=boundary, tags=tags, opts=child)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        # Secrets and the control-plane logs, with an explicit key policy (components/infra/iam.py).
        key = kms.Key(f"{name}-secrets", description=f"EKS secrets and logs encryption for {args.cluster_name}",
                      enable_key_rotation=True, deletion_window_in_days=30,
                      policy=pulumi.Output.all(account, role.arn).apply(lambda v: cluster_key_policy(
                          v[0], args.region, args.cluster_name, v[1])),
                      # KMS refuses a key policy that does not let the caller change it later
                      # (CreateKey, BypassPolicyLockoutSafetyCheck); the deploy roles may not
                      # change key policies (docs/bootstrap.md), and the account keeps
                      # administering the key through IAM (the policy's first statement).
                      bypass_policy_lockout_safety_check=True,
                      tags=tags, opts=child)
        kms.Alias(f"{name}-secrets", name=f"alias/eks/{args.cluster_name}", target_key_id=key.key_id,
                  opts=child)
        role_policies = [iam.RolePolicyAttachment(
            f"{name}-cluster-policy", role=role.name, policy_arn=f"{MANAGED}/AmazonEKSClusterPolicy",
            opts=child)]
        # The control plane encrypts and decrypts Secrets with this key only.
        role_policies.append(iam.RolePolicy(f"{name}-cluster-kms", role=role.name, policy=key.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Resource": arn, "Action": [
                "kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]}],
        })), opts=child))

        # Created before the cluster, or EKS creates it with logs kept forever.
        logs = cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
                                   retention_in_days=args.log_retention_days, kms_key_id=key.arn,
                                   tags=tags, opts=child)

        public = bool(args.public_access_cidrs)
        self.cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            # With its policies attached first (and detached last: EKS cleans up its network
            # interfaces with them on delete).
            role_arn=after(role.arn, role_policies),
            vpc_config=eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=public,
                public_access_cidrs=args.public_access_cidrs if public else None,
            ),
            encryption_config=eks.ClusterEncryptionConfigArgs(
                provider=eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn),
                resources=["secrets"]),
            enabled_cluster_log_types=LOG_TYPES,
            # Access entries only (no aws-auth ConfigMap), every one in code (accessEntries): the
            # creator gets no hidden admin entry, which could only be removed by replacing the
            # cluster (https://docs.aws.amazon.com/eks/latest/userguide/creating-access-entries.html).
            access_config=eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False),
            # The add-ons below are EKS-managed; do not also install the unmanaged defaults.
            bootstrap_self_managed_addons=False,
            # Never slide into extended support (six times the hourly price) unnoticed.
            upgrade_policy=eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=args.deletion_protection,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
        )
        cluster_name = self.cluster.name
        # EKS attaches its cluster security group to managed nodes that have no security group of
        # their own in the launch template: it is the nodes' security group.
        self.node_security_group_id = self.cluster.vpc_config.cluster_security_group_id

        grants = []
        for i, access in enumerate(args.access_entries):
            entry = eks.AccessEntry(f"{name}-access-{i}", cluster_name=cluster_name,
                                    principal_arn=access.principal_arn, type="STANDARD", tags=tags,
                                    opts=child)
            scope = (eks.AccessPolicyAssociationAccessScopeArgs(type="namespace", namespaces=access.namespaces)
                     if access.namespaces else eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"))
            grants.append(eks.AccessPolicyAssociation(
                f"{name}-access-{i}", cluster_name=cluster_name, principal_arn=entry.principal_arn,
                policy_arn=ACCESS_POLICIES[access.access], access_scope=scope, opts=child))

        # The VPC CNI manages the nodes' network interfaces with a role of its own through Pod
        # Identity, not the node role every pod could reach
        # (https://docs.aws.amazon.com/eks/latest/userguide/add-ons-iam.html).
        cni_role = PodIdentityRole(f"{name}-vpc-cni", PodIdentityRoleArgs(
            cluster_name=cluster_name, namespace="kube-system", service_account=CNI_SERVICE_ACCOUNT,
            managed_policy_arns=[f"{MANAGED}/AmazonEKS_CNI_Policy"], associate=False,
            permissions_boundary=boundary, tags=tags),
            opts=child)
        # Networking and credentials come before nodes; CoreDNS needs nodes to run on.
        addons = [
            eks.Addon(f"{name}-{addon}", cluster_name=cluster_name, addon_name=addon,
                      addon_version=versions[addon],
                      configuration_values=values, pod_identity_associations=identities,
                      resolve_conflicts_on_create="OVERWRITE",
                      resolve_conflicts_on_update="OVERWRITE", tags=tags, opts=child)
            for addon, values, identities in (
                # NetworkPolicy objects are enforced only with the VPC CNI's network policy agent
                # on (docs.aws.amazon.com/eks/latest/userguide/cni-network-policy.html).
                ("vpc-cni", json.dumps({"enableNetworkPolicy": "true"}),
                 [eks.AddonPodIdentityAssociationArgs(service_account=CNI_SERVICE_ACCOUNT,
                                                      role_arn=cni_role.role_arn)]),
                ("kube-proxy", None, None),
                ("eks-pod-identity-agent", None, None),
            )
        ]

        self.ready_name = after(cluster_name, addons)

        self.node_role = iam.Role(f"{name}-node-role", assume_role_policy=trust_policy("ec2.amazonaws.com"),
                                  permissions_boundary=boundary, tags=tags, opts=child)
        # Nodes join only with these attached: node groups get the role's ARN once they are.
        self.node_role_arn = after(self.node_role.arn, [
            iam.RolePolicyAttachment(f"{name}-node-{policy}", role=self.node_role.name,
                                     policy_arn=f"{MANAGED}/{policy}", opts=child)
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")])

        system = args.system_nodes
        self.system_nodes = NodeGroup(f"{name}-system", NodeGroupArgs(
            group=SYSTEM_GROUP, cluster_name=self.ready_name, node_role_arn=self.node_role_arn,
            kubernetes_version=args.kubernetes_version, release_version=system.release_version,
            subnet_ids=args.private_subnet_ids, instance_types=system.instance_types,
            ami_type="AL2023_x86_64_STANDARD", capacity_type="ON_DEMAND",
            min_size=system.min_size, max_size=system.max_size,
            desired_size=system.desired_size, disk_size_gib=system.disk_size_gi_b,
            gpus=0, tags=tags, cost_tags=args.cost_tags,
        ), opts=pulumi.ResourceOptions(parent=self))
        on_nodes = pulumi.ResourceOptions(parent=self, depends_on=[self.system_nodes])
        eks.Addon(f"{name}-coredns", cluster_name=cluster_name, addon_name="coredns",
                  addon_version=versions["coredns"], resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                  tags=tags, opts=on_nodes)
        # Block storage for Prometheus and Alertmanager (EKS has no default StorageClass).
        ebs_role = PodIdentityRole(f"{name}-ebs-csi", PodIdentityRoleArgs(
            cluster_name=cluster_name, namespace="kube-system", service_account=EBS_CSI_SERVICE_ACCOUNT,
            managed_policy_arns=[EBS_CSI_POLICY], associate=False, permissions_boundary=boundary,
            tags=tags), opts=child)
        ebs = eks.Addon(f"{name}-ebs-csi", cluster_name=cluster_name, addon_name="aws-ebs-csi-driver",
                        addon_version=versions["aws-ebs-csi-driver"],
                        pod_identity_associations=[eks.AddonPodIdentityAssociationArgs(
                            service_account=EBS_CSI_SERVICE_ACCOUNT, role_arn=ebs_role.role_arn)],
                        resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                        tags=tags, opts=on_nodes)
        eks.Addon(f"{name}-node-health", cluster_name=cluster_name, addon_name="eks-node-monitoring-agent",
                  addon_version=versions["eks-node-monitoring-agent"],
                  configuration_values=json.dumps(NODE_HEALTH_CONFIGURATION),
                  resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                  tags=tags, opts=on_nodes)
        self._container_logs(name, args, cluster_name, on_nodes)

        # Kubernetes is reached only once the access entries are granted (the deployer's too),
        # and they take a while to apply: the provider, which gives up on a cluster it cannot
        # reach, is configured after the system nodes (minutes later) as well.
        self.kubeconfig = pulumi.Output.secret(after(kubeconfig(
            cluster_name, self.cluster.endpoint, self.cluster.certificate_authority.data, args.region),
            [*grants, self.system_nodes.node_group]))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)
        gp3 = k8s.storage.v1.StorageClass(f"{name}-gp3", metadata={
            "name": BLOCK_STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        }, provisioner="ebs.csi.aws.com", parameters={
            "type": "gp3", "encrypted": "true",
            # The driver tags each volume with every `tagSpecification_<n>: key=value`
            # (kubernetes-sigs/aws-ebs-csi-driver v1.64.0 docs/tagging.md).
            **{f"tagSpecification_{i}": f"{k}={v}" for i, (k, v) in enumerate(sorted(args.cost_tags.items()), 1)}},
            volume_binding_mode="WaitForFirstConsumer", allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[ebs]))
        self.block_storage_class = gp3.metadata.name
        self.register_outputs({
            "clusterName": cluster_name,
            "kubeconfig": self.kubeconfig,
            "nodeSecurityGroupId": self.node_security_group_id,
        })

    def _container_logs(self, name: str, args: ClusterArgs, cluster_name: pulumi.Output[str],
                        opts: pulumi.ResourceOptions) -> None:
        """Container logs that outlive their node, in log groups created first with the stack's
        retention and a key of their own (else Fluent Bit creates them, kept forever, unencrypted),
        the application group masking the serving engine's API key."""
        tags = args.tags or {}
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        # Not the cluster key: its policy was set at CreateKey and the deploy roles may not change
        # it (no kms:PutKeyPolicy, docs/bootstrap.md). Tagged like every platform key: the deploy
        # roles create and manage only keys with the platform's tag (bootstrap/llmserve_ci/
        # policies.py, CreatePlatformKeys, ManagePlatformKeys).
        key = kms.Key(f"{name}-container-logs", description=f"Container logs encryption for {args.cluster_name}",
                      enable_key_rotation=True, deletion_window_in_days=30,
                      policy=account.apply(lambda a: container_logs_key_policy(a, args.region, args.cluster_name)),
                      # As for the cluster key: the deploy roles may not change key policies, and
                      # the account keeps administering the key through IAM.
                      bypass_policy_lockout_safety_check=True,
                      tags=tags, opts=child)
        kms.Alias(f"{name}-container-logs", name=f"alias/eks/{args.cluster_name}-container-logs",
                  target_key_id=key.key_id, opts=child)
        groups = {group: cloudwatch.LogGroup(
            f"{name}-logs-{group}", name=f"/aws/containerinsights/{args.cluster_name}/{group}",
            retention_in_days=args.log_retention_days, kms_key_id=key.arn, tags=tags,
            opts=child) for group in CONTAINER_LOG_GROUPS}
        # In place before Fluent Bit ships a line: masking applies only to events ingested after.
        protection = cloudwatch.LogDataProtectionPolicy(
            f"{name}-logs-application-protection", log_group_name=groups["application"].name,
            policy_document=application_logs_protection(args.cluster_name), opts=child)
        role = PodIdentityRole(f"{name}-cloudwatch", PodIdentityRoleArgs(
            cluster_name=cluster_name, namespace=LOGS_NAMESPACE, service_account=LOGS_SERVICE_ACCOUNT,
            managed_policy_arns=[LOGS_POLICY], associate=False,
            permissions_boundary=args.permissions_boundary_arn, tags=tags),
            opts=child)
        eks.Addon(f"{name}-container-logs", cluster_name=cluster_name,
                  addon_name="amazon-cloudwatch-observability",
                  addon_version=ADDON_VERSIONS[args.kubernetes_version]["amazon-cloudwatch-observability"],
                  configuration_values=json.dumps(LOGS_CONFIGURATION),
                  pod_identity_associations=[eks.AddonPodIdentityAssociationArgs(
                      service_account=LOGS_SERVICE_ACCOUNT, role_arn=role.role_arn)],
                  resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                  tags=tags, opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[*groups.values(), protection])))
