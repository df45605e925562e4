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


def release(parent: pulumi.Resource, resource_name: str, chart: Chart, name: str, namespace: str,
            values: dict, depends_on: Optional[list[pulumi.Resource]] = None) -> k8s.helm.v3.Release:
    """A helm.v3.Release (hooks run, as the GPU operator needs) with a fixed release name: other
    resources select on it (Prometheus' `release` label)."""
    return k8s.helm.v3.Release(
        resource_name, name=name, chart=chart.name, version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace, create_namespace=True, values=values,
        atomic=True, cleanup_on_fail=True, timeout=900,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []))
