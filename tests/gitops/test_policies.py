"""The policy pack: each policy on resources that pass and that fail, and every resource the
shipped stacks would create passes every policy."""

from __future__ import annotations

import json

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
)

from components.offline import mockrun
from policy import policies

from ..conftest import ROOT


def _args(type_: str, props: dict, secret_outputs=()) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0),
                                 list(secret_outputs), None)
    return ResourceValidationArgs(type_, props, f"urn:pulumi:test::p::{type_}::r", "r", opts, None)


def _violations(fn, type_: str, props: dict, secret_outputs=()) -> list[str]:
    found: list[str] = []
    fn(_args(type_, props, secret_outputs), lambda message, urn=None: found.append(message))
    return found


def _deployment(container: dict, tolerations=None) -> dict:
    return {"spec": {"template": {"spec": {"containers": [container],
                                           **({"tolerations": tolerations} if tolerations else {})}}}}


GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_gpu_workloads():
    ok = _deployment({"name": "tgi", "image": "x:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                     GPU_TOLERATION)
    assert _violations(policies.gpu_limits_and_toleration, DEPLOYMENT, ok) == []
    no_limit = _deployment({"name": "tgi", "resources": {"requests": {"nvidia.com/gpu": "1"}}}, GPU_TOLERATION)
    assert _violations(policies.gpu_limits_and_toleration, DEPLOYMENT, no_limit) == [
        "container 'tgi' requests nvidia.com/gpu without a limit"]
    no_toleration = _deployment({"name": "tgi", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
    assert _violations(policies.gpu_limits_and_toleration, "kubernetes:batch/v1:Job", no_toleration) == [
        "the pod asks for GPUs but does not tolerate the nvidia.com/gpu taint"]
    squatter = _deployment({"name": "web", "image": "x:1"}, GPU_TOLERATION)
    assert _violations(policies.gpu_limits_and_toleration, DEPLOYMENT, squatter) == [
        "the pod tolerates the nvidia.com/gpu taint but asks for no GPU"]
    assert _violations(policies.gpu_limits_and_toleration, "kubernetes:apps/v1:DaemonSet", squatter) == []


@pytest.mark.parametrize("image,ok", [
    ("ghcr.io/huggingface/text-generation-inference:3.3.7", True),
    ("ghcr.io/huggingface/text-generation-inference@sha256:" + "a" * 64, True),
    ("localhost:5000/tgi:1.0", True),
    ("ghcr.io/huggingface/text-generation-inference:latest", False),
    ("ghcr.io/huggingface/text-generation-inference", False),
    ("localhost:5000/tgi", False),
])
def test_images_pinned(image, ok):
    found = _violations(policies.images_pinned, DEPLOYMENT, _deployment({"name": "c", "image": image}))
    assert (found == []) == ok, found


@pytest.mark.parametrize("vpc,ok", [
    ({"endpointPublicAccess": False}, True),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["198.51.100.10/32"]}, True),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}, False),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, False),  # the same, split
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["52.0.0.0/8"]}, False),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["10.0.0.0/8", "52.0.0.0/9"]}, True),
    ({"endpointPublicAccess": True}, False),  # AWS's default: open to the world
    ({}, False),
])
def test_eks_endpoint(vpc, ok):
    found = _violations(policies.eks_endpoint_not_open, "aws:eks/cluster:Cluster", {"vpcConfig": vpc})
    assert (found == []) == ok, found


@pytest.mark.parametrize("annotations,ok", [
    ({"alb.ingress.kubernetes.io/scheme": "internal"}, True),
    ({"alb.ingress.kubernetes.io/scheme": "internet-facing"}, False),  # the controller's default: open
    ({"alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/inbound-cidrs": "198.51.100.0/24"}, True),
    ({"alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/inbound-cidrs": "0.0.0.0/1, 128.0.0.0/1"}, False),
])
def test_internet_facing_load_balancer(annotations, ok):
    found = _violations(policies.load_balancer_not_open, "kubernetes:networking.k8s.io/v1:Ingress",
                        {"metadata": {"annotations": annotations}})
    assert (found == []) == ok, found


@pytest.mark.parametrize("scheme,ranges,ok", [
    ("internal", None, True),
    ("internet-facing", None, False),  # Kubernetes' default: 0.0.0.0/0
    ("internet-facing", ["198.51.100.0/24"], True),
    ("internet-facing", ["0.0.0.0/1", "128.0.0.0/1"], False),
])
def test_internet_facing_gateway(scheme, ranges, ok):
    service = {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": scheme},
               **({"loadBalancerSourceRanges": ranges} if ranges else {})}
    found = _violations(policies.load_balancer_not_open, "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
                        {"spec": {"provider": {"type": "Kubernetes", "kubernetes": {"envoyService": service}}}})
    assert (found == []) == ok, found


def _trust(principal: dict, condition=None) -> dict:
    statement = {"Effect": "Allow", "Principal": principal, "Action": ["sts:AssumeRole"]}
    return {"assumeRolePolicy": json.dumps({"Statement": [{**statement, **({"Condition": condition} if condition else {})}]})}


@pytest.mark.parametrize("props,ok", [
    (_trust({"Service": "pods.eks.amazonaws.com"}), False),
    (_trust({"Service": "pods.eks.amazonaws.com"}, {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "x"}}), False),
    (_trust({"Service": "pods.eks.amazonaws.com"}, {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "x",
                                                                     "aws:RequestTag/kubernetes-service-account": "y"}}), True),
    (_trust({"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}), False),
    (_trust({"Service": "ec2.amazonaws.com"}), True),
])
def test_workload_trust_conditioned(props, ok):
    found = _violations(policies.workload_trust_conditioned, "aws:iam/role:Role", props)
    assert (found == []) == ok, found


@pytest.mark.parametrize("condition,ok", [
    (None, False),
    ({"ArnEquals": {"ec2:Vpc": "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-0123"}}, True),
    ({"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}, False),  # any cluster's
    ({"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "llmserve-prod"}}, True),
])
def test_security_group_ingress_in_the_vpc(condition, ok):
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:Authorize*", "ec2:*"):
        statement = {"Effect": "Allow", "Action": [action], "Resource": "*",
                     **({"Condition": condition} if condition else {})}
        found = _violations(policies.security_group_ingress_in_the_vpc, "aws:iam/rolePolicy:RolePolicy",
                            {"policy": json.dumps({"Statement": [statement]})})
        assert (found == []) == ok, (action, found)


def test_monitoring_reads_no_secrets():
    release = {"chart": "kube-prometheus-stack", "values": {
        "grafana": {"rbac": {"namespaced": True}}, "kube-state-metrics": {"collectorsExclude": ["secrets"]}}}
    assert _violations(policies.monitoring_reads_no_secrets, "kubernetes:helm.sh/v3:Release", release) == []
    release["values"] = {}
    assert len(_violations(policies.monitoring_reads_no_secrets, "kubernetes:helm.sh/v3:Release", release)) == 2


def test_efs_encrypted():
    assert _violations(policies.efs_encrypted, "aws:efs/fileSystem:FileSystem", {"encrypted": True}) == []
    assert _violations(policies.efs_encrypted, "aws:efs/fileSystem:FileSystem", {}) == [
        "the EFS file system is not encrypted at rest"]


def test_kubernetes_secrets_declared_secret():
    secret = {"stringData": {"API_KEY": "x"}}
    assert _violations(policies.secrets_from_pulumi_secrets, "kubernetes:core/v1:Secret", secret,
                       ["data", "stringData"]) == []
    assert len(_violations(policies.secrets_from_pulumi_secrets, "kubernetes:core/v1:Secret", secret)) == 1


def test_pack_lists_every_policy():
    assert [p.name for p in policies.POLICIES] == [
        "gpu-limits-and-toleration", "images-pinned", "eks-endpoint-not-open",
        "load-balancer-not-open", "workload-trust-conditioned", "security-group-ingress-in-the-vpc",
        "monitoring-reads-no-secrets",
        "efs-encrypted", "secrets-from-pulumi-secrets"]
    assert all(p.description for p in policies.POLICIES)
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()


@pytest.mark.parametrize("stack", ["dev_run", "prod_run"])
def test_shipped_stacks_pass_every_policy(stack, request):
    run = request.getfixturevalue(stack)
    for r in run.resources:
        if not r.custom:
            continue
        props = mockrun.reveal(r.inputs, mask=False)
        for policy in policies.POLICIES:
            found = _violations(policy.validate, r.type, props, r.additional_secret_outputs)
            assert found == [], (policy.name, r.type, r.name, found)
