"""Guardrails for every stack, as Pulumi policies (pulumi_policy). Each validate function takes
the resource's inputs as Pulumi sends them to policy packs (the wire form: camelCase keys) and
reports violations; tests call them directly."""

from __future__ import annotations

import fnmatch
import json

from typing import Any, Callable, Iterator

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from components.config.cidrs import too_open  # the stack config's rule, the same function

GPU = "nvidia.com/gpu"
WORKLOADS = {  # type token -> path to the pod spec in its inputs
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
Report = Callable[[str], None]


def _pod_spec(args: ResourceValidationArgs) -> dict | None:
    path = WORKLOADS.get(args.resource_type)
    if path is None:
        return None
    spec: Any = args.props
    for key in path:
        spec = (spec or {}).get(key)
    return spec or None


def _containers(pod: dict) -> Iterator[dict]:
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def gpu_limits_and_toleration(args: ResourceValidationArgs, report: Report) -> None:
    """A container that asks for GPUs sets the `nvidia.com/gpu` limit (Kubernetes schedules extended
    resources by it) and its pod tolerates the GPU taint; a pod that tolerates the taint asks for
    GPUs, or it would hold a GPU node without using it. DaemonSets (the GPU operator's) excepted."""
    pod = _pod_spec(args)
    if pod is None:
        return
    tolerates = any(t.get("key") == GPU and t.get("effect") in (None, "NoSchedule")
                    for t in pod.get("tolerations") or [])
    asks = False
    for c in _containers(pod):
        resources = c.get("resources") or {}
        if GPU in (resources.get("requests") or {}) or GPU in (resources.get("limits") or {}):
            asks = True
            if GPU not in (resources.get("limits") or {}):
                report(f"container {c.get('name')!r} requests {GPU} without a limit")
    if asks and not tolerates:
        report(f"the pod asks for GPUs but does not tolerate the {GPU} taint")
    if tolerates and not asks and args.resource_type != "kubernetes:apps/v1:DaemonSet":
        report(f"the pod tolerates the {GPU} taint but asks for no GPU")


def images_pinned(args: ResourceValidationArgs, report: Report) -> None:
    """Every image names a release tag or a digest: never `latest`, never no tag."""
    pod = _pod_spec(args)
    if pod is None:
        return
    for c in _containers(pod):
        image = c.get("image") or ""
        if "@sha256:" in image:
            continue
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if tag in ("", "latest"):
            report(f"container {c.get('name')!r}: image {image!r} is not pinned to a tag or digest")


def eks_endpoint_not_open(args: ResourceValidationArgs, report: Report) -> None:
    """The EKS API endpoint is never public to the whole internet. (Public access defaults to on,
    from 0.0.0.0/0, when the inputs leave it unset.)"""
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    vpc = args.props.get("vpcConfig") or {}
    if vpc.get("endpointPublicAccess", True) is False:
        return
    _judge(vpc.get("publicAccessCidrs") or ["0.0.0.0/0"], "the public API endpoint",
           "publicAccessCidrs (or make it private)", report)


def load_balancer_not_open(args: ResourceValidationArgs, report: Report) -> None:
    """An internet-facing load balancer admits only listed client networks, judged like the EKS
    endpoint's: an ALB Ingress its `inbound-cidrs` (the AWS Load Balancer Controller opens
    0.0.0.0/0 without them), the gateway's NLB (Envoy's Service, from an EnvoyProxy) its
    `loadBalancerSourceRanges` (Kubernetes opens 0.0.0.0/0 without them)."""
    if args.resource_type == "kubernetes:networking.k8s.io/v1:Ingress":
        annotations = (args.props.get("metadata") or {}).get("annotations") or {}
        if annotations.get("alb.ingress.kubernetes.io/scheme") != "internet-facing":
            return
        cidrs = [c.strip() for c in annotations.get("alb.ingress.kubernetes.io/inbound-cidrs", "0.0.0.0/0").split(",")]
        _judge(cidrs, "the internet-facing load balancer", "inbound-cidrs", report)
    elif args.resource_type == "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy":
        service = (((args.props.get("spec") or {}).get("provider") or {}).get("kubernetes") or {}).get("envoyService") or {}
        if (service.get("annotations") or {}).get("service.beta.kubernetes.io/aws-load-balancer-scheme") != "internet-facing":
            return
        _judge(service.get("loadBalancerSourceRanges") or ["0.0.0.0/0"], "the internet-facing gateway",
               "gateway.allowedCidrs", report)


def _judge(cidrs: list[str], what: str, setting: str, report: Report) -> None:
    try:
        problem = too_open(cidrs)
    except ValueError:
        problem = f"{cidrs!r} are not CIDR blocks"
    if problem:
        report(f"{what} is open to too much of the internet: {problem}; list fewer {setting}")


def _statements(args: ResourceValidationArgs, key: str) -> list[dict]:
    """The statements of the policy document in `key` (empty while a preview leaves it unknown:
    checked on the real run)."""
    try:
        return json.loads(args.props.get(key) or "{}").get("Statement", [])
    except (TypeError, ValueError, AttributeError):
        return []


def workload_trust_conditioned(args: ResourceValidationArgs, report: Report) -> None:
    """A role that pods (EKS Pod Identity) or an OIDC identity (GitHub) assume trusts them only
    under conditions: without them any cluster's association, or any repository, could assume
    it. (The EKS cluster and EC2 node roles trust one AWS service, for this account only.)"""
    if args.resource_type != "aws:iam/role:Role":
        return
    for statement in _statements(args, "assumeRolePolicy"):
        principal = statement.get("Principal") or {}
        services = principal.get("Service") if isinstance(principal, dict) else None
        services = [services] if isinstance(services, str) else services or []
        condition = json.dumps(statement.get("Condition") or {})
        if statement.get("Effect") != "Allow":
            continue
        if "pods.eks.amazonaws.com" in services and not all(
                f"aws:RequestTag/{tag}" in condition for tag in ("kubernetes-namespace", "kubernetes-service-account")):
            report("a Pod Identity role's trust does not match the namespace and service account "
                   "(aws:RequestTag/kubernetes-namespace, aws:RequestTag/kubernetes-service-account)")
        if isinstance(principal, dict) and "Federated" in principal and not (":sub" in condition and ":aud" in condition):
            report("an OIDC role's trust does not match the token's subject and audience (:sub, :aud)")


def security_group_ingress_in_the_vpc(args: ResourceValidationArgs, report: Report) -> None:
    """No IAM policy may open security-group ingress on every security group of the account:
    such a statement on `*` carries an `ec2:Vpc` condition, or one on a resource tag's value (the
    load balancer controller's install guide recommends either)."""
    if args.resource_type not in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
        return
    for statement in _statements(args, "policy"):
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        opens = any(fnmatch.fnmatch("ec2:AuthorizeSecurityGroupIngress", a.replace("[", "[[]")) for a in actions)
        condition = statement.get("Condition") or {}
        scoped = "ec2:Vpc" in json.dumps(condition) or any(
            k.startswith("aws:ResourceTag/") for k in (condition.get("StringEquals") or {}))
        if statement.get("Effect") == "Allow" and opens and statement.get("Resource") in ("*", ["*"]) and not scoped:
            report("an IAM statement allows security-group ingress changes on every security group: "
                   "add an ArnEquals ec2:Vpc condition for the cluster's VPC")


def monitoring_reads_no_secrets(args: ResourceValidationArgs, report: Report) -> None:
    """kube-prometheus-stack installs no ClusterRole that reads Secrets: Grafana's RBAC is
    namespaced and kube-state-metrics runs without its secrets collector."""
    if args.resource_type != "kubernetes:helm.sh/v3:Release" or args.props.get("chart") != "kube-prometheus-stack":
        return
    values = args.props.get("values") or {}
    if (values.get("grafana") or {}).get("rbac", {}).get("namespaced") is not True:
        report("Grafana's RBAC is cluster-wide (grafana.rbac.namespaced is not true): its sidecar reads every Secret")
    if "secrets" not in ((values.get("kube-state-metrics") or {}).get("collectorsExclude") or []):
        report("kube-state-metrics lists every Secret (kube-state-metrics.collectorsExclude lacks secrets)")


def efs_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    """The EFS model cache is encrypted at rest."""
    if args.resource_type == "aws:efs/fileSystem:FileSystem" and args.props.get("encrypted") is not True:
        report("the EFS file system is not encrypted at rest")


def secrets_from_pulumi_secrets(args: ResourceValidationArgs, report: Report) -> None:
    """A Kubernetes Secret's data is declared secret by the program (additionalSecretOutputs), so
    it stays encrypted in the state and masked in outputs. (Policy packs receive inputs in clear
    and cannot see whether a value was a Pulumi secret; the program's tests check that.)"""
    if args.resource_type != "kubernetes:core/v1:Secret":
        return
    declared = set(args.opts.additional_secret_outputs or [])
    for key in ("data", "stringData"):
        if args.props.get(key) and key not in declared:
            report(f"Secret {key} is not declared secret: build it from Pulumi secrets "
                   f"(additional_secret_outputs=['data', 'stringData'])")


POLICIES = [
    ResourceValidationPolicy(name=fn.__name__.replace("_", "-"), description=(fn.__doc__ or "").split("\n")[0],
                             validate=fn, enforcement_level=EnforcementLevel.MANDATORY)
    for fn in (gpu_limits_and_toleration, images_pinned, eks_endpoint_not_open,
               load_balancer_not_open, workload_trust_conditioned, security_group_ingress_in_the_vpc,
               monitoring_reads_no_secrets,
               efs_encrypted, secrets_from_pulumi_secrets)
]
