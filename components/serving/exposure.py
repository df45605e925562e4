"""How clients reach a model: the Service (the active slot only) and, with an ingress configured,
an Ingress on the shared ALB that exposes only the active slot's engine's API routes. A model with
two slots and an ingress also gets one Service per slot, each the backend of its own target group,
and the Ingress forwards to both with the weight on the active slot (blue-green on the ALB)."""

from __future__ import annotations

import json
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from ..config import IngressConfig
from ..engines.base import Engine
from .labels import MODEL_LABEL, SLOT_LABEL
from .scope import Scope
from .shared import ACCESS_LOGS_PREFIX

# The HTTPS listener's security policy: the one "Security policies for your Application Load
# Balancer" recommends and the console uses by default, hybrid post-quantum key exchange (ML-KEM)
# for clients that offer it, TLS 1.3 and TLS 1.2 for the others
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html).
# The controller passes the name through; its own default is ELBSecurityPolicy-2016-08
# (aws-load-balancer-controller v3.5.0, docs/guide/ingress/annotations.md, ssl-policy).
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
# AWS tags on what the controller creates, `k=v,k=v` (annotations.md, "Resource Tags"). The
# Ingress's tags go on the ALB, its listeners and security groups and must agree across the
# IngressGroup (model_build_tags.go: "conflicting tag"), so only the stack's cost tags go there;
# a target group takes its Ingress's tags merged with its backend Service's (the Service's win),
# so the model's own tag goes on the Service.
TAGS = "alb.ingress.kubernetes.io/tags"
# A listener rule's own action (annotations.md, actions.${action-name}): the Ingress path's
# backend names the action and its port is `use-annotation`
# (pkg/ingress/enhanced_backend_builder.go, magicServicePortUseAnnotation).
ACTIONS = "alb.ingress.kubernetes.io/actions."
USE_ANNOTATION = "use-annotation"
# The weight a forward action gives the active slot's target group (the other gets 0). ALB
# weights are 0-999 (ELBv2 API, TargetGroupTuple); a group's share is its weight over their sum.
ACTIVE_WEIGHT = 100

SERVICE_PORT = 80  # the http port of the model's and its slots' Services (the gateway's Backends reach it)


def tags_annotation(tags: dict[str, str]) -> dict[str, str]:
    return {TAGS: ",".join(f"{k}={v}" for k, v in sorted(tags.items()))} if tags else {}


def load_balancer_attributes(ing: IngressConfig, access_logs_bucket: Optional[str]) -> str:
    """The ALB's attributes, in the controller's `key=value,...` form (annotations.md,
    load-balancer-attributes: `access_logs.s3.enabled=true,access_logs.s3.bucket=...,
    access_logs.s3.prefix=...`). Exclusive in the IngressGroup: every model's Ingress sets the
    same, so the bucket and prefix are the stack's, not the model's."""
    attributes = [f"idle_timeout.timeout_seconds={ing.idle_timeout_seconds}",
                  "routing.http.drop_invalid_header_fields.enabled=true"]
    if access_logs_bucket is not None:
        attributes += ["access_logs.s3.enabled=true", f"access_logs.s3.bucket={access_logs_bucket}",
                       f"access_logs.s3.prefix={ACCESS_LOGS_PREFIX}"]
    return ",".join(attributes)


def service(scope: Scope, active: str, engine: Engine, ready: Optional[pulumi.Resource] = None,
            tags: Optional[dict[str, str]] = None) -> k8s.core.v1.Service:
    """`engine`: the active slot's (its metrics port). `tags`: the AWS tags of the target group a load balancer sends to it (the model's).
    `ready`: the active slot's Deployment. Pulumi's Kubernetes provider returns from a
    Deployment's create or update only once it is available (its await logic, within the
    custom timeout; pulumi_kubernetes apps/v1 Deployment), and a resource that depends on another
    is created or updated after it (the dependsOn resource option): so the selector switches to a
    new slot only once it is ready, and a slot that never gets ready fails the update with the
    selector unchanged."""
    metadata = scope.metadata(scope.model)
    if tags:
        metadata["annotations"] = tags_annotation(tags)
    return k8s.core.v1.Service(f"{scope.name}-svc", metadata=metadata, spec={
        "type": "ClusterIP",
        # Blue-green: traffic goes to the active slot only.
        "selector": {MODEL_LABEL: scope.model, SLOT_LABEL: active},
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                  {"name": "metrics", "port": engine.port(engine.metrics_port),
                   "targetPort": engine.metrics_port, "protocol": "TCP"}],
    }, opts=scope.opts(depends_on=[ready] if ready else []))


def slot_service(scope: Scope, slot: str, tags: Optional[dict[str, str]] = None) -> k8s.core.v1.Service:
    """`<model>-<slot>`: the pods of one slot, whichever is active, as the backend of the target
    group that slot has on the ALB (the controller makes one per Service and port of a forward
    action). Its pods are targets from the time they start, health-checked at weight 0, and pods
    created while that target group exists get its readiness gate (the namespace's
    elbv2.k8s.aws/pod-readiness-gate-inject, shared.py; aws-load-balancer-controller v3.5.0
    docs/deploy/pod_readiness_gate.md): a switch moves weights between two warm target groups,
    rather than registering new targets in `initial` state behind a moved selector. Only the http
    port: Prometheus scrapes the pods (pod_monitor.py). `tags`: the AWS tags of its target group."""
    metadata = scope.metadata(f"{scope.model}-{slot}")
    if tags:
        metadata["annotations"] = tags_annotation(tags)
    return k8s.core.v1.Service(f"{scope.name}-svc-{slot}", metadata=metadata, spec={
        "type": "ClusterIP",
        "selector": {MODEL_LABEL: scope.model, SLOT_LABEL: slot},
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
    }, opts=scope.opts())


def forward_action(services: dict[str, pulumi.Input[str]], active: str) -> pulumi.Output[str]:
    """The forward action's JSON (annotations.md v3.5.0, actions, forward-multiple-tg, the
    advanced schema: `{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":...,
    "servicePort":...,"weight":...}]}}`; servicePort a port's name or number,
    pkg/ingress/config_types.go TargetGroupTuple), one target group per slot's Service (by
    slot, so that a switch changes only the weights), all the weight on `active`."""
    slots = sorted(services)
    return pulumi.Output.all(*(services[s] for s in slots)).apply(lambda names: json.dumps({
        "type": "forward", "forwardConfig": {"targetGroups": [
            {"serviceName": name, "servicePort": "http", "weight": ACTIVE_WEIGHT if slot == active else 0}
            for slot, name in zip(slots, names)]}}, separators=(",", ":")))


def ingress(scope: Scope, ing: IngressConfig, svc: k8s.core.v1.Service,
            routes: tuple[tuple[str, str], ...], waf_acl_arn: Optional[pulumi.Input[str]],
            load_balancer_controller: Optional[pulumi.Resource], *,
            deregistration_delay_seconds: int,
            access_logs_bucket: Optional[pulumi.Input[str]] = None,
            subnet_ids: Optional[list[pulumi.Input[str]]] = None,
            cost_tags: Optional[dict[str, str]] = None,
            slot_services: Optional[dict[str, k8s.core.v1.Service]] = None,
            active: Optional[str] = None,
            ready: Optional[pulumi.Resource] = None) -> k8s.networking.v1.Ingress:
    """`routes`: the (path, pathType) pairs the active slot's engine exposes (Engine.public_routes).
    `slot_services`: with two slots, each slot's Service (slot_service); the paths then go to a
    forward action named after the model whose weight is on `active`, once `ready` (the active
    slot's Deployment) is: the switch waits for it as the model's Service does (service()). The
    action is named like the model's Service, which exists and has endpoints, so that Pulumi's
    Ingress await finds a Service for every path (pulumi-kubernetes provider/pkg/await/ingress.go,
    checkIfEndpointsReady); with port `use-annotation` the controller reads the action instead.
    Without `slot_services`, the paths go to `svc`.
    `deregistration_delay_seconds`: how long a target group keeps a deregistering pod's
    connections (Engine.deregistration_delay_seconds of the model's slots). This and the health
    check apply to every target group of the Ingress (both slots'); a Service's own annotations
    would override them for its target group (annotations.md: Location Ingress,Service, "Annotations
    applied to Service have higher priority"), and only the model tag is set there.
    `cost_tags`: the stack's tags for the ALB and what comes with it.
    `access_logs_bucket`: the stack's access log bucket (Serving.access_logs_bucket); none,
    no access logs. `subnet_ids`: where the load balancer goes; named rather than discovered,
    since the controller takes any subnet with the role tag (aws-load-balancer-controller v3.5.0
    pkg/networking/subnet_resolver.go) and the serving pods admit only these subnets' addresses."""
    attributes = (load_balancer_attributes(ing, None) if access_logs_bucket is None else
                  pulumi.Output.from_input(access_logs_bucket).apply(
                      lambda bucket: load_balancer_attributes(ing, bucket)))
    annotations = {
        # One ALB for every model of the stack (annotations of the group must agree).
        "alb.ingress.kubernetes.io/group.name": "llmserve",
        "alb.ingress.kubernetes.io/scheme": ing.scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTPS": 443}]),
        "alb.ingress.kubernetes.io/certificate-arn": ing.certificate_arn,
        "alb.ingress.kubernetes.io/ssl-policy": SSL_POLICY,
        "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(ing.allowed_cidrs),
        "alb.ingress.kubernetes.io/load-balancer-attributes": attributes,
        "alb.ingress.kubernetes.io/healthcheck-path": "/health",
        "alb.ingress.kubernetes.io/success-codes": "200",
        # In-flight generations may finish while a pod drains (per Ingress: its target group).
        "alb.ingress.kubernetes.io/target-group-attributes":
            f"deregistration_delay.timeout_seconds={deregistration_delay_seconds}",
        **tags_annotation(cost_tags or {}),
    }
    if waf_acl_arn is not None:
        annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] = waf_acl_arn
    if subnet_ids:
        annotations["alb.ingress.kubernetes.io/subnets"] = pulumi.Output.all(*subnet_ids).apply(",".join)
    # the controller's webhooks and class exist first
    depends_on: list[pulumi.Resource] = [load_balancer_controller] if load_balancer_controller else []
    if slot_services:
        if active not in slot_services:
            raise ValueError(f"active slot {active!r} is not one of {', '.join(sorted(slot_services))}")
        annotations[ACTIONS + scope.model] = forward_action(
            {slot: s.metadata.name for slot, s in slot_services.items()}, active)
        backend = {"name": scope.model, "port": {"name": USE_ANNOTATION}}
        depends_on += [svc, *([ready] if ready else [])]
    else:
        backend = {"name": svc.metadata.name, "port": {"name": "http"}}
    return k8s.networking.v1.Ingress(f"{scope.name}-ingress", metadata=scope.metadata(
        scope.model, annotations=annotations,
    ), spec={
        "ingressClassName": "alb",
        "rules": [{"host": f"{scope.model}.{ing.domain}", "http": {"paths": [{
            "path": path, "pathType": kind, "backend": {"service": backend},
        } for path, kind in routes]}}],
    }, opts=scope.opts(depends_on=depends_on))
