"""How clients reach a model: the Service, the Ingress on the shared ALB, the WAF."""

from __future__ import annotations

from components.offline import mockrun

from ..conftest import TGI
from .helpers import manifest


def test_service(dev_run):
    svc = manifest(dev_run, "kubernetes:core/v1:Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]}["http"] == "http"
    assert svc["spec"]["selector"] == {"llmserve/model": "qwen-7b", "llmserve/slot": "blue"}


def test_ingress_on_the_shared_alb(prod_run):
    ing = manifest(prod_run, "kubernetes:networking.k8s.io/v1:Ingress", "qwen-14b")
    a = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert a["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert a["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    assert a["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTPS": 443}]'
    assert "idle_timeout.timeout_seconds=900" in a["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert a["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"
    assert a["alb.ingress.kubernetes.io/inbound-cidrs"] == "10.0.0.0/8"
    acl = prod_run.one("aws:wafv2/webAcl:WebAcl")
    assert a["alb.ingress.kubernetes.io/wafv2-acl-arn"] == acl.outputs["arn"]
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "qwen-14b.llm.example.com"
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    assert paths["/v1"] == "Prefix" and paths["/generate_stream"] == "Exact"
    assert "/metrics" not in paths and "/docs" not in paths and "/" not in paths  # stay in the cluster
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"qwen-14b"}
    routes = TGI["routes"]["post"] + TGI["routes"]["get"]  # only real TGI routes
    for path, kind in paths.items():
        assert path in routes if kind == "Exact" else any(r.startswith(path) for r in routes), path
    assert prod_run.outputs["endpoints"] == {"qwen-14b": "https://qwen-14b.llm.example.com",
                                             "qwen-72b": "https://qwen-72b.llm.example.com"}


def test_waf_rate_limits_each_client(prod_run):
    acl = mockrun.reveal(prod_run.one("aws:wafv2/webAcl:WebAcl").inputs)
    assert acl["scope"] == "REGIONAL"
    [rule] = acl["rules"]
    assert rule["statement"]["rateBasedStatement"]["limit"] == 3000
    assert rule["statement"]["rateBasedStatement"]["aggregateKeyType"] == "IP"
    assert "block" in rule["action"]


def test_no_ingress_configured_means_no_load_balancer(dev_run):
    assert dev_run.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    assert dev_run.of_type("aws:wafv2/webAcl:WebAcl") == []
    policy = manifest(dev_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-7b-serving")
    assert not any("ipBlock" in peer for rule in policy["spec"]["ingress"] for peer in rule["from"])
