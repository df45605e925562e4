"""Fixtures of the serving tests."""

from __future__ import annotations

import pytest
import yaml

from components.offline import mockrun


def rendered_rules(run: mockrun.Run) -> dict:
    """The spec of the PrometheusRule a run rendered (every alert and recording rule)."""
    rule = next(r for r in run.resources if r.type.endswith(":PrometheusRule"))
    return mockrun.reveal(rule.inputs)["spec"]


@pytest.fixture
def rules_file(dev_run, tmp_path):
    """The dev stack's rendered rules, and a file of them for promtool."""
    rules = rendered_rules(dev_run)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return rules, path
