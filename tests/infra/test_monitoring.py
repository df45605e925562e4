"""Monitoring that pages and survives: Alertmanager's routing checked and route-tested by amtool,
two replicas of Prometheus and Alertmanager across zones, size-bounded retention, CRDs that
upgrade with the chart; prometheus-adapter serving each engine's queue to the HPAs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from components.infra.monitoring import VLLM_QUEUE_METRIC, alertmanager_config
from components.offline import mockrun

from ..charts import chart_values, unknown_keys
from ..conftest import run_settings, stack_settings

AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool (Debian package prometheus-alertmanager) is not installed; .ci/run installs it")
CHART = "kube-prometheus-stack"


def _values(run) -> dict:
    [release] = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == CHART]
    return mockrun.reveal(release.inputs)["values"]


def _merged(base, over):
    """Helm's merge of user values into the chart's: maps merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _amtool_version() -> tuple[int, ...]:
    out = subprocess.run([AMTOOL, "--version"], capture_output=True, text=True).stdout
    return tuple(int(n) for n in re.search(r"version (\d+)\.(\d+)", out).groups())


def _config_file(tmp_path, config: dict):
    """The Alertmanager config the chart writes (its defaults under ours), for amtool."""
    effective = _merged(chart_values(CHART)["alertmanager"]["config"], config)
    if _amtool_version() < (0, 26):
        # Debian 12's amtool 0.25 predates the webhook's url_file (Alertmanager 0.26.0 CHANGELOG,
        # #3223); the chart runs v0.34.0, which has it (notify/webhook/config.go). Check the rest
        # with a plain url in its place.
        for receiver in effective["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                assert hook.pop("url_file").startswith("/etc/alertmanager/secrets/")
                hook["url"] = "https://heartbeat.invalid/"
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(effective))
    return path


def _amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def _receiver(path, *labels: str) -> str:
    result = _amtool("config", "routes", "test", f"--config.file={path}", *labels)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_amtool
@pytest.mark.parametrize("stack", ["dev_run", "prod_run"])
def test_the_alertmanager_config_passes_amtool(stack, request, tmp_path):
    path = _config_file(tmp_path, _values(request.getfixturevalue(stack))["alertmanager"]["config"])
    result = _amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
def test_amtool_catches_a_route_to_no_receiver(tmp_path):
    config = alertmanager_config(None)
    config["route"]["routes"][0]["receiver"] = "pagerduty"
    result = _amtool("check-config", str(_config_file(tmp_path, config)))
    assert result.returncode != 0 and 'undefined receiver "pagerduty"' in result.stdout + result.stderr


@needs_amtool
def test_prod_routes_each_severity_to_its_people(prod_run, tmp_path):
    path = _config_file(tmp_path, _values(prod_run)["alertmanager"]["config"])
    assert _receiver(path, "alertname=TGIHighErrorRate", "severity=critical", "namespace=llm") == "critical"
    assert _receiver(path, "alertname=TGIHighLatency", "severity=warning", "namespace=llm") == "warning"
    assert _receiver(path, "alertname=Watchdog", "severity=none") == "heartbeat"
    assert _receiver(path, "alertname=InfoInhibitor", "severity=none") == "null"
    assert _receiver(path, "alertname=KubeQuotaAlmostFull", "severity=info") == "null"
    assert _receiver(path, "alertname=Other", "severity=page") == "warning"  # never dropped


@needs_amtool
def test_dev_pages_nobody(dev_run, tmp_path):
    path = _config_file(tmp_path, _values(dev_run)["alertmanager"]["config"])
    for labels in (["severity=critical"], ["severity=warning"], ["alertname=Watchdog"]):
        assert _receiver(path, *labels) == "null"


def test_receivers_read_their_keys_from_the_mounted_secret(prod_run):
    values = _values(prod_run)["alertmanager"]
    assert values["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    receivers = {r["name"]: r for r in values["config"]["receivers"]}
    where = "/etc/alertmanager/secrets/alertmanager-receivers/"
    assert receivers["critical"]["pagerduty_configs"][0]["routing_key_file"] == where + "pagerdutyRoutingKey"
    assert receivers["warning"]["slack_configs"][0]["api_url_file"] == where + "slackWebhookUrl"
    assert receivers["heartbeat"]["webhook_configs"][0]["url_file"] == where + "heartbeatUrl"
    assert "[secret]" not in repr(values["config"])  # no secret in the config, only paths
    [secret] = [r for r in prod_run.of_type("kubernetes:core/v1:Secret")
                if r.inputs["metadata"]["name"] == "alertmanager-receivers"]
    assert set(mockrun.reveal(secret.inputs)["stringData"]) == {
        "pagerdutyRoutingKey", "slackWebhookUrl", "heartbeatUrl"}
    assert mockrun.is_secret(secret.inputs["stringData"])


def test_email_uses_the_smtp_password_file(dev_settings):
    dev_settings["monitoring"]["alerting"] = {
        "critical": "none", "warning": "email", "heartbeat": False,
        "email": {"to": ["oncall@example.com", "ml@example.com"], "fromAddress": "am@example.com",
                  "smarthost": "email-smtp.us-east-1.amazonaws.com:587", "authUsername": "AKIAEXAMPLE"}}
    dev_settings["smtpPassword"] = "smtp-secret-password"
    values = _values(run_settings(dev_settings, secret_keys=("smtpPassword",)))["alertmanager"]
    [email] = next(r for r in values["config"]["receivers"] if r["name"] == "warning")["email_configs"]
    assert email == {"to": "oncall@example.com, ml@example.com", "from": "am@example.com",
                     "smarthost": "email-smtp.us-east-1.amazonaws.com:587", "send_resolved": True,
                     "auth_username": "AKIAEXAMPLE",
                     "auth_password_file": "/etc/alertmanager/secrets/alertmanager-receivers/smtpPassword"}


def test_no_receiver_no_secret(dev_run):
    assert _values(dev_run)["alertmanager"]["alertmanagerSpec"]["secrets"] == []
    assert not [r for r in dev_run.of_type("kubernetes:core/v1:Secret")
                if r.inputs["metadata"]["name"] == "alertmanager-receivers"]


def test_critical_inhibits_the_warning_of_the_same_alert(prod_run):
    config = _values(prod_run)["alertmanager"]["config"]
    assert config["route"]["group_by"] == ["alertname", "namespace", "model"]
    assert {"source_matchers": ['severity = "critical"'], "target_matchers": ['severity =~ "warning|info"'],
            "equal": ["alertname", "namespace", "model"]} in config["inhibit_rules"]


@pytest.mark.parametrize("spec, pods", [
    ("prometheus.prometheusSpec", {"app.kubernetes.io/name": "prometheus",
                                   "prometheus": "kube-prometheus-stack-prometheus"}),
    ("alertmanager.alertmanagerSpec", {"app.kubernetes.io/name": "alertmanager",
                                       "alertmanager": "kube-prometheus-stack-alertmanager"}),
])
def test_two_replicas_in_two_zones(prod_run, spec, pods):
    values = _values(prod_run)
    section, key = spec.split(".")
    s = values[section][key]
    assert s["replicas"] == 2
    assert s["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": pods}}]
    assert values[section]["podDisruptionBudget"] == {"enabled": True}  # minAvailable 1 (chart)
    assert chart_values(CHART)[section]["podDisruptionBudget"]["minAvailable"] == 1
    # prod's system nodes (three, one per zone) hold one replica per zone.
    assert stack_settings("prod")["systemNodeGroup"]["minSize"] >= s["replicas"]


def test_retention_is_bounded_by_the_volume(dev_settings):
    dev_settings["monitoring"].update(storageGiB=200)
    spec = _values(run_settings(dev_settings))["prometheus"]["prometheusSpec"]
    assert spec["retentionSize"] == "160GB"  # 80% of the 200Gi volume
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "200Gi"


def test_crds_upgrade_with_the_chart(prod_run):
    crds = _values(prod_run)["crds"]
    assert crds["enabled"] is True
    job = crds["upgradeJob"]
    assert job["enabled"] is True and job["forceConflicts"] is True
    assert job["image"]["busybox"]["tag"] not in ("", "latest")
    assert unknown_keys(CHART, {"crds": crds}) == []


# prometheus-adapter: each engine's queue per pod in the custom metrics API, for the HPAs.
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed; .ci/run installs it")


def _adapter_rules(run) -> list[dict]:
    [release] = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "prometheus-adapter"]
    return mockrun.reveal(release.inputs)["values"]["rules"]["custom"]


def test_the_adapter_serves_vllms_waiting_requests_per_pod(prod_run):
    rules = {r["name"]["as"]: r for r in _adapter_rules(prod_run)}
    assert set(rules) == {"tgi_queue_size", VLLM_QUEUE_METRIC}  # TGI's rule kept
    vllm = rules["vllm_num_requests_waiting"]
    # vLLM's gauge as exported (vllm-project/vllm@v0.33.0:vllm/v1/metrics/loggers.py), with the
    # PodMonitor's namespace and pod labels that tie it to the pods.
    assert vllm["seriesQuery"] == 'vllm:num_requests_waiting{namespace!="",pod!=""}'
    assert vllm["name"] == {"matches": "^vllm:num_requests_waiting$", "as": "vllm_num_requests_waiting"}
    assert vllm["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    for name, rule in rules.items():
        # The API's name is a path segment (.../pods/*/<name>): no `/`, `%` or `:`, not . or ..
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        # `matches` is anchored on one series name: the rules cannot overlap (docs/config.md).
        assert re.fullmatch(r"\^[a-z_:]+\$", rule["name"]["matches"])


def test_every_hpa_metric_has_an_adapter_rule(prod_run):
    served = {r["name"]["as"] for r in _adapter_rules(prod_run)}
    hpas = [mockrun.reveal(h.inputs) for h in prod_run.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")]
    assert hpas
    for hpa in hpas:
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in served, hpa["metadata"]


def _adapter_query(rule: dict, pods: list[str]) -> str:
    """The query the adapter sends for pods of namespace llm (docs/config.md, Querying): Series
    the Prometheus name, LabelMatchers the pods and namespace, GroupBy the pod label."""
    series = re.fullmatch(r"\^(.+)\$", rule["name"]["matches"])[1]
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", f'pod=~"{"|".join(pods)}",namespace="llm"')
            .replace("<<.GroupBy>>", "pod"))


@needs_promtool
def test_the_adapter_query_sums_a_pods_engine_cores(prod_run, tmp_path):
    """promtool evaluates the query the adapter makes of the vLLM rule: a pod's waiting requests
    are those of all its engine cores (one series per `engine`), one value per pod."""
    rule = next(r for r in _adapter_rules(prod_run) if r["name"]["as"] == VLLM_QUEUE_METRIC)
    pod = 'namespace="llm", model="qwen-7b", slot="blue", model_name="qwen-7b"'
    series = [{"series": f'vllm:num_requests_waiting{{{pod}, pod="qwen-7b-blue-1", engine="0"}}', "values": "3x5"},
              {"series": f'vllm:num_requests_waiting{{{pod}, pod="qwen-7b-blue-1", engine="1"}}', "values": "4x5"},
              {"series": f'vllm:num_requests_waiting{{{pod}, pod="qwen-7b-blue-2", engine="0"}}', "values": "1x5"},
              {"series": 'vllm:num_requests_waiting{namespace="other", pod="qwen-7b-blue-1", engine="0"}', "values": "50x5"}]
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    tests = {"rule_files": [str(tmp_path / "empty.yaml")], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "promql_expr_test": [
            {"expr": _adapter_query(rule, ["qwen-7b-blue-1", "qwen-7b-blue-2"]), "eval_time": "2m",
             "exp_samples": [{"labels": '{pod="qwen-7b-blue-1"}', "value": 7},
                             {"labels": '{pod="qwen-7b-blue-2"}', "value": 1}]}]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "test.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
