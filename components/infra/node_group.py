"""NodeGroup: an EKS managed node group with a launch template (IMDSv2, encrypted root volume),
pinned to the cluster's Kubernetes version and an AMI release version (docs/upgrade.md)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Optional

import pulumi
from pulumi_aws import autoscaling, ec2, eks

from ..config.node_groups import SYSTEM_GROUP, CapacityReservationConfig
from ..planning.cold_start import FAST_PULL_DISK_MIBPS

# The label our workloads select node groups by. EKS's own `eks.amazonaws.com/nodegroup` label
# carries the auto-generated AWS name (with a random suffix), which a config cannot know.
NODE_GROUP_LABEL = "llmserve/node-group"
SYSTEM_NODES = {NODE_GROUP_LABEL: SYSTEM_GROUP}  # the system nodes' selector
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}  # docs/eks.md
# What GPU pods and the GPU operator's daemons tolerate (Kubernetes spells the effect NoSchedule).
GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}
# The Cluster Autoscaler's AWS provider knows GPU nodes by this label: until the device plugin
# advertises the GPUs, it then waits instead of adding more nodes (GPULabel in
# kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/aws_cloud_provider.go).
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# The image volume of a fastImagePull group: gp3 at 600 MiB/s, nodeadm's recommended minimum for
# SOCI parallel pull (awslabs/amazon-eks-ami nodeadm/doc/examples.md, "Enabling fast image pull"),
# and gp3's included 3000 IOPS (docs/capacity.md: what the throughput costs).
SOCI_THROUGHPUT_MIBPS, SOCI_IOPS = FAST_PULL_DISK_MIBPS, 3000
# User data EKS merges with its own for a managed node group: a MIME multi-part document on
# AL2023, TOML on Bottlerocket (https://docs.aws.amazon.com/eks/latest/userguide/
# launch-templates.html#launch-template-user-data). AL2023: nodeadm's FastImagePull feature gate
# (experimental, AMI release v20250813 and later). Bottlerocket: the soci snapshotter, 1.44.0 and
# later (https://bottlerocket.dev/en/os/1.52.x/api/settings/container-runtime/).
FAST_IMAGE_PULL = {
    "AL2023": """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: application/node.eks.aws

---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  featureGates:
    FastImagePull: true

--//--
""",
    # Bottlerocket's parallel-pull defaults are 3 downloads and 1 unpack per image, whole-layer
    # chunks, layers kept (bottlerocket-project-website data/settings/1.44.x/
    # container-runtime-plugins.toml): set to what AL2023's nodeadm uses, as the measured
    # Bottlerocket run did (aws-samples/karpenter-blueprints blueprints/soci-snapshotter/README.md).
    "BOTTLEROCKET": """[settings.container-runtime]
snapshotter = "soci"

[settings.container-runtime-plugins.soci-snapshotter]
pull-mode = "parallel-pull-unpack"

[settings.container-runtime-plugins.soci-snapshotter.parallel-pull-unpack]
max-concurrent-downloads-per-image = 20
concurrent-download-chunk-size = "16mb"
max-concurrent-unpacks-per-image = 12
discard-unpacked-layers = true
""",
}


def root_device(ami_type: str) -> str:
    """The device the launch template must size. Bottlerocket boots from a small OS volume
    (/dev/xvda) and keeps images and containers on its data volume /dev/xvdb; AL2023 has one
    root volume /dev/xvda (bottlerocket-os/bottlerocket README, "Storage")."""
    return "/dev/xvdb" if ami_type.startswith("BOTTLEROCKET") else "/dev/xvda"


def reservation_subnets(where: str, reservation: Optional[CapacityReservationConfig], zones: list[str],
                        subnet_ids: list[pulumi.Input[str]]) -> list[pulumi.Input[str]]:
    """The private subnets a group may launch in: with a zonal reservation, only its AZ's, since
    its instances launch only there (https://docs.aws.amazon.com/eks/latest/userguide/
    capacity-blocks-mng.html). `zones` are the network's AZs, aligned with `subnet_ids`."""
    zone = reservation and reservation.availability_zone
    if not zone:
        return subnet_ids
    if zone not in zones:
        raise pulumi.RunError(f"{where}.capacityReservation.availabilityZone: {zone} is not one of the "
                              f"cluster's AZs ({', '.join(zones)})")
    return [subnet_ids[zones.index(zone)]]


@dataclass
class NodeGroupArgs:
    group: str  # the name workloads select the nodes by: label llmserve/node-group=<group>
    cluster_name: pulumi.Input[str]
    kubernetes_version: str
    node_role_arn: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    instance_types: list[str]
    ami_type: str
    capacity_type: str
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    gpus: int  # GPUs per node (0: a CPU group)
    labels: dict[str, str] = field(default_factory=dict)
    # None: EKS picks the latest AMI at creation (and on a version change) and keeps it.
    release_version: Optional[str] = None
    tags: Optional[dict[str, str]] = None
    # On the instances and their volumes, which the provider's default tags do not reach
    # (Stack.cost_tags): stable tags only, in the launch template, whose every change is a new
    # version that rolls every node of the group.
    cost_tags: dict[str, str] = field(default_factory=dict)
    # A GPU group's `model` tag (StackConfig.model_tag), which changes with the models and slots
    # placed on the group: on its auto-scaling group, propagated to the instances it launches
    # from then on, never rolling a node (NodeGroup._asg_tags).
    model_tag: dict[str, str] = field(default_factory=dict)
    # docs/capacity.md: the reservation it launches into (capacity_type CAPACITY_BLOCK or
    # ON_DEMAND; subnet_ids already those of its AZ), a Bottlerocket data volume snapshot, SOCI.
    capacity_reservation: Optional[CapacityReservationConfig] = None
    data_volume_snapshot_id: Optional[str] = None
    fast_image_pull: bool = False


class NodeGroup(pulumi.ComponentResource):
    node_group: eks.NodeGroup

    def __init__(self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:NodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**(args.tags or {}), "Name": name}
        reservation = args.capacity_reservation
        # A Capacity Block's instance type and market type are in the launch template, and the node
        # group then names no instance type (one or the other, never both: EKS UG launch-templates).
        block = args.capacity_type == "CAPACITY_BLOCK"
        template = ec2.LaunchTemplate(
            f"{name}-lt",
            # IMDSv2 only, hop limit 1: pods cannot reach the node's role through the metadata
            # service; they get AWS access from EKS Pod Identity instead (docs/eks.md).
            metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            block_device_mappings=[ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=root_device(args.ami_type),
                # From a snapshot, the volume is encrypted as the snapshot is: the API takes no
                # encryption value then (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/
                # API_LaunchTemplateEbsBlockDeviceRequest.html); the script's snapshots are.
                ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=args.disk_size_gib, volume_type="gp3",
                    encrypted=None if args.data_volume_snapshot_id else "true",
                    snapshot_id=args.data_volume_snapshot_id, delete_on_termination="true",
                    throughput=SOCI_THROUGHPUT_MIBPS if args.fast_image_pull else None,
                    iops=SOCI_IOPS if args.fast_image_pull else None),
            )],
            user_data=base64.b64encode(FAST_IMAGE_PULL[args.ami_type.split("_")[0]].encode()).decode()
            if args.fast_image_pull else None,
            instance_type=args.instance_types[0] if block else None,
            instance_market_options=ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type="capacity-block")
            if block else None,
            # With a target, the preference is omitted or capacity-reservations-only (the SDK's
            # docstring; https://docs.aws.amazon.com/AWSEC2/latest/APIReference/
            # API_LaunchTemplateCapacityReservationSpecificationRequest.html).
            capacity_reservation_specification=ec2.LaunchTemplateCapacityReservationSpecificationArgs(
                capacity_reservation_preference="capacity-reservations-only"
                if reservation.reserved_only and not block else None,
                capacity_reservation_target={"capacity_reservation_id": reservation.id,
                                             "capacity_reservation_resource_group_arn": reservation.resource_group_arn},
            ) if reservation else None,
            tag_specifications=[ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=t, tags={**args.cost_tags, **tags}) for t in ("instance", "volume")],
            update_default_version=True,
            tags=tags,
            opts=child,
        )
        self.node_group = eks.NodeGroup(
            f"{name}-ng",
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=args.subnet_ids,
            ami_type=args.ami_type,
            # Both pinned: a change to either is an in-place rolling update (UpdateNodegroupVersion)
            # that a preview shows; nothing moves without one.
            version=args.kubernetes_version,
            release_version=args.release_version,
            instance_types=None if block else args.instance_types,
            capacity_type=args.capacity_type,
            scaling_config=eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, max_size=args.max_size, desired_size=args.desired_size),
            update_config=eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=eks.NodeGroupLaunchTemplateArgs(id=template.id,
                                                            version=template.latest_version.apply(str)),
            labels={**args.labels, NODE_GROUP_LABEL: args.group,
                    **({ACCELERATOR_LABEL: "nvidia"} if args.gpus else {})},
            taints=[eks.NodeGroupTaintArgs(**GPU_TAINT)] if args.gpus else None,
            # EKS replaces nodes whose GPUs or kubelet turn unhealthy.
            node_repair_config=eks.NodeGroupNodeRepairConfigArgs(enabled=True),
            tags=tags,
            # The node autoscaler owns desiredSize once the group exists; `pulumi up` must not
            # undo its scaling.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        if args.gpus or args.model_tag:
            self._asg_tags(name, args)
        self.register_outputs({"nodeGroupName": self.node_group.node_group_name})

    def _asg_tags(self, name: str, args: NodeGroupArgs) -> None:
        """Tags on the group's auto-scaling group (not the launch template: a change there is a new
        template version, and EKS rolls every node to it).
        - With no node running, the Cluster Autoscaler learns a GPU group's labels, taints and GPUs
          from the node-template tags (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/
          README.md, "Auto-Discovery Setup", scaling a node group to 0); not on the instances.
        - The `model` cost tag, propagated at launch: Amazon EC2 Auto Scaling tags each instance it
          launches from then on; a changed tag is not applied to running instances and replaces
          none. Volumes do not get it (propagation reaches instances only): the launch template
          tags them with the stable cost tags (https://docs.aws.amazon.com/autoscaling/ec2/
          userguide/ec2-auto-scaling-tagging.html)."""
        asg = self.node_group.resources.apply(lambda r: r[0].autoscaling_groups[0].name)
        prefix = "k8s.io/cluster-autoscaler/node-template"
        template = {f"{prefix}/label/{NODE_GROUP_LABEL}": args.group,
                    f"{prefix}/label/{ACCELERATOR_LABEL}": "nvidia",
                    f"{prefix}/taint/{GPU_TAINT['key']}": f"{GPU_TAINT['value']}:NoSchedule",
                    f"{prefix}/resources/nvidia.com/gpu": str(args.gpus)} if args.gpus else {}
        for i, (key, value) in enumerate(template.items()):
            autoscaling.Tag(f"{name}-template-{i}", autoscaling_group_name=asg,
                            tag=autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                            opts=pulumi.ResourceOptions(parent=self))
        for key, value in args.model_tag.items():
            autoscaling.Tag(f"{name}-{key}-tag", autoscaling_group_name=asg,
                            tag=autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=True),
                            opts=pulumi.ResourceOptions(parent=self))
