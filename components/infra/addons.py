"""Addons: the cluster services the serving stacks rely on. The NVIDIA GPU operator (device
plugin, DCGM exporter), the AWS Load Balancer Controller (the `alb` Ingress class) and the
Cluster Autoscaler (GPU nodes for the HPA's new replicas), each a pinned Helm release; the two
controllers that call AWS get Pod Identity roles.

Node autoscaling: the Cluster Autoscaler scales the EKS managed node groups the platform already
has (node auto-repair, AMI updates, launch templates stay as they are); the GPU groups carry the
node-template tags it needs to scale them from zero. Karpenter would replace the managed node
groups with its own NodePools, which is worth it for many instance types and spot mixes, not for
a handful of GPU groups sized by the planner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_aws as aws

from . import charts
from .node_group import GPU_TOLERATION
from .pod_identity import PodIdentityRole, PodIdentityRoleArgs

GPU_OPERATOR_NAMESPACE = "gpu-operator"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
CA_SERVICE_ACCOUNT = "cluster-autoscaler"
# The controller's published IAM policy, kubernetes-sigs/aws-load-balancer-controller
# docs/install/iam_policy.json at tag v3.5.0 (the chart's appVersion), kept verbatim.
LBC_POLICY = Path(__file__).parent / "policies" / "aws-load-balancer-controller.json"


def gpu_operator_values(bottlerocket: bool, time_slicing_replicas: Optional[int],
                        prometheus_selector: dict[str, str]) -> dict:
    """docs/eks.md: the NVIDIA AMIs ship the driver and the container toolkit; Bottlerocket
    also its device plugin and MIG manager. DCGM's ServiceMonitor carries the label Prometheus
    selects."""
    device_plugin: dict = {"enabled": not bottlerocket}
    if time_slicing_replicas:
        device_plugin["config"] = {"create": True, "name": "time-slicing", "default": "any", "data": {
            "any": "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
                   f"    - name: nvidia.com/gpu\n      replicas: {time_slicing_replicas}\n"
                   # A pod asking for 2 replicas would get 2 slices of one GPU, not 2 GPUs
                   # (NVIDIA/k8s-device-plugin README, "Shared Access to GPUs").
                   "    failRequestsGreaterThanOne: true\n"}}
    return {
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "devicePlugin": device_plugin,
        "migManager": {"enabled": not bottlerocket},
        "dcgmExporter": {"enabled": True, "serviceMonitor": {
            "enabled": True, "additionalLabels": prometheus_selector}},
        "daemonsets": {"tolerations": [GPU_TOLERATION]},
    }


def load_balancer_controller_values(cluster_name: pulumi.Input[str], region: str,
                                    vpc_id: pulumi.Input[str]) -> dict:
    # Region and VPC are given: with IMDS hop limit 1 the controller cannot look them up.
    # The Service mutator webhook (failurePolicy Fail) would reject every Service created while
    # the controller is not yet up, other releases' included; no Service here is a LoadBalancer.
    return {"clusterName": cluster_name, "region": region, "vpcId": vpc_id,
            "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
            "replicaCount": 2, "enableServiceMutatorWebhook": False}


CLUSTER_TAG = "elbv2.k8s.aws/cluster"  # the controller tags what it creates with the cluster's name
SG_INGRESS = {"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"}


def load_balancer_controller_policy(upstream: dict, cluster_name: str, vpc_arn: str) -> str:
    """The published policy scoped as its install guide recommends
    (kubernetes-sigs/aws-load-balancer-controller v3.5.0 docs/deploy/installation.md, "Configure
    IAM"): the unconditioned security-group ingress statement limited to this VPC (`ec2:Vpc`),
    and every "has the controller's cluster tag" condition (`Null ...: false`) narrowed to this
    cluster's name, so the controller of another cluster in the account cannot be steered into
    its load balancers, target groups and security groups."""
    statements = []
    for statement in upstream["Statement"]:
        statement = json.loads(json.dumps(statement))
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if set(actions) == SG_INGRESS and statement.get("Resource") == "*" and "Condition" not in statement:
            statement["Condition"] = {"ArnEquals": {"ec2:Vpc": vpc_arn}}
        null = statement.get("Condition", {}).get("Null", {})
        for key in [k for k, v in null.items() if k.endswith(f"Tag/{CLUSTER_TAG}") and v == "false"]:
            del null[key]
            statement["Condition"].setdefault("StringEquals", {})[key] = cluster_name
        if "Null" in statement.get("Condition", {}) and not null:
            del statement["Condition"]["Null"]
        statements.append(statement)
    return json.dumps({**upstream, "Statement": statements})


# The autoscaler's minor version must match the cluster's. Chart 9.59.0 ships v1.35.0; v1.36.1 is
# the 1.36 release (kubernetes/autoscaler release notes, "Images", found with the search tool).
CLUSTER_AUTOSCALER_IMAGE = {"1.35": "v1.35.0", "1.36": "v1.36.1"}


# The Cluster Autoscaler gives a pod it evicts on scale-down at most --max-graceful-termination-sec
# (default 600 s) of its terminationGracePeriodSeconds, then terminates the node anyway
# (kubernetes/autoscaler cluster-autoscaler/FAQ.md, "How fast is Cluster Autoscaler?" and its
# parameter table): the cap is the stack's longest grace period, never below that default.
CA_DEFAULT_GRACEFUL_TERMINATION_SECONDS = 600


def cluster_autoscaler_values(cluster_name: pulumi.Input[str], region: str,
                              kubernetes_version: str, longest_grace_seconds: int = 0) -> dict:
    return {
        "image": {"tag": CLUSTER_AUTOSCALER_IMAGE[kubernetes_version]},
        "cloudProvider": "aws", "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "rbac": {"serviceAccount": {"create": True, "name": CA_SERVICE_ACCOUNT}},
        "extraArgs": {"balance-similar-node-groups": True, "expander": "least-waste",
                      "skip-nodes-with-system-pods": False, "scale-down-unneeded-time": "10m",
                      "max-graceful-termination-sec": max(CA_DEFAULT_GRACEFUL_TERMINATION_SECONDS,
                                                          longest_grace_seconds)},
    }


def cluster_autoscaler_policy(cluster_name: str) -> str:
    """The minimal policy of kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md:
    describe anything, resize only this cluster's groups (EKS tags managed node groups' ASGs
    `k8s.io/cluster-autoscaler/<cluster>=owned`)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
        {"Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
            "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
            "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup"]},
    ]})


@dataclass
class AddonsArgs:
    cluster_name: str
    ready_cluster_name: pulumi.Input[str]  # resolves once the cluster can run pods
    region: str
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    bottlerocket: bool
    time_slicing_replicas: Optional[int]
    prometheus_selector: dict[str, str]
    monitoring: pulumi.Resource  # the ServiceMonitor CRD comes with it
    nodes: list[pulumi.Resource]
    permissions_boundary: Optional[str] = None  # on the controllers' IAM roles
    tags: Optional[dict[str, str]] = None
    # The longest terminationGracePeriodSeconds of the stack's serving pods
    # (Engine.termination_grace_seconds), which the autoscaler must let them have.
    longest_grace_seconds: int = 0


class Addons(pulumi.ComponentResource):
    load_balancer_controller: pulumi.Resource

    def __init__(self, name: str, args: AddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:addons:Addons", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        charts.release(self, f"{name}-gpu-operator", charts.GPU_OPERATOR, "gpu-operator",
                       GPU_OPERATOR_NAMESPACE,
                       gpu_operator_values(args.bottlerocket, args.time_slicing_replicas,
                                           args.prometheus_selector),
                       depends_on=[args.monitoring, *args.nodes])

        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        vpc_arn = pulumi.Output.concat("arn:aws:ec2:", args.region, ":", account, ":vpc/", args.vpc_id)
        lbc_policy = vpc_arn.apply(lambda arn: load_balancer_controller_policy(
            json.loads(LBC_POLICY.read_text()), args.cluster_name, arn))
        lbc_role = PodIdentityRole(f"{name}-lbc", PodIdentityRoleArgs(
            cluster_name=args.ready_cluster_name, namespace="kube-system",
            service_account=LBC_SERVICE_ACCOUNT, policy=lbc_policy,
            permissions_boundary=args.permissions_boundary, tags=args.tags),
            opts=child)
        self.load_balancer_controller = charts.release(
            self, f"{name}-lbc", charts.AWS_LOAD_BALANCER_CONTROLLER, "aws-load-balancer-controller",
            "kube-system", load_balancer_controller_values(args.ready_cluster_name, args.region, args.vpc_id),
            depends_on=[lbc_role, *args.nodes])

        ca_role = PodIdentityRole(f"{name}-autoscaler", PodIdentityRoleArgs(
            cluster_name=args.ready_cluster_name, namespace="kube-system",
            service_account=CA_SERVICE_ACCOUNT, policy=cluster_autoscaler_policy(args.cluster_name),
            permissions_boundary=args.permissions_boundary, tags=args.tags), opts=child)
        charts.release(self, f"{name}-autoscaler", charts.CLUSTER_AUTOSCALER, "cluster-autoscaler",
                       "kube-system", cluster_autoscaler_values(args.ready_cluster_name, args.region,
                                                                args.kubernetes_version,
                                                                args.longest_grace_seconds),
                       depends_on=[ca_role, *args.nodes])
        self.register_outputs({})
