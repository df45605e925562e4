"""The SLOs' burn-rate alerts, unit-tested by promtool with synthetic traffic whose bad share is set
from the objective and the SRE workbook's burn rates (https://sre.google/workbook/alerting-on-slos/):
a fast burn pages, a slow one or a burst that is over warns without paging, a share within the
budget stays quiet. Each SLO has one alert name at two severities: while the page (critical) fires,
Alertmanager holds its warning back (the inhibition of infra/monitoring.py)."""

from __future__ import annotations

import re

import pytest
import yaml

from components.config import AlertThresholds
from components.config.monitoring import SloConfig
from components.serving import alerts

from ..conftest import TGI, run_settings, stack_settings
from .test_alerts import _expand, _promtool, _rules, needs_promtool

EXPORTED = TGI["duration_buckets_le"]
URL = "https://github.com/acme/llmserve/blob/main/docs/runbook.md"
POD = 'namespace="llm", model="qwen-7b", pod="qwen-7b-blue-1", slot="blue"'
LABELS = {"namespace": "llm", "model": "qwen-7b"}
# The workbook's burn rates of a 30-day SLO, by the windows that measure them.
PAGE = {("1h", "5m"): 14.4, ("6h", "30m"): 6}
TICKET = {("1d", "2h"): 3, ("3d", "6h"): 1}
PER_MINUTE = 1000  # requests that end per minute

SLOS = {
    "default": SloConfig(),
    "strict": SloConfig.model_validate({"availabilityPercent": 99.9, "firstTokenPercent": 97,
                                        "firstTokenQueueSeconds": float(EXPORTED[20])}),
}
AVAILABILITY, FIRST_TOKEN = "TGIAvailabilityBudgetBurn", "TGIFirstTokenBudgetBurn"
PAGES, WARNS = ["critical", "warning"], ["warning"]  # what fires: a fast burn also spends slowly


def _budget(percent: float) -> float:
    return 1 - percent / 100


def _thresholds(expr: str) -> dict[str, list[float]]:
    """The ratio each recorded window is compared with: `<record><window> > (<rate> * <budget>)`."""
    found: dict[str, list[float]] = {}
    for window, rate, budget in re.findall(r":ratio_rate(\w+) > \(([\d.]+) \* ([\d.e-]+)\)", expr):
        found.setdefault(window, []).append(float(rate) * float(budget))
    return found


def _phases(per_step: float, *steps: tuple[float, int]) -> str:
    """A counter's values: for each (share, steps), `steps` samples growing by share x per_step."""
    out, value = [], 0.0
    for share, n in steps:
        out.append(f"{value:g}+{share * per_step:g}x{n}")
        value += share * per_step * n
    return " ".join(out)


def _traffic(step_minutes: int, *phases: tuple[float, int]) -> list[dict]:
    """Requests that end: a share of them failing by the service's fault (`generation`), the rest
    succeeding; as many again refused as invalid (`validation`, the client's)."""
    n = PER_MINUTE * step_minutes
    return [
        {"series": f"tgi_request_success{{{POD}}}", "values": _phases(n, *((1 - s, k) for s, k in phases))},
        {"series": f'tgi_request_failure{{{POD}, err="generation"}}', "values": _phases(n, *phases)},
        {"series": f'tgi_request_failure{{{POD}, err="validation"}}', "values": _phases(n, *((1, k) for _, k in phases))},
    ]


def _queueing(slo: SloConfig, step_minutes: int, *phases: tuple[float, int]) -> list[dict]:
    """Successful requests, a share of them queued longer than the objective: within the bucket
    above it. None within the bucket below it, so that only the objective's bucket counts."""
    n = PER_MINUTE * step_minutes
    objective = EXPORTED.index(alerts.le_label(slo.first_token_queue_seconds))
    return [
        {"series": f'tgi_request_queue_duration_bucket{{{POD}, le="{EXPORTED[objective - 1]}"}}', "values": _phases(n, (0, sum(k for _, k in phases)))},
        {"series": f'tgi_request_queue_duration_bucket{{{POD}, le="{EXPORTED[objective]}"}}', "values": _phases(n, *((1 - s, k) for s, k in phases))},
        {"series": f'tgi_request_queue_duration_bucket{{{POD}, le="+Inf"}}', "values": _phases(n, *((1, k) for _, k in phases))},
        {"series": f"tgi_request_queue_duration_count{{{POD}}}", "values": _phases(n, *((1, k) for _, k in phases))},
    ]


def _expected(rules: dict, name: str, severity: str) -> dict:
    rule = next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == name and r["labels"]["severity"] == severity)
    return {"exp_labels": {**LABELS, **rule["labels"]},
            "exp_annotations": {k: _expand(v, LABELS) for k, v in rule["annotations"].items()}}


def _check(tmp_path, slo: SloConfig, series: list[dict], step_minutes: int, at: str, name: str,
           firing: list[str]):
    """promtool: at `at`, the alert `name` fires at exactly these severities."""
    rules = {"groups": alerts.rule_groups(AlertThresholds(), "llm", URL, slo)}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    # Evaluated at least every 4 minutes: the alerts' group may run before the recording rules'
    # group at a step, and then reads their last values, which must be within the 5m lookback.
    every = min(step_minutes, 4)
    tests = {"rule_files": [str(tmp_path / "rules.yaml")], "evaluation_interval": f"{every}m", "tests": [
        {"interval": f"{step_minutes}m", "input_series": series, "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": [_expected(rules, name, s) for s in firing]}]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(tmp_path / "test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_failures_at_twice_the_fastest_burn_page(tmp_path, slo):
    share = min(1, 2 * PAGE["1h", "5m"] * _budget(slo.availability_percent))
    _check(tmp_path, slo, _traffic(1, (share, 70)), 1, "65m", AVAILABILITY, PAGES)


@needs_promtool
def test_six_hours_between_the_two_page_rates_page(tmp_path):
    slo = SLOS["default"]
    share = 1.5 * PAGE["6h", "30m"] * _budget(slo.availability_percent)
    assert share < PAGE["1h", "5m"] * _budget(slo.availability_percent)  # only 6h/30m sees it
    _check(tmp_path, slo, _traffic(1, (share, 370)), 1, "365m", AVAILABILITY, PAGES)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_failures_below_the_fastest_burn_and_client_errors_do_not_page(tmp_path, slo):
    # After a quiet 5 hours, an hour at 0.9 of the fastest burn: under 14.4x over 1h, under 6x
    # over 6h, over 1x over 3d and 6h: a warning. The invalid requests (as many as all the others)
    # are the clients' and count not.
    share = 0.9 * PAGE["1h", "5m"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(1, (0, 300), (share, 70)), 1, "365m", AVAILABILITY, WARNS)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_a_burst_that_ended_half_an_hour_ago_no_longer_pages_but_warns(tmp_path, slo):
    share = min(1, 2 * PAGE["1h", "5m"] * _budget(slo.availability_percent))
    # The hour still holds the burst; the 5m and 30m windows do not.
    _check(tmp_path, slo, _traffic(1, (share, 30), (0, 40)), 1, "65m", AVAILABILITY, WARNS)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_a_day_of_slow_burn_warns_without_paging(tmp_path, slo):
    # Between the 1d ticket's 3x and the slowest page's 6x.
    share = 1.5 * TICKET["1d", "2h"] * _budget(slo.availability_percent)
    assert share < PAGE["6h", "30m"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(10, (share, 160)), 10, "26h", AVAILABILITY, WARNS)


@needs_promtool
def test_three_days_just_over_the_budget_warn(tmp_path):
    slo = SLOS["default"]
    share = 1.5 * TICKET["3d", "6h"] * _budget(slo.availability_percent)  # under 3x: only 3d/6h sees it
    _check(tmp_path, slo, _traffic(10, (share, 440)), 10, "3d", AVAILABILITY, WARNS)


@needs_promtool
def test_three_days_within_the_budget_stay_quiet(tmp_path):
    slo = SLOS["default"]
    share = 0.8 * TICKET["3d", "6h"] * _budget(slo.availability_percent)
    _check(tmp_path, slo, _traffic(10, (share, 440)), 10, "3d", AVAILABILITY, [])


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_requests_queued_past_the_objective_page_at_the_fastest_burn(tmp_path, slo):
    share = min(1, 2 * PAGE["1h", "5m"] * _budget(slo.first_token_percent))
    _check(tmp_path, slo, _queueing(slo, 1, (share, 70)), 1, "65m", FIRST_TOKEN, PAGES)


@needs_promtool
@pytest.mark.parametrize("slo", SLOS.values(), ids=SLOS)
def test_requests_queued_within_the_objective_stay_quiet(tmp_path, slo):
    share = 0.5 * _budget(slo.first_token_percent)
    _check(tmp_path, slo, _queueing(slo, 1, (share, 70)), 1, "65m", FIRST_TOKEN, [])


@needs_promtool
def test_a_day_of_slow_queueing_warns_without_paging(tmp_path):
    slo = SLOS["strict"]
    share = 1.5 * TICKET["1d", "2h"] * _budget(slo.first_token_percent)
    _check(tmp_path, slo, _queueing(slo, 10, (share, 160)), 10, "26h", FIRST_TOKEN, WARNS)


def test_the_burn_alerts_page_and_warn_at_the_workbook_rates(dev_run):
    """Every window pair at its burn rate times the budget, paging only for the fast ones."""
    groups = {g["name"]: g["rules"] for g in _rules(dev_run)["groups"]}
    records = {r["record"] for r in groups["tgi-slo-ratios"]}
    burns = {(r["alert"], r["labels"]["severity"]): r for r in groups["tgi-slo"]}
    assert set(burns) == {(a, s) for a in (AVAILABILITY, FIRST_TOKEN) for s in PAGES}
    slo = SloConfig()  # dev sets no `slo`
    for name, percent, record in ((AVAILABILITY, slo.availability_percent, "model:tgi_request_errors:ratio_rate"),
                                  (FIRST_TOKEN, slo.first_token_percent, "model:tgi_request_queue_slow:ratio_rate")):
        for severity, pairs in (("critical", PAGE), ("warning", TICKET)):
            thresholds = _thresholds(burns[name, severity]["expr"])
            assert len(thresholds) == 2 * len(pairs)
            for (long, short), rate in pairs.items():
                assert {record + long, record + short} <= records
                assert thresholds[long] == thresholds[short] == [pytest.approx(rate * _budget(percent))]


def test_the_stack_file_sets_the_objectives():
    settings = stack_settings("dev")
    settings["monitoring"] = {**settings["monitoring"], "slo": {
        "availabilityPercent": 99.9, "firstTokenQueueSeconds": float(EXPORTED[27])}}
    run = run_settings(settings)
    rules = [r for g in _rules(run)["groups"] for r in g["rules"]]
    page = next(r for r in rules if r.get("alert") == AVAILABILITY and r["labels"]["severity"] == "critical")
    assert _thresholds(page["expr"])["1h"] == [pytest.approx(PAGE["1h", "5m"] * _budget(99.9))]
    assert "99.9%" in page["annotations"]["description"]
    slow = next(r for r in rules if r.get("record") == "model:tgi_request_queue_slow:ratio_rate5m")
    assert f'le="{EXPORTED[27]}"' in slow["expr"]
