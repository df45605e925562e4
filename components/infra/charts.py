"""The Helm charts the platform installs, pinned, and how a release of one is made.

Each pin has a copy of that release's published Chart.yaml and values.yaml (and the CRDs it
installs) in tests/data, with its PROVENANCE: tests check every value we set against them, and
fail when a pin here and its copy differ (docs/charts.md: how to refresh one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repository: str


KUBE_PROMETHEUS_STACK = Chart("kube-prometheus-stack", "88.5.3",
                              "https://prometheus-community.github.io/helm-charts")
PROMETHEUS_ADAPTER = Chart("prometheus-adapter", "5.3.0",
                           "https://prometheus-community.github.io/helm-charts")
GPU_OPERATOR = Chart("gpu-operator", "v26.7.0", "https://helm.ngc.nvidia.com/nvidia")
AWS_LOAD_BALANCER_CONTROLLER = Chart("aws-load-balancer-controller", "3.5.0",
                                     "https://aws.github.io/eks-charts")
CLUSTER_AUTOSCALER = Chart("cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler")
# Envoy AI Gateway v1.1 supports Envoy Gateway v1.8.1+ (envoyproxy/ai-gateway v1.1.0:
# site/versioned_docs/version-1.1/compatibility.md); both publish their charts to Docker Hub as OCI
# artifacts, chart version = release tag (docs/gateway.md, "Install").
ENVOY_GATEWAY = Chart("gateway-helm", "v1.8.3", "oci://docker.io/envoyproxy")
AI_GATEWAY_CRDS = Chart("ai-gateway-crds-helm", "v1.1.0", "oci://docker.io/envoyproxy")
AI_GATEWAY = Chart("ai-gateway-helm", "v1.1.0", "oci://docker.io/envoyproxy")
# The AI Gateway's webhook certificate (docs/gateway.md, "Webhook certificate"); the registry its
# chart README installs from (cert-manager/cert-manager v1.21.1:
# deploy/charts/cert-manager/README.template.md).
CERT_MANAGER = Chart("cert-manager", "v1.21.1", "oci://quay.io/jetstack/charts")

OCI = "oci://"


def release(parent: pulumi.Resource, resource_name: str, chart: Chart, name: str, namespace: str,
            values: dict, depends_on: Optional[list[pulumi.Resource]] = None) -> k8s.helm.v3.Release:
    """A helm.v3.Release (hooks run, as the GPU operator needs) with a fixed release name: other
    resources select on it (Prometheus' `release` label).

    An OCI registry is no chart repository: the chart is named by its full reference and no
    repository_opts is given, the form the provider's OCI support was added with
    (pulumi/pulumi-kubernetes#1892: `Chart: "oci://<registry>/<path>/<chart>"`, `Version`). The
    installed SDK's helm/v3/Release.py shows no OCI example; its helm/v4/Chart.py lists "By OCI
    registry: `chart: "oci://example.com/charts/nginx", version: "1.2.3"`". An `oci://`
    repository_opts repo is reported to fail ("is not a valid chart repository",
    pulumi/pulumi-kubernetes#2158)."""
    if chart.repository.startswith(OCI):
        source: dict = {"chart": f"{chart.repository}/{chart.name}"}
    else:
        source = {"chart": chart.name,
                  "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository)}
    return k8s.helm.v3.Release(
        resource_name, name=name, version=chart.version, **source,
        namespace=namespace, create_namespace=True, values=values,
        atomic=True, cleanup_on_fail=True, timeout=900,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []))
