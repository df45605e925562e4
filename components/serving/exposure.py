"""How clients reach a model: the Service (the active slot only) and, with an ingress configured,
an Ingress on the shared ALB that exposes only the active slot's engine's API routes."""

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
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                  {"name": "metrics", "port": engine.port(engine.metrics_port),
                   "targetPort": engine.metrics_port, "protocol": "TCP"}],
    }, opts=scope.opts(depends_on=[ready] if ready else []))


def ingress(scope: Scope, ing: IngressConfig, svc: k8s.core.v1.Service,
            routes: tuple[tuple[str, str], ...], waf_acl_arn: Optional[pulumi.Input[str]],
            load_balancer_controller: Optional[pulumi.Resource], *,
            deregistration_delay_seconds: int,
            access_logs_bucket: Optional[pulumi.Input[str]] = None,
            subnet_ids: Optional[list[pulumi.Input[str]]] = None,
            cost_tags: Optional[dict[str, str]] = None) -> k8s.networking.v1.Ingress:
    """`routes`: the (path, pathType) pairs the active slot's engine exposes (Engine.public_routes).
    `deregistration_delay_seconds`: how long the target group keeps a deregistering pod's
    connections (Engine.deregistration_delay_seconds of the model's slots).
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
    return k8s.networking.v1.Ingress(f"{scope.name}-ingress", metadata=scope.metadata(
        scope.model, annotations=annotations,
    ), spec={
        "ingressClassName": "alb",
        "rules": [{"host": f"{scope.model}.{ing.domain}", "http": {"paths": [{
            "path": path, "pathType": kind,
            "backend": {"service": {"name": svc.metadata.name, "port": {"name": "http"}}},
        } for path, kind in routes]}}],
    }, opts=scope.opts(  # the controller's webhooks and class exist first
        depends_on=[load_balancer_controller] if load_balancer_controller else []))
