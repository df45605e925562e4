"""What may talk to the serving and download pods."""

from __future__ import annotations

from .helpers import manifest


def test_network_policies_deny_by_default(prod_run):
    deny = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    policy = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-serving")["spec"]
    lb, prometheus = policy["ingress"]
    private = sorted(s.inputs["cidrBlock"] for s in prod_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name)
    assert sorted(p["ipBlock"]["cidr"] for p in lb["from"]) == private  # the internal ALB's subnets
    assert lb["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert prometheus["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    [dns] = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    download = manifest(prod_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-72b-download")["spec"]
    https = download["egress"][1]
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    assert https["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16"]  # not the metadata service
