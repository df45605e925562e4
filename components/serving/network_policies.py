"""What may talk to a model's pods: its serving pods accept the load balancer and Prometheus and
reach only DNS; its download Jobs reach DNS and HTTPS on public addresses (the Hub and its CDN),
nothing inside the VPC, the cluster or the node."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from ..infra.monitoring import NAMESPACE as MONITORING_NAMESPACE
from .labels import PROMETHEUS_POD, component
from .scope import Scope

DNS = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
# Addresses that are not the Hub's: private (RFC 1918: the VPC, pods, services, peered networks),
# shared (RFC 6598, EKS custom networking's secondary ranges) and link-local (the instance metadata
# service, the EKS Pod Identity agent).
NOT_THE_INTERNET = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
              "podSelector": {"matchLabels": PROMETHEUS_POD}}


def serving_policy(scope: Scope, lb_source_cidrs: list[str],
                   metrics_ports: list[str]) -> k8s.networking.v1.NetworkPolicy:
    """`metrics_ports`: the names of the ports Prometheus scrapes on the slots' pods (Engine.metrics_port)."""
    # `<model>-serving` and `<model>-download` can clash neither with each other's nor with
    # `default-deny`, whatever the model names.
    return k8s.networking.v1.NetworkPolicy(f"{scope.name}-netpol", metadata=scope.metadata(
        f"{scope.model}-serving"), spec={
        "podSelector": {"matchLabels": component(scope.model, "server")},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            # The ALB (target type ip) sends requests and health checks from its subnets.
            # (An empty `from` would allow everyone: no load balancer, no rule.)
            *([{"from": [{"ipBlock": {"cidr": c}} for c in lb_source_cidrs],
                "ports": [{"protocol": "TCP", "port": "http"}]}] if lb_source_cidrs else []),
            {"from": [PROMETHEUS], "ports": [{"protocol": "TCP", "port": p} for p in metrics_ports]},
        ],
        "egress": [DNS],  # serving is offline: weights come from the cache volume
    }, opts=scope.opts())


def download_policy(scope: Scope) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(f"{scope.name}-download-netpol", metadata=scope.metadata(
        f"{scope.model}-download",
    ), spec={
        "podSelector": {"matchLabels": component(scope.model, "download")},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        # The Hub and its CDN over HTTPS, on public addresses only.
        "egress": [DNS, {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NOT_THE_INTERNET}}],
                         "ports": [{"protocol": "TCP", "port": 443}]}],
    }, opts=scope.opts())
