"""Network: a new VPC (private subnets for nodes and pods, small private ones for internal load
balancers, public ones for internet-facing load balancers and NAT), or an existing VPC adopted by
tagging its subnets for the AWS Load Balancer Controller.

Internal load balancers get subnets of their own so that the serving pods' NetworkPolicy can
admit them without admitting every node and pod of the private subnets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi_aws import ec2

from ..config import VpcConfig


ROLES = {"public": "kubernetes.io/role/elb", "load-balancer": "kubernetes.io/role/internal-elb"}


def s3_service(region: str) -> str:
    """S3's service name in a region: its gateway endpoint's, and its AWS-managed prefix list's."""
    return f"com.amazonaws.{region}.s3"


def subnet_tags(cluster_name: str, kind: str) -> dict[str, str]:
    """Subnet discovery tags of the AWS Load Balancer Controller: `kubernetes.io/role/elb` on
    public subnets (internet-facing ALBs), `kubernetes.io/role/internal-elb` on the load-balancer
    subnets (internal ALBs; not on the nodes' private subnets), and `kubernetes.io/cluster/<name>`
    so only this cluster's controllers pick them
    (kubernetes-sigs/aws-load-balancer-controller docs/deploy/subnet_discovery.md)."""
    role = {ROLES[kind]: "1"} if kind in ROLES else {}
    return {**role, f"kubernetes.io/cluster/{cluster_name}": "shared"}


def plan_subnets(cidr: str, az_count: int) -> tuple[list[str], list[str], list[str]]:
    """Splits the VPC CIDR into az_count private, public and load-balancer subnets.

    Private subnets get an eighth of the VPC each (the VPC CNI gives every pod a VPC address).
    The last eighth is halved: public subnets (NAT, internet-facing load balancers) and internal
    load-balancer subnets of a 128th each: a /23 of a /16, a /27 of a /20, the smallest an ALB
    takes (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html#subnets-load-balancer)."""
    net = ipaddress.IPv4Network(cidr)
    eighths = list(net.subnets(prefixlen_diff=3))
    public_half, lb_half = eighths[-1].subnets(prefixlen_diff=1)
    if az_count > len(eighths) - 1:
        raise ValueError(f"at most {len(eighths) - 1} AZs fit this plan")
    return ([str(s) for s in eighths[:az_count]],
            [str(s) for s in list(public_half.subnets(prefixlen_diff=3))[:az_count]],
            [str(s) for s in list(lb_half.subnets(prefixlen_diff=3))[:az_count]])


@dataclass
class NetworkArgs:
    cluster_name: str
    region: str
    vpc: VpcConfig


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    availability_zones: list[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    load_balancer_subnet_ids: list[pulumi.Output[str]]  # internal load balancers
    # Known before anything is created (NetworkPolicies use them).
    public_cidrs: list[str]
    load_balancer_cidrs: list[str]  # internal load balancers

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:Network", name, None, opts)
        self._name, self._args = name, args
        if args.vpc.id is not None:
            self._adopt()
        else:
            self._create()
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
        })

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _adopt(self) -> None:
        name, args = self._name, self._args
        self.vpc_id = pulumi.Output.from_input(args.vpc.id)
        # One subnet per AZ counts (EFS allows one mount target per AZ).
        zones: dict[str, str] = {}
        kinds = {"private": args.vpc.private_subnet_ids, "public": args.vpc.public_subnet_ids,
                 "load-balancer": args.vpc.load_balancer_subnet_ids}
        subnets = {sid: ec2.get_subnet(id=sid) for ids in kinds.values() for sid in ids}
        for sid in args.vpc.private_subnet_ids:
            zones.setdefault(subnets[sid].availability_zone, sid)
        self.public_cidrs = [subnets[s].cidr_block for s in args.vpc.public_subnet_ids]
        self.load_balancer_cidrs = [subnets[s].cidr_block for s in args.vpc.load_balancer_subnet_ids]
        if len(zones) < 2:
            raise pulumi.RunError(
                "cluster.vpc.privateSubnetIds: the subnets must span at least 2 AZs; they are all "
                f"in {', '.join(zones)}")
        self.availability_zones = list(zones)
        self.private_subnet_ids = [pulumi.Output.from_input(s) for s in zones.values()]
        self.public_subnet_ids = [pulumi.Output.from_input(s) for s in args.vpc.public_subnet_ids]
        self.load_balancer_subnet_ids = [pulumi.Output.from_input(s) for s in args.vpc.load_balancer_subnet_ids]
        # Tag, without taking ownership of, the subnets so the load balancer controller finds them.
        for kind, ids in kinds.items():
            for sid in ids:
                for key, value in subnet_tags(args.cluster_name, kind).items():
                    ec2.Tag(f"{name}-{sid}-{key.rsplit('/', 1)[-1]}", resource_id=sid, key=key,
                            value=value, opts=self._child())

    def _create(self) -> None:
        name, args = self._name, self._args
        zones = aws.get_availability_zones(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                        values=["opt-in-not-required"])],
        ).names
        if len(zones) < args.vpc.az_count:
            raise pulumi.RunError(f"cluster.vpc.azCount: {args.vpc.az_count} is more than the "
                                  f"{len(zones)} AZs of {args.region}")
        self.availability_zones = zones[: args.vpc.az_count]
        private_cidrs, public_cidrs, lb_cidrs = plan_subnets(args.vpc.cidr, args.vpc.az_count)
        self.public_cidrs, self.load_balancer_cidrs = public_cidrs, lb_cidrs

        vpc = ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc.cidr, enable_dns_hostnames=True,
                      enable_dns_support=True, tags={"Name": args.cluster_name},
                      opts=self._child())
        self.vpc_id = vpc.id
        # The default security group allows all traffic between its members: leave it empty.
        ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                 opts=self._child())
        igw = ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id,
                                  tags={"Name": args.cluster_name}, opts=self._child())
        public_rt = ec2.RouteTable(
            f"{name}-public", vpc_id=vpc.id,
            routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": f"{args.cluster_name}-public"}, opts=self._child())

        public, private, lbs, private_rts, nats = [], [], [], [], []
        for i, az in enumerate(self.availability_zones):
            pub = ec2.Subnet(
                f"{name}-public-{az}", vpc_id=vpc.id, availability_zone=az,
                cidr_block=public_cidrs[i], map_public_ip_on_launch=False,
                tags={"Name": f"{args.cluster_name}-public-{az}",
                      **subnet_tags(args.cluster_name, "public")},
                opts=self._child())
            ec2.RouteTableAssociation(f"{name}-public-{az}", subnet_id=pub.id,
                                      route_table_id=public_rt.id, opts=self._child())
            public.append(pub)
            if i == 0 or not args.vpc.single_nat_gateway:
                eip = ec2.Eip(f"{name}-nat-{az}", domain="vpc",
                              tags={"Name": f"{args.cluster_name}-nat-{az}"}, opts=self._child())
                nats.append(ec2.NatGateway(
                    f"{name}-nat-{az}", allocation_id=eip.id, subnet_id=pub.id,
                    tags={"Name": f"{args.cluster_name}-nat-{az}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))
            priv = ec2.Subnet(
                f"{name}-private-{az}", vpc_id=vpc.id, availability_zone=az,
                cidr_block=private_cidrs[i],
                tags={"Name": f"{args.cluster_name}-private-{az}",
                      **subnet_tags(args.cluster_name, "private")},
                opts=self._child())
            rt = ec2.RouteTable(
                f"{name}-private-{az}", vpc_id=vpc.id,
                routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0",
                                                nat_gateway_id=nats[-1].id)],
                tags={"Name": f"{args.cluster_name}-private-{az}"}, opts=self._child())
            ec2.RouteTableAssociation(f"{name}-private-{az}", subnet_id=priv.id,
                                      route_table_id=rt.id, opts=self._child())
            lb = ec2.Subnet(
                f"{name}-lb-{az}", vpc_id=vpc.id, availability_zone=az, cidr_block=lb_cidrs[i],
                tags={"Name": f"{args.cluster_name}-lb-{az}",
                      **subnet_tags(args.cluster_name, "load-balancer")},
                opts=self._child())
            ec2.RouteTableAssociation(f"{name}-lb-{az}", subnet_id=lb.id, route_table_id=rt.id,
                                      opts=self._child())
            lbs.append(lb)
            private.append(priv)
            private_rts.append(rt)
        # Image layers (ECR) and model files in S3 bypass the NAT gateways: faster and free.
        ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=s3_service(args.region),
                        vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_rts],
                        tags={"Name": f"{args.cluster_name}-s3"}, opts=self._child())
        self.private_subnet_ids = [s.id for s in private]
        self.public_subnet_ids = [s.id for s in public]
        self.load_balancer_subnet_ids = [s.id for s in lbs]
