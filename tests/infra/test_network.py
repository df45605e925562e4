"""Network: subnet plan, a new VPC's subnets, routes and tags, and adoption of an existing VPC."""

from __future__ import annotations

import ipaddress

import pytest

from components.infra.network import plan_subnets

from ..conftest import inputs, run_settings

SUBNET = "aws:ec2/subnet:Subnet"


def test_plan_subnets_of_a_16():
    private, public, lb = plan_subnets("10.0.0.0/16", 3)
    assert private == ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
    assert public == ["10.0.224.0/23", "10.0.226.0/23", "10.0.228.0/23"]
    assert lb == ["10.0.240.0/23", "10.0.242.0/23", "10.0.244.0/23"]


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.20.0.0/18", "192.168.16.0/20"])
@pytest.mark.parametrize("azs", [2, 3, 6])
def test_planned_subnets_lie_in_the_vpc_and_never_overlap(cidr, azs):
    private, public, lb = plan_subnets(cidr, azs)
    nets = [ipaddress.ip_network(c) for c in private + public + lb]
    assert len(nets) == 3 * azs
    assert all(n.subnet_of(ipaddress.ip_network(cidr)) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    # Pods take VPC addresses: private subnets are the big ones; an ALB needs a /27 at least.
    assert all(ipaddress.ip_network(p).num_addresses >= 16 * ipaddress.ip_network(q).num_addresses
               for p, q in zip(private, public))
    assert all(ipaddress.ip_network(c).prefixlen <= 27 for c in public + lb)


def _subnets(run, kind):
    return [s for s in run.of_type(SUBNET) if f"-{kind}-" in s.name]


def test_new_vpc_has_tagged_public_and_private_subnets_per_az(prod_run):
    vpc = inputs(prod_run, "aws:ec2/vpc:Vpc")
    assert vpc["cidrBlock"] == "10.50.0.0/16" and vpc["enableDnsHostnames"] is True
    private, public, lb = (_subnets(prod_run, k) for k in ("private", "public", "lb"))
    assert len(private) == len(public) == len(lb) == 3
    assert len({s.inputs["availabilityZone"] for s in private}) == 3
    for s in private:  # nodes and pods only: no load balancer is placed here
        assert "kubernetes.io/role/internal-elb" not in s.inputs["tags"]
        assert s.inputs["tags"]["kubernetes.io/cluster/llmserve-prod"] == "shared"
    for s in lb:
        assert s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert s.inputs["tags"]["kubernetes.io/cluster/llmserve-prod"] == "shared"
    for s in public:
        assert s.inputs["tags"]["kubernetes.io/role/elb"] == "1"
        assert s.inputs["tags"]["kubernetes.io/cluster/llmserve-prod"] == "shared"
        assert s.inputs["mapPublicIpOnLaunch"] is False


def test_prod_has_a_nat_gateway_per_az_and_dev_one(prod_run, dev_run):
    assert len(prod_run.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert len(dev_run.of_type("aws:ec2/natGateway:NatGateway")) == 1
    # Every private route table sends internet traffic to a NAT gateway, the public one to the IGW.
    for rt in prod_run.of_type("aws:ec2/routeTable:RouteTable"):
        [route] = rt.inputs["routes"]
        assert route["cidrBlock"] == "0.0.0.0/0"
        key = "gatewayId" if rt.name.endswith("-public") else "natGatewayId"
        assert route[key].startswith("igw-" if key == "gatewayId" else "nat-")


def test_default_security_group_is_emptied_and_s3_bypasses_nat(dev_run):
    sg = inputs(dev_run, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg["ingress"] == [] and sg["egress"] == []
    endpoint = inputs(dev_run, "aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert len(endpoint["routeTableIds"]) == 2


EXISTING = {
    "id": "vpc-0123456789abcdef0",
    "privateSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
    "publicSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1"],
    "loadBalancerSubnetIds": ["subnet-0ccccccccccccccc1", "subnet-0ccccccccccccccc2"],
}


def test_existing_vpc_is_adopted_and_its_subnets_tagged(dev_settings):
    dev_settings["cluster"]["vpc"] = EXISTING
    dev_settings["gateway"]["allowedCidrs"] = ["10.0.0.0/8"]  # required on an existing VPC
    run = run_settings(dev_settings)
    assert run.of_type("aws:ec2/vpc:Vpc") == [] and run.of_type(SUBNET) == []
    tags = {(t.inputs["resourceId"], t.inputs["key"]): t.inputs["value"]
            for t in run.of_type("aws:ec2/tag:Tag")}
    for sid in EXISTING["privateSubnetIds"]:
        assert (sid, "kubernetes.io/role/internal-elb") not in tags
        assert tags[(sid, "kubernetes.io/cluster/llmserve-test")] == "shared"
    for sid in EXISTING["loadBalancerSubnetIds"]:
        assert tags[(sid, "kubernetes.io/role/internal-elb")] == "1"
    assert tags[("subnet-0bbbbbbbbbbbbbbb1", "kubernetes.io/role/elb")] == "1"
    cluster = inputs(run, "aws:eks/cluster:Cluster")
    assert cluster["vpcConfig"]["subnetIds"] == EXISTING["privateSubnetIds"]
    mounts = run.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(m.inputs["subnetId"] for m in mounts) == EXISTING["privateSubnetIds"]
    sg = inputs(run, "aws:ec2/securityGroup:SecurityGroup")
    assert sg["vpcId"] == EXISTING["id"]
