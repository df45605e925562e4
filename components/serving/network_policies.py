"""What may talk to a model's pods: its serving pods accept the load balancer and Prometheus and
reach only DNS (and, on the S3 store, S3 and the Pod Identity agent); its download Jobs reach DNS
and HTTPS on public addresses (the Hub and its CDN; S3's are among them), nothing inside the VPC,
the cluster or the node but the Pod Identity agent of an S3 store's."""

from __future__ import annotations

from typing import Optional

import pulumi
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


# The EKS Pod Identity agent, on every node: where the AWS SDKs of pods with a Pod Identity
# association get their credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI,
# https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html).
POD_IDENTITY_AGENT = {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}


def s3_egress(s3_cidrs: Optional[pulumi.Input[list[str]]]) -> list:
    """The S3 model store: HTTPS to S3's addresses in the region (its managed prefix list, which
    the VPC's gateway endpoint routes), and the Pod Identity agent for the credentials."""
    if s3_cidrs is None:
        return []
    return [POD_IDENTITY_AGENT, {"to": pulumi.Output.from_input(s3_cidrs).apply(
        lambda cidrs: [{"ipBlock": {"cidr": c}} for c in cidrs]), "ports": [{"protocol": "TCP", "port": 443}]}]


def serving_policy(scope: Scope, lb_source_cidrs: list[str], metrics_ports: list[str],
                   s3_cidrs: Optional[pulumi.Input[list[str]]] = None,
                   gateway_pods: Optional[tuple[str, dict[str, str]]] = None) -> k8s.networking.v1.NetworkPolicy:
    """`metrics_ports`: the names of the ports Prometheus scrapes on the slots' pods (Engine.metrics_port);
    `s3_cidrs`: S3's addresses, when a slot reads from the S3 store (ModelStore.cidrs);
    `gateway_pods`: the gateway's Envoy pods (namespace, labels), when the stack has the gateway."""
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
            # The gateway's Envoy pods (`gateway_pods`: their namespace and labels).
            *([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gateway_pods[0]}},
                          "podSelector": {"matchLabels": gateway_pods[1]}}],
                "ports": [{"protocol": "TCP", "port": "http"}]}] if gateway_pods else []),
            {"from": [PROMETHEUS], "ports": [{"protocol": "TCP", "port": p} for p in metrics_ports]},
        ],
        # Serving is offline: the weights come from the cache volume or the S3 store.
        "egress": [DNS, *s3_egress(s3_cidrs)],
    }, opts=scope.opts())


def download_policy(scope: Scope, s3_cidrs: Optional[pulumi.Input[list[str]]] = None) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(f"{scope.name}-download-netpol", metadata=scope.metadata(
        f"{scope.model}-download",
    ), spec={
        "podSelector": {"matchLabels": component(scope.model, "download")},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        # The Hub and its CDN over HTTPS, on public addresses only.
        "egress": [DNS, {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NOT_THE_INTERNET}}],
                         "ports": [{"protocol": "TCP", "port": 443}]},
                   # S3 is on public addresses: only the agent to add for an S3 store's Jobs.
                   *([POD_IDENTITY_AGENT] if s3_cidrs is not None else [])],
    }, opts=scope.opts())
