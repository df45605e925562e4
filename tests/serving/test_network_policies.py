"""What may talk to the serving and download pods."""

from __future__ import annotations

import ipaddress

from .helpers import manifest


def test_network_policies_deny_by_default(prod_run):
    deny = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-serving")["spec"]
    lb, prometheus = policy["ingress"]
    subnets = {s.name: s.inputs["cidrBlock"] for s in prod_run.of_type("aws:ec2/subnet:Subnet")}
    # The internal ALB's own subnets, not the private ones where every node and pod lives.
    assert sorted(p["ipBlock"]["cidr"] for p in lb["from"]) == sorted(c for n, c in subnets.items() if "-lb-" in n)
    nodes = [ipaddress.ip_network(c) for n, c in subnets.items() if "-private-" in n]
    assert not any(ipaddress.ip_network(p["ipBlock"]["cidr"]).overlaps(n) for p in lb["from"] for n in nodes)
    assert lb["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert prometheus["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    [dns] = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    download = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-download")["spec"]
    https = download["egress"][1]
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    assert https["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16"]  # not the metadata service
