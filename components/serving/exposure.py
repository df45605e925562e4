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
            load_balancer_controller: Optional[pulumi.Resource]) -> k8s.networking.v1.Ingress:
    attributes = [f"idle_timeout.timeout_seconds={ing.idle_timeout_seconds}",
                  "routing.http.drop_invalid_header_fields.enabled=true"]
    annotations = {
        # One ALB for every model of the stack (annotations of the group must agree).
        "alb.ingress.kubernetes.io/group.name": "llmserve",
        "alb.ingress.kubernetes.io/scheme": ing.scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTPS": 443}]),
        "alb.ingress.kubernetes.io/certificate-arn": ing.certificate_arn,
        "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(ing.allowed_cidrs),
        "alb.ingress.kubernetes.io/load-balancer-attributes": ",".join(attributes),
        "alb.ingress.kubernetes.io/healthcheck-path": "/health",
        "alb.ingress.kubernetes.io/success-codes": "200",
        # In-flight generations may finish while a pod drains.
        "alb.ingress.kubernetes.io/target-group-attributes":
            f"deregistration_delay.timeout_seconds={tgi.TERMINATION_GRACE_SECONDS}",
    }
    if waf_acl_arn is not None:
        annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] = waf_acl_arn
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
