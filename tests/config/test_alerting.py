"""`monitoring.alerting`: every stack says where alerts go (or that they go nowhere), and the
receivers' keys and URLs are Pulumi secrets, refused in plain text and never echoed."""

from __future__ import annotations

import pytest
import yaml

from components.config import ConfigError
from components.offline import mockrun

from ..conftest import ROOT, cli, run_settings, stack_settings, validate_settings

ROUTING_KEY = "R0utingKeyOfPagerDuty0123456789ab"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/SlackSecretPart0123"
HEARTBEAT = "https://hc-ping.com/5f1c-heartbeat-secret-uuid"


def _alerting(settings: dict, **alerting) -> dict:
    settings["monitoring"]["alerting"] = alerting
    return settings


def _error(settings: dict, secret_keys: tuple = ()) -> str:
    with pytest.raises(ConfigError) as err:
        run_settings(settings, secret_keys=secret_keys)
    return str(err.value)


def test_prod_pages_critical_and_posts_warnings_and_has_a_heartbeat():
    alerting = validate_settings(stack_settings("prod")).monitoring.alerting
    assert "pagerduty" in alerting.critical and alerting.warning == ["slack"] and alerting.heartbeat
    assert set(alerting.secrets()) == {"pagerdutyRoutingKey", "slackWebhookUrl", "heartbeatUrl"}


def test_dev_routes_nowhere_and_says_so():
    alerting = validate_settings(stack_settings("dev")).monitoring.alerting
    assert (alerting.critical, alerting.warning, alerting.heartbeat) == (["none"], ["none"], False)
    assert alerting.secrets() == {}


def test_a_stack_that_does_not_say_where_alerts_go_is_refused(dev_settings):
    del dev_settings["monitoring"]["alerting"]
    assert "monitoring.alerting: required: where Alertmanager sends each severity" in _error(dev_settings)


@pytest.mark.parametrize("alerting, expected", [
    ({"critical": "opsgenie", "warning": "none", "heartbeat": False},
     "monitoring.alerting.critical[0]: 'opsgenie' is not one of pagerduty, slack, email, none"),
    ({"critical": ["none", "slack"], "warning": "none", "heartbeat": False},
     "monitoring.alerting.critical: none routes nowhere: give it alone"),
    ({"critical": [], "warning": "none", "heartbeat": False}, "monitoring.alerting.critical: [] is not allowed"),
    ({"critical": "none", "warning": "none"}, "monitoring.alerting.heartbeat: required"),
    ({"critical": "none", "warning": "email", "heartbeat": False},
     "monitoring.alerting.email: required when a severity routes to email"),
    ({"critical": "none", "warning": "email", "heartbeat": False,
      "email": {"to": ["oncall"], "fromAddress": "am@example.com", "smarthost": "smtp.example.com:587"}},
     "monitoring.alerting.email.to: 'oncall' is not an email address"),
    ({"critical": "none", "warning": "email", "heartbeat": False,
      "email": {"to": ["oncall@example.com"], "fromAddress": "am@example.com", "smarthost": "smtp.example.com"}},
     "monitoring.alerting.email.smarthost: 'smtp.example.com' is not host:port"),
])
def test_bad_routes_name_the_setting(dev_settings, alerting, expected):
    assert expected in _error(_alerting(dev_settings, **alerting))


def test_each_receiver_needs_its_secret(dev_settings):
    _alerting(dev_settings, critical="pagerduty", warning="slack", heartbeat=True)
    message = _error(dev_settings)
    assert "pagerdutyRoutingKey: required: monitoring.alerting routes to pagerduty " \
           "(`pulumi config set --secret pagerdutyRoutingKey ...`)" in message
    assert "slackWebhookUrl: required: monitoring.alerting routes to slack" in message
    assert "heartbeatUrl: required: monitoring.alerting.heartbeat is true" in message


def test_an_alerting_secret_in_plain_text_is_refused_and_not_echoed(dev_settings):
    _alerting(dev_settings, critical="pagerduty", warning="none", heartbeat=False)
    dev_settings["pagerdutyRoutingKey"] = ROUTING_KEY
    message = _error(dev_settings)  # not marked secret: `pulumi config set` without --secret
    assert "pagerdutyRoutingKey: stored in plain text in the stack file: set it with " \
           "`pulumi config set --secret pagerdutyRoutingKey ...`" in message
    assert ROUTING_KEY not in message


def test_a_webhook_that_is_not_https_is_refused_and_not_echoed(dev_settings):
    _alerting(dev_settings, critical="none", warning="slack", heartbeat=False)
    dev_settings["slackWebhookUrl"] = "http://hooks.example.com/NotHttpsSecret"
    message = _error(dev_settings, secret_keys=("slackWebhookUrl",))
    assert "slackWebhookUrl: must be an https:// URL" in message
    assert "NotHttpsSecret" not in message


def test_secrets_given_as_secrets_reach_the_alertmanager_secret_only(dev_settings):
    _alerting(dev_settings, critical="pagerduty", warning="slack", heartbeat=True)
    dev_settings.update(pagerdutyRoutingKey=ROUTING_KEY, slackWebhookUrl=WEBHOOK, heartbeatUrl=HEARTBEAT)
    run = run_settings(dev_settings, secret_keys=("pagerdutyRoutingKey", "slackWebhookUrl", "heartbeatUrl"))
    [secret] = [r for r in run.of_type("kubernetes:core/v1:Secret")
                if r.inputs["metadata"]["name"] == "alertmanager-receivers"]
    assert secret.inputs["metadata"]["namespace"] == "monitoring"
    assert mockrun.is_secret(secret.inputs["stringData"])
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    assert mockrun.reveal(secret.inputs["stringData"], mask=False) == {
        "pagerdutyRoutingKey": ROUTING_KEY, "slackWebhookUrl": WEBHOOK, "heartbeatUrl": HEARTBEAT}
    everything_else = repr([mockrun.reveal(r.inputs, mask=False) for r in run.resources if r is not secret])
    for value in (ROUTING_KEY, WEBHOOK, HEARTBEAT):
        assert value not in everything_else


def _prod_file(tmp_path, **extra) -> str:
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"].update({f"llmserve:{k}": v for k, v in extra.items()})
    path = tmp_path / "Pulumi.alerting.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_render_stands_in_for_secrets_not_set_or_encrypted(tmp_path):
    """The shipped prod file has no alerting secrets (and a real one has ciphertext): the render
    builds what `pulumi up` would, the values shown as [secret]."""
    stack = _prod_file(tmp_path, pagerdutyRoutingKey={"secure": "v1:0Zw9kTEr5PGhHnTk:5ZIIfb2nQf1Yyq4UEEQG3VYlm6E="})
    out = tmp_path / "out"
    result = cli("render", "--stack", "alerting", "--config-file", stack, "--out", str(out))
    assert result.returncode == 0, result.stderr
    secret = yaml.safe_load((out / "kubernetes" / "secret-monitoring-alertmanager-receivers.yaml").read_text())
    assert set(secret["stringData"].values()) == {"[secret]"}


def test_render_refuses_a_plain_text_webhook_and_never_prints_it(tmp_path):
    result = cli("render", "--stack", "alerting", "--config-file", _prod_file(tmp_path, slackWebhookUrl=WEBHOOK),
                 "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "slackWebhookUrl: stored in plain text in the stack file" in result.stderr
    assert WEBHOOK not in result.stdout + result.stderr and "SlackSecretPart" not in result.stderr
    assert not (tmp_path / "out").exists()
