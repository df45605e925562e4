"""What may talk to the serving and download pods, and what they may reach."""

from __future__ import annotations

import ipaddress

from .helpers import manifest


def test_network_policies_deny_by_default(ingress_run):
    """Prod with the ingress: the ALB's subnets reach the models (the gateway's: test_gateway.py)."""
    deny = manifest(ingress_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = manifest(ingress_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-serving")["spec"]
    lb, prometheus = policy["ingress"]
    subnets = {s.name: s.inputs["cidrBlock"] for s in ingress_run.of_type("aws:ec2/subnet:Subnet")}
    # The internal ALB's own subnets, not the private ones where every node and pod lives.
    assert sorted(p["ipBlock"]["cidr"] for p in lb["from"]) == sorted(c for n, c in subnets.items() if "-lb-" in n)
    nodes = [ipaddress.ip_network(c) for n, c in subnets.items() if "-private-" in n]
    assert not any(ipaddress.ip_network(p["ipBlock"]["cidr"]).overlaps(n) for p in lb["from"] for n in nodes)
    assert lb["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert prometheus["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    [dns] = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    download = manifest(ingress_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-download")["spec"]
    https = download["egress"][1]
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    [peer] = https["to"]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert set(peer["ipBlock"]["except"]) == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                              "100.64.0.0/10", "169.254.0.0/16"}


def reachable(rule: dict, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(p["ipBlock"]["cidr"])
               and not any(ip in ipaddress.ip_network(e) for e in p["ipBlock"].get("except", []))
               for p in rule["to"] if "ipBlock" in p)


def test_download_job_reaches_only_public_addresses(prod_run):
    """The Hub and its CDN: nothing in the VPC, the cluster, the node or a peered network."""
    [dns, https] = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy",
                            "qwen-72b-download")["spec"]["egress"]
    assert "ipBlock" not in dns["to"][0]  # DNS: only kube-dns, by selector
    vpc = prod_run.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"]
    subnets = [s.inputs["cidrBlock"] for s in prod_run.of_type("aws:ec2/subnet:Subnet")]
    inside = [str(next(ipaddress.ip_network(c).hosts())) for c in [vpc, *subnets]] + [
        "169.254.169.254",  # instance metadata (IMDS)
        "169.254.170.23",  # EKS Pod Identity agent
        "10.100.0.10", "172.20.0.10",  # EKS's default service ranges (kube-dns)
        "172.31.255.1", "192.168.1.1",  # other private networks (peerings, VPN)
        "100.64.0.1", "100.127.255.254",  # RFC 6598: EKS custom networking's secondary ranges
    ]
    assert [a for a in inside if reachable(https, a)] == []
    for public in ("1.1.1.1", "18.154.227.1", "54.239.0.1"):  # e.g. a CDN edge: reachable
        assert reachable(https, public)
    # Each excluded range, to its first and last address.
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"):
        n = ipaddress.ip_network(net)
        assert not reachable(https, str(n[0])) and not reachable(https, str(n[-1]))
