"""Monitoring that pages and survives: Alertmanager's routing checked and route-tested by amtool,
two replicas of Prometheus and Alertmanager across zones, size-bounded retention, CRDs that
upgrade with the chart."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from components.infra.monitoring import alertmanager_config
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
