"""`monitoring.slo` and the new alert thresholds: what a stack file may set, and the message when it
sets something the rules could not measure."""

from __future__ import annotations

import pytest

from components.config import ConfigError
from components.config.monitoring import TGI_DURATION_BUCKETS, le_label

from ..conftest import TGI, validate_settings

EXPORTED = TGI["duration_buckets_le"]  # `le` as TGI's /metrics writes it (tests/data/tgi.yaml)


def _errors(dev_settings: dict, **monitoring) -> list[str]:
    dev_settings.setdefault("monitoring", {}).update(monitoring)
    with pytest.raises(ConfigError) as err:
        validate_settings(dev_settings)
    return err.value.errors


def test_the_bounds_are_those_tgi_exports():
    assert [le_label(b) for b in TGI_DURATION_BUCKETS] == EXPORTED


def test_a_bucket_bound_as_exported_is_accepted(dev_settings):
    dev_settings["monitoring"]["slo"] = {"availabilityPercent": 99.9, "firstTokenPercent": 98,
                                         "firstTokenQueueSeconds": float(EXPORTED[25])}
    dev_settings["monitoring"]["alerts"] = {"p95QueueSeconds": 2.5, "gpuIdleHours": 6}
    m = validate_settings(dev_settings).monitoring
    assert (m.slo.availability_percent, m.slo.first_token_percent) == (99.9, 98)
    assert le_label(m.slo.first_token_queue_seconds) == EXPORTED[25]
    assert (m.alerts.p95_queue_seconds, m.alerts.gpu_idle_hours) == (2.5, 6)


def test_the_default_queue_objective_is_a_bound(dev_settings):
    assert le_label(validate_settings(dev_settings).monitoring.slo.first_token_queue_seconds) in EXPORTED


@pytest.mark.parametrize("seconds", [1.5, 1.12, 0.00015, 200.0, 0.0])
def test_a_queue_objective_between_bounds_names_the_nearest(dev_settings, seconds):
    [line] = _errors(dev_settings, slo={"firstTokenQueueSeconds": seconds})
    assert line.startswith(f"monitoring.slo.firstTokenQueueSeconds: {seconds!r} is not a bucket bound"), line
    floats = [float(b) for b in EXPORTED]
    below = [b for b, f in zip(EXPORTED, floats) if f < seconds][-1:]
    above = [b for b, f in zip(EXPORTED, floats) if f > seconds][:1]
    assert f"nearest: {', '.join(below + above)} " in line


@pytest.mark.parametrize("setting,value", [("availabilityPercent", 100), ("availabilityPercent", 90),
                                           ("firstTokenPercent", 94.9), ("firstTokenPercent", 100.5)])
def test_an_objective_without_a_budget_a_page_could_use_is_refused(dev_settings, setting, value):
    [line] = _errors(dev_settings, slo={setting: value})
    assert line.startswith(f"monitoring.slo.{setting}: {value!r} is not allowed: input should be"), line


@pytest.mark.parametrize("setting,value", [("p95QueueSeconds", 0), ("gpuIdleHours", 0), ("gpuIdleHours", 100)])
def test_alert_thresholds_out_of_range_are_refused(dev_settings, setting, value):
    [line] = _errors(dev_settings, alerts={setting: value})
    assert line.startswith(f"monitoring.alerts.{setting}: {value!r} is not allowed"), line


def test_an_unknown_slo_setting_lists_the_allowed_ones(dev_settings):
    [line] = _errors(dev_settings, slo={"latencyPercent": 99})
    assert line == ("monitoring.slo.latencyPercent: unknown setting; allowed here: availabilityPercent, "
                    "firstTokenPercent, firstTokenQueueSeconds")
