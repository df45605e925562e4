"""One Prometheus alerting rule as the rule files spell it, its runbook link the anchor of its
name in docs/runbook.md (alerts.py, gateway_alerts.py)."""

from __future__ import annotations


def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
          runbook_url: str) -> dict:
    return {
        "alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description,
                        "runbook_url": f"{runbook_url}#{name.lower()}"},
    }
