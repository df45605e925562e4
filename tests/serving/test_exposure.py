"""How clients reach a model: the Service, the Ingress on the shared ALB (with two slots, a weighted
forward to a target group per slot), the WAF."""

from __future__ import annotations

import json

import pulumi

from components.engines.tgi import ENGINE as TGI_ENGINE
from components.engines.registry import MEMORY_MODELS
from components.offline import mockrun
from components.planning.planner import PRESTOP_SECONDS
from components.planning.plans import plan_models
from components.serving import exposure
from components.serving.labels import model_labels
from components.serving.scope import Scope
from components.serving.shared import ACCESS_LOGS_PREFIX, Serving, ServingArgs

from ..conftest import TGI, stack_settings, validate_settings
from .helpers import LOCK, manifest

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ATTRIBUTES = "alb.ingress.kubernetes.io/load-balancer-attributes"


def attributes(ingress: dict) -> dict[str, str]:
    return dict(a.split("=", 1) for a in ingress["metadata"]["annotations"][ATTRIBUTES].split(","))


def test_service(dev_run):
    svc = manifest(dev_run, "kubernetes:core/v1:Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]}["http"] == "http"
    assert svc["spec"]["selector"] == {"llmserve/model": "qwen-7b", "llmserve/slot": "blue"}


def test_ingress_on_the_shared_alb(ingress_run):
    ing = manifest(ingress_run, "kubernetes:networking.k8s.io/v1:Ingress", "qwen-14b")
    a = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert a["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert a["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    assert a["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTPS": 443}]'
    idle = stack_settings("ingress")["ingress"]["idleTimeoutSeconds"]
    assert f"idle_timeout.timeout_seconds={idle}" in a["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert a["alb.ingress.kubernetes.io/healthcheck-path"] == "/health"
    assert a["alb.ingress.kubernetes.io/inbound-cidrs"] == "10.0.0.0/8"
    # AWS's recommended policy for HTTPS listeners (hybrid post-quantum key exchange, TLS 1.3 and 1.2).
    assert a["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    acl = ingress_run.one("aws:wafv2/webAcl:WebAcl")
    assert a["alb.ingress.kubernetes.io/wafv2-acl-arn"] == acl.outputs["arn"]
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "qwen-14b.llm.example.com"
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    assert paths["/v1"] == "Prefix" and paths["/generate_stream"] == "Exact"
    assert "/metrics" not in paths and "/docs" not in paths and "/" not in paths  # stay in the cluster
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"qwen-14b"}
    routes = TGI["routes"]["post"] + TGI["routes"]["get"]  # only real TGI routes
    for path, kind in paths.items():
        assert path in routes if kind == "Exact" else any(r.startswith(path) for r in routes), path
    assert ingress_run.outputs["endpoints"] == {"qwen-14b": "https://qwen-14b.llm.example.com",
                                             "qwen-72b": "https://qwen-72b.llm.example.com",
                                             "qwen-7b": "https://qwen-7b.llm.example.com"}


def test_waf_rate_limits_each_client(ingress_run):
    acl = mockrun.reveal(ingress_run.one("aws:wafv2/webAcl:WebAcl").inputs)
    assert acl["scope"] == "REGIONAL"
    [rule] = [r for r in acl["rules"] if "rateBasedStatement" in r["statement"]]
    assert rule["statement"]["rateBasedStatement"]["limit"] == 3000
    assert rule["statement"]["rateBasedStatement"]["aggregateKeyType"] == "IP"
    assert "block" in rule["action"]


def test_no_ingress_configured_means_no_load_balancer(dev_run):
    assert dev_run.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    assert dev_run.of_type("aws:wafv2/webAcl:WebAcl") == []
    policy = manifest(dev_run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "qwen-7b-serving")
    assert not any("ipBlock" in peer for rule in policy["spec"]["ingress"] for peer in rule["from"])


PROD_IDLE = stack_settings("ingress")["ingress"]["idleTimeoutSeconds"]


def ingress_with_access_logs(access_logs: bool = True, cost_tags: dict | None = None) -> mockrun.Run:
    """A model's Ingress given the stack's access log bucket (Serving.access_logs_bucket), or none."""
    ing = validate_settings(stack_settings("ingress")).ingress

    def program():
        serving = Serving("svc", ServingArgs(namespace="llm", api_key=None, hf_token=None,
                                             access_logs=access_logs))
        parent = pulumi.ComponentResource("test:index:Model", "m")
        scope = Scope(parent=parent, name="m", model="qwen", namespace="llm", labels=model_labels("qwen", "tgi"))
        exposure.ingress(scope, ing, exposure.service(scope, "blue", TGI_ENGINE), TGI_ENGINE.public_routes,
                         None, None,
                         deregistration_delay_seconds=120, access_logs_bucket=serving.access_logs_bucket,
                         cost_tags=cost_tags)
    return mockrun.run_mocked(program, "test", {"aws:region": "us-east-1"})


def test_alb_access_logs_go_to_the_stacks_bucket():
    run = ingress_with_access_logs()
    ing = manifest(run, INGRESS)
    bucket = run.one("aws:s3/bucket:Bucket")
    attrs = attributes(ing)
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["access_logs.s3.bucket"] == bucket.id
    assert attrs["access_logs.s3.prefix"] == ACCESS_LOGS_PREFIX
    assert attrs["idle_timeout.timeout_seconds"] == str(PROD_IDLE)  # the others stay
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    # ELB writes a test object when logs are enabled: the Ingress waits for the bucket policy.
    assert run.one("aws:s3/bucketPolicy:BucketPolicy").urn in run.one(INGRESS).dependencies


def test_without_a_bucket_no_access_logs():
    run = ingress_with_access_logs(access_logs=False)
    assert run.of_type("aws:s3/bucket:Bucket") == []
    attrs = attributes(manifest(run, INGRESS))
    assert not any(k.startswith("access_logs.") for k in attrs)
    assert attrs["idle_timeout.timeout_seconds"] == str(PROD_IDLE)


def test_prod_alb_logs_to_its_access_log_bucket(ingress_run):
    bucket = ingress_run.one("aws:s3/bucket:Bucket", "llmserve-ingress-serving-alb-logs")
    for ing in ingress_run.of_type(INGRESS):
        attrs = attributes(mockrun.reveal(ing.inputs))
        assert attrs["access_logs.s3.enabled"] == "true" and attrs["access_logs.s3.bucket"] == bucket.id


def test_the_internal_alb_is_placed_in_the_load_balancer_subnets(ingress_run):
    """Named, not discovered: an adopted VPC's private subnets may carry the role tag too, and
    the serving pods admit only the load-balancer subnets."""
    lb_subnets = sorted(s.id for s in ingress_run.of_type("aws:ec2/subnet:Subnet") if "-lb-" in s.name)
    for ing in ingress_run.of_type(INGRESS):
        annotations = mockrun.reveal(ing.inputs)["metadata"]["annotations"]
        assert sorted(annotations["alb.ingress.kubernetes.io/subnets"].split(",")) == lb_subnets


def test_the_target_group_drains_for_the_longest_generation(ingress_run):
    """Each model's target group keeps a deregistering pod for preStop + the drain of its slowest
    slot (the plan's generation cap), within the 0-3600 s ALB allows."""
    plans, _ = plan_models(validate_settings(stack_settings("ingress")), LOCK, "prod", MEMORY_MODELS)
    for model, slots in plans.items():
        a = manifest(ingress_run, INGRESS, model)["metadata"]["annotations"]
        [attribute] = a["alb.ingress.kubernetes.io/target-group-attributes"].split(",")
        key, value = attribute.split("=")
        assert key == "deregistration_delay.timeout_seconds"
        assert int(value) == max(PRESTOP_SECONDS + p.generation_seconds for p in slots.values()) <= 3600
        grace = {manifest(ingress_run, "kubernetes:apps/v1:Deployment", f"{model}-{s}")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"] for s in slots}
        assert int(value) < min(grace)  # the pod outlives its last connection


def _tags(annotations: dict) -> dict[str, str]:
    return dict(t.split("=", 1) for t in annotations[exposure.TAGS].split(","))


def test_the_load_balancer_carries_the_stacks_cost_tags():
    ing = manifest(ingress_with_access_logs(cost_tags={"project": "llmserve", "environment": "prod"}), INGRESS)
    assert ing["metadata"]["annotations"][exposure.TAGS] == "environment=prod,project=llmserve"
    assert exposure.TAGS not in manifest(ingress_with_access_logs(), INGRESS)["metadata"]["annotations"]


def test_cost_tags_agree_across_the_ingress_group_and_the_model_tags_its_target_group(ingress_run):
    """The controller merges the Ingresses' tags onto the one ALB and refuses conflicting values,
    so every Ingress carries the stack's tags only; each target group adds its Service's tags."""
    ingresses = [mockrun.reveal(r.inputs)["metadata"] for r in ingress_run.of_type(INGRESS)]
    tags = [_tags(i["annotations"]) for i in ingresses]
    assert len(ingresses) == 3 and tags[0] and all(t == tags[0] for t in tags)
    assert "model" not in tags[0]
    for i in ingresses:  # the target group of each slot's Service (prod: one slot, blue)
        service = manifest(ingress_run, "kubernetes:core/v1:Service", f"{i['name']}-blue")
        assert _tags(service["metadata"]["annotations"]) == {"model": i["name"]}
        model_service = manifest(ingress_run, "kubernetes:core/v1:Service", i["name"])
        assert exposure.TAGS not in model_service["metadata"].get("annotations", {})


def test_without_a_load_balancer_the_service_has_no_aws_tags(dev_run):
    svc = manifest(dev_run, "kubernetes:core/v1:Service")
    assert exposure.TAGS not in svc["metadata"].get("annotations", {})


def _weighted_ingress(active: str) -> mockrun.Run:
    """A model's Ingress with two slot Services (exposure.slot_service), as ModelService builds it."""
    ing = validate_settings(stack_settings("ingress")).ingress

    def program():
        parent = pulumi.ComponentResource("test:index:Model", "m")
        scope = Scope(parent=parent, name="m", model="qwen", namespace="llm", labels=model_labels("qwen", "tgi"))
        slots = {s: exposure.slot_service(scope, s, {"model": "qwen"}) for s in ("blue", "green")}
        exposure.ingress(scope, ing, exposure.service(scope, active, TGI_ENGINE), TGI_ENGINE.public_routes,
                         None, None, deregistration_delay_seconds=120, slot_services=slots, active=active)
    return mockrun.run_mocked(program, "test", {"aws:region": "us-east-1"})


def test_two_slots_forward_to_a_target_group_each_weighted_on_the_active_one():
    """aws-load-balancer-controller v3.5.0 annotations.md, actions (forward-multiple-tg): the
    action `actions.<name>` is what a path with backend <name>:use-annotation does."""
    for active, other in (("blue", "green"), ("green", "blue")):
        ing = manifest(_weighted_ingress(active), INGRESS)
        action = json.loads(ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.qwen"])
        assert action == {"type": "forward", "forwardConfig": {"targetGroups": [
            {"serviceName": f"qwen-{s}", "servicePort": "http", "weight": 100 if s == active else 0}
            for s in ("blue", "green")]}}
        backends = {(p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
                    for p in ing["spec"]["rules"][0]["http"]["paths"]}
        assert backends == {("qwen", "use-annotation")}


def test_a_slot_service_selects_its_slot_on_the_http_port():
    run = _weighted_ingress("blue")
    for slot in ("blue", "green"):
        svc = manifest(run, "kubernetes:core/v1:Service", f"qwen-{slot}")
        assert svc["spec"]["selector"] == {"llmserve/model": "qwen", "llmserve/slot": slot}
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
        assert _tags(svc["metadata"]["annotations"]) == {"model": "qwen"}


def test_one_slot_ingress_has_no_action():
    ing = manifest(ingress_with_access_logs(), INGRESS)
    assert not any(k.startswith(exposure.ACTIONS) for k in ing["metadata"]["annotations"])
    assert {p["backend"]["service"]["port"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]} == {"http"}
