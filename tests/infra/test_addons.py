"""Cluster add-ons and monitoring: pinned releases whose values exist in the published charts,
custom resources that match their CRDs, ordering, Pod Identity, scale from zero."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from components.infra import charts as charts_module
from components.infra.monitoring import prometheus_adapter_values
from components.offline import mockrun

from ..charts import CHARTS, CRDS, provenance, unknown_keys, validate_custom_resource
from ..conftest import ROOT, STACKS, names, run_settings
from .test_gateway_controllers import RELEASES as GATEWAY_RELEASES

RELEASE = "kubernetes:helm.sh/v3:Release"
RELEASES = {  # release name: (chart, version, repository, namespace), as published (tests/data/charts)
    "kube-prometheus-stack": ("kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts", "monitoring"),
    "prometheus-adapter": ("prometheus-adapter", "5.3.0", "https://prometheus-community.github.io/helm-charts", "monitoring"),
    "gpu-operator": ("gpu-operator", "v26.7.0", "https://helm.ngc.nvidia.com/nvidia", "gpu-operator"),
    "aws-load-balancer-controller": ("aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts", "kube-system"),
    "cluster-autoscaler": ("cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler", "kube-system"),
    **GATEWAY_RELEASES,  # the gateway's (both shipped stacks have it)
}


def releases(run) -> dict[str, dict]:
    return {r.inputs["name"]: mockrun.reveal(r.inputs) for r in run.of_type(RELEASE)}


def _release(run, name):
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == name)


def test_every_release_is_a_pinned_published_chart(prod_run):
    found = releases(prod_run)
    assert set(found) == set(RELEASES)
    for name, (chart, version, repo, namespace) in RELEASES.items():
        r = found[name]
        if repo.startswith("oci://"):  # an OCI chart is named by its full reference
            assert (r["chart"], r["version"], r["namespace"]) == (f"{repo}/{chart}", version, namespace)
        else:
            assert (r["chart"], r["version"], r["repositoryOpts"]["repo"], r["namespace"]) == \
                (chart, version, repo, namespace)
        fixture = provenance(chart)  # the values.yaml the tests check against is that release's
        assert (fixture["version"], fixture["helmRepository"]) == (version, repo), chart


def test_every_pinned_chart_has_its_fixture_at_the_same_version():
    """Bumping a chart in components/infra/charts.py fails here until its fixture is refreshed
    (docs/charts.md says how)."""
    pinned = [c for c in vars(charts_module).values() if isinstance(c, charts_module.Chart)]
    fixtures = {p.name: provenance(p.name) for p in CHARTS.iterdir()}
    assert {c.name for c in pinned} == {n for n, f in fixtures.items() if "subchartOf" not in f}
    for name, fixture in fixtures.items():  # a dependency's fixture is the version its parent pins
        if "subchartOf" in fixture:
            parent = yaml.safe_load((CHARTS / fixture["subchartOf"] / "Chart.yaml").read_text())
            [dependency] = [d for d in parent["dependencies"] if d["name"] == name]
            assert fixture["version"] == dependency["version"] == yaml.safe_load(
                (CHARTS / name / "Chart.yaml").read_text())["version"], name
            assert fixture["helmRepository"] == dependency["repository"], name
    for chart in pinned:
        fixture = provenance(chart.name)
        assert fixture["version"] == chart.version, f"tests/data/charts/{chart.name} is {fixture['version']}"
        assert (fixture["chart"], fixture["helmRepository"]) == (chart.name, chart.repository)
        in_git = yaml.safe_load((CHARTS / chart.name / "Chart.yaml").read_text())["version"]
        # A few projects keep a placeholder in git (`v1.0.0-devel`, `v0.0.0-latest`, `v0.0.0`)
        # and set the version at publish time; the PROVENANCE note says so. Otherwise the
        # copied Chart.yaml is the pinned release's.
        placeholder = "devel" in in_git or in_git.startswith("v0.0.0")
        assert in_git == chart.version or (placeholder and "note" in fixture), chart.name
    for crds in yaml.safe_load((CRDS / "PROVENANCE").read_text()):
        installer = next(c for c in pinned if c.name == crds["installedBy"])
        assert crds["version"] == installer.version, crds["files"]
        assert all((CRDS / f).is_file() for f in crds["files"])


@pytest.mark.parametrize("stack", STACKS)
def test_every_value_we_set_exists_in_the_chart(rendered, stack):
    files = sorted((rendered[stack] / "helm").glob("*.yaml"))
    assert len(files) == len(RELEASES)
    for path in files:
        release = yaml.safe_load(path.read_text())
        assert unknown_keys(release["chart"], release["values"]) == [], path.name


def test_the_values_checker_catches_a_typo():
    assert unknown_keys("gpu-operator", {"driver": {"enabeld": False}}) == ["driver.enabeld"]
    assert unknown_keys("kube-prometheus-stack", {"prometheus": {"prometheusSpec": {"retension": "1d"}}}) \
        == ["prometheus.prometheusSpec.retension"]


@pytest.mark.parametrize("stack", ["dev_run", "prod_run"])
def test_custom_resources_match_their_crds(stack, request):
    run = request.getfixturevalue(stack)
    crs = [mockrun.reveal(r.inputs) for r in run.resources
           if r.type.startswith("kubernetes:monitoring.coreos.com/")]
    assert {c["kind"] for c in crs} == {"PodMonitor", "PrometheusRule"}
    for cr in crs:
        validate_custom_resource(cr)


def test_the_crd_check_catches_a_wrong_field(prod_run):
    monitor = mockrun.reveal(next(r for r in prod_run.resources if r.type.endswith(":PodMonitor")).inputs)
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(monitor)


def test_crds_exist_before_the_resources_that_use_them(prod_run):
    stack = _release(prod_run, "kube-prometheus-stack").name
    for r in prod_run.resources:
        if r.type.startswith("kubernetes:monitoring.coreos.com/"):
            assert stack in names(r.dependencies), r.name
    # DCGM's ServiceMonitor comes with the GPU operator; the adapter needs Prometheus.
    for name in ("gpu-operator", "prometheus-adapter"):
        assert stack in names(_release(prod_run, name).dependencies)



def test_ingresses_wait_for_the_load_balancer_controller(ingress_run):
    lbc = _release(ingress_run, "aws-load-balancer-controller").name
    ingresses = ingress_run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    assert ingresses
    for ingress in ingresses:
        assert lbc in names(ingress.dependencies)


def test_gpu_operator_on_al2023(prod_run):
    v = releases(prod_run)["gpu-operator"]["values"]
    assert v["driver"] == {"enabled": False} and v["toolkit"] == {"enabled": False}
    assert v["devicePlugin"]["enabled"] is True
    assert v["dcgmExporter"]["serviceMonitor"] == {"enabled": True,
                                                   "additionalLabels": {"release": "kube-prometheus-stack"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in v["daemonsets"]["tolerations"]


def test_gpu_operator_on_bottlerocket(dev_settings):
    dev_settings["gpuNodeGroups"][0]["amiType"] = "BOTTLEROCKET_x86_64_NVIDIA"
    v = releases(run_settings(dev_settings))["gpu-operator"]["values"]
    assert v["devicePlugin"] == {"enabled": False} and v["migManager"] == {"enabled": False}


def test_gpu_time_slicing(dev_settings):
    """Shared GPUs for other workloads of the cluster (TGI models are refused with it)."""
    dev_settings["addons"] = {"gpuTimeSlicingReplicas": 2}
    dev_settings["models"] = []
    run = run_settings(dev_settings)
    config = releases(run)["gpu-operator"]["values"]["devicePlugin"]["config"]
    assert config["create"] is True and config["default"] == "any"
    sharing = yaml.safe_load(config["data"]["any"])
    assert sharing == {"version": "v1", "sharing": {"timeSlicing": {"resources": [
        {"name": "nvidia.com/gpu", "replicas": 2}], "failRequestsGreaterThanOne": True}}}
    template = {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in run.of_type("aws:autoscaling/tag:Tag")}
    # What a new node advertises, for scaling from zero.
    assert template["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "2"


def test_load_balancer_controller(prod_run):
    v = releases(prod_run)["aws-load-balancer-controller"]["values"]
    assert v["clusterName"] == "llmserve-prod" and v["region"] == "us-east-1"
    # Its Service webhook (failurePolicy Fail) would reject other releases' Services while it starts.
    assert v["enableServiceMutatorWebhook"] is False
    assert v["vpcId"] == prod_run.one("aws:ec2/vpc:Vpc").id  # IMDS hop limit 1: no lookup
    assoc = next(mockrun.reveal(a.inputs) for a in prod_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                 if a.inputs["serviceAccount"] == v["serviceAccount"]["name"])
    assert assoc["namespace"] == "kube-system"
    policy = next(json.loads(p.inputs["policy"]) for p in prod_run.of_type("aws:iam/rolePolicy:RolePolicy")
                  if "lbc" in p.name)
    upstream = json.loads((ROOT / "components" / "infra" / "policies" / "aws-load-balancer-controller.json").read_text())
    # The published policy, statement for statement, scoped as its install guide recommends.
    assert len(policy["Statement"]) == len(upstream["Statement"])
    vpc_arn = f"arn:aws:ec2:us-east-1:{mockrun.ACCOUNT}:vpc/{prod_run.one('aws:ec2/vpc:Vpc').id}"
    for ours, theirs in zip(policy["Statement"], upstream["Statement"]):
        assert (ours["Action"], ours.get("Resource")) == (theirs["Action"], theirs.get("Resource"))
        text = json.dumps(ours.get("Condition", {}))
        assert '"false"' not in text  # no "any cluster's tag" condition left
        if sorted(theirs["Action"]) == ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"] \
                and "Condition" not in theirs:
            assert ours["Condition"] == {"ArnEquals": {"ec2:Vpc": vpc_arn}}
        for key, value in (theirs.get("Condition", {}).get("Null") or {}).items():
            if value == "false":
                assert ours["Condition"]["StringEquals"][key] == "llmserve-prod"
            else:
                assert ours["Condition"]["Null"][key] == value
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"elasticloadbalancing:CreateLoadBalancer", "wafv2:AssociateWebACL", "ec2:CreateSecurityGroup"} <= actions


@pytest.mark.parametrize("version,tag", [("1.35", "v1.35.0"), ("1.36", "v1.36.1")])
def test_cluster_autoscaler_matches_the_cluster_version(dev_settings, version, tag):
    dev_settings["cluster"]["kubernetesVersion"] = version
    assert releases(run_settings(dev_settings))["cluster-autoscaler"]["values"]["image"] == {"tag": tag}


def test_cluster_autoscaler_may_resize_only_this_cluster(prod_run):
    v = releases(prod_run)["cluster-autoscaler"]["values"]
    assert v["autoDiscovery"]["clusterName"] == "llmserve-prod" and v["awsRegion"] == "us-east-1"
    policy = next(json.loads(p.inputs["policy"]) for p in prod_run.of_type("aws:iam/rolePolicy:RolePolicy")
                  if "autoscaler" in p.name)
    [resize] = [s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert resize["Condition"] == {"StringEquals": {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/llmserve-prod": "owned"}}
    assoc = next(a.inputs for a in prod_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                 if a.inputs["serviceAccount"] == v["rbac"]["serviceAccount"]["name"])
    assert assoc["namespace"] == "kube-system"


def _grace_periods(run) -> list[int]:
    """The serving pods' grace periods, and the gateway's proxies': Envoy Gateway gives them the
    EnvoyProxy's drainTimeout + 300 s (envoyproxy/gateway v1.8.3 internal/infrastructure/
    kubernetes/proxy/resource_provider.go expectedTerminationGracePeriodSeconds)."""
    pods = [mockrun.reveal(d.inputs)["spec"]["template"]["spec"] for d in run.of_type("kubernetes:apps/v1:Deployment")]
    proxies = [mockrun.reveal(r.inputs)["spec"]["shutdown"]["drainTimeout"] for r in run.resources
               if r.type == "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"]
    return ([p["terminationGracePeriodSeconds"] for p in pods if "terminationGracePeriodSeconds" in p]
            + [int(d.rstrip("s")) + 300 for d in proxies])


def test_cluster_autoscaler_lets_serving_pods_drain_for_their_whole_grace_period(stack_runs):
    """On scale-down the autoscaler cuts a pod's grace period to --max-graceful-termination-sec
    (600 s unless set, kubernetes/autoscaler cluster-autoscaler/FAQ.md), below what a serving pod
    may need to finish its longest generation; the gateway's proxies drain longer still."""
    for run in stack_runs.values():
        cap = releases(run)["cluster-autoscaler"]["values"]["extraArgs"]["max-graceful-termination-sec"]
        graces = _grace_periods(run)
        assert graces and cap == max(600, *graces)  # the longest, never below the default


def test_gpu_groups_can_scale_from_zero(prod_run):
    tags = {}
    for t in prod_run.of_type("aws:autoscaling/tag:Tag"):
        tags.setdefault(t.name.rsplit("-template-", 1)[0], {})[t.inputs["tag"]["key"]] = t.inputs["tag"]
    x4 = tags["llmserve-prod-l40s-x4"]
    prefix = "k8s.io/cluster-autoscaler/node-template"
    assert x4[f"{prefix}/label/llmserve/node-group"]["value"] == "l40s-x4"
    assert x4[f"{prefix}/taint/nvidia.com/gpu"]["value"] == "true:NoSchedule"
    assert x4[f"{prefix}/resources/nvidia.com/gpu"]["value"] == "4"
    assert x4[f"{prefix}/label/k8s.amazonaws.com/accelerator"]["value"] == "nvidia"
    assert all(t["propagateAtLaunch"] is False for t in x4.values())
    assert "llmserve-prod-system" not in tags  # CPU nodes never scale from zero here


def test_prometheus_adapter_serves_what_the_hpa_asks_for(prod_run):
    rule = next(r for r in releases(prod_run)["prometheus-adapter"]["values"]["rules"]["custom"]
                if r["name"]["as"] == "tgi_queue_size")
    hpa = next(h for h in (mockrun.reveal(r.inputs) for r in prod_run.of_type(
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")) if h["metadata"]["name"] == "qwen-14b-blue")
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "tgi_queue_size"
    assert rule["seriesQuery"] == 'tgi_queue_size{namespace!="",pod!=""}'
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert prometheus_adapter_values()["prometheus"]["url"] == "http://kube-prometheus-stack-prometheus.monitoring.svc"


def test_prometheus_retention_and_storage_from_config(dev_settings):
    dev_settings["monitoring"].update(retention="30d", storageGiB=200)
    spec = releases(run_settings(dev_settings))["kube-prometheus-stack"]["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "200Gi" and claim["storageClassName"] == "gp3"


def test_grafana_gets_a_generated_admin_password_and_the_dashboards_sidecar(dev_run):
    grafana = releases(dev_run)["kube-prometheus-stack"]["values"]["grafana"]
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert grafana["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    secret = next(r for r in dev_run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "grafana-admin")
    assert mockrun.is_secret(secret.inputs["stringData"])
    assert mockrun.is_secret(dev_run.outputs["grafanaAdminPassword"])


def test_monitoring_cannot_read_secrets_outside_its_namespace(dev_run):
    """Grafana's sidecars get a Role in `monitoring` (no ClusterRole on Secrets), and
    kube-state-metrics runs without its secrets collector, so its ClusterRole has no Secrets."""
    values = releases(dev_run)["kube-prometheus-stack"]["values"]
    assert values["grafana"]["rbac"]["namespaced"] is True
    assert values["grafana"]["sidecar"]["dashboards"]["searchNamespace"] == "monitoring"
    assert values["kube-state-metrics"]["collectorsExclude"] == ["secrets"]
    # Both keys are the subcharts' own (checked against their published values.yaml).
    assert unknown_keys("kube-prometheus-stack", {"grafana": {"rbac": {"namespaced": True}},
                                                  "kube-state-metrics": {"collectorsExclude": []}}) == []
    assert unknown_keys("kube-prometheus-stack", {"grafana": {"rbac": {"namespacd": True}}}) == [
        "grafana.rbac.namespacd"]


def test_tgi_pods_are_scraped_by_the_stacks_prometheus(prod_run):
    monitor = mockrun.reveal(next(r for r in prod_run.resources if r.type.endswith(":PodMonitor")).inputs)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"model", "slot"}
