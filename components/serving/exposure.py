"""How clients reach a model: the Service (the active slot only) and, with an ingress configured,
an Ingress on the shared ALB that exposes only TGI's API routes."""

from __future__ import annotations

import json
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from ..config import IngressConfig
from ..engines import tgi
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


def service(scope: Scope, active: str) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(f"{scope.name}-svc", metadata=scope.metadata(scope.model), spec={
        "type": "ClusterIP",
        # Blue-green: traffic goes to the active slot only.
        "selector": {MODEL_LABEL: scope.model, SLOT_LABEL: active},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                  {"name": "metrics", "port": tgi.METRICS_PORT, "targetPort": "metrics",
                   "protocol": "TCP"}],
    }, opts=scope.opts())


def ingress(scope: Scope, ing: IngressConfig, svc: k8s.core.v1.Service,
            waf_acl_arn: Optional[pulumi.Input[str]],
            load_balancer_controller: Optional[pulumi.Resource],
            access_logs_bucket: Optional[pulumi.Input[str]] = None,
            subnet_ids: Optional[list[pulumi.Input[str]]] = None) -> k8s.networking.v1.Ingress:
    """`access_logs_bucket`: the stack's access log bucket (Serving.access_logs_bucket); none,
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
        # In-flight generations may finish while a pod drains.
        "alb.ingress.kubernetes.io/target-group-attributes":
            f"deregistration_delay.timeout_seconds={tgi.TERMINATION_GRACE_SECONDS}",
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
        } for path, kind in tgi.PUBLIC_ROUTES]}}],
    }, opts=scope.opts(  # the controller's webhooks and class exist first
        depends_on=[load_balancer_controller] if load_balancer_controller else []))
