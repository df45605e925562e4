"""Reading IAM policy documents in tests: statements with Action and Resource as lists, and which
statements match an action (IAM matches actions case-insensitively, with * and ? wildcards)."""

from __future__ import annotations

import fnmatch


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(doc: dict, effect: str | None = None) -> list[dict]:
    out = []
    for s in as_list(doc["Statement"]):
        s = {**s, "Action": as_list(s.get("Action", [])), "Resource": as_list(s.get("Resource", []))}
        if effect is None or s["Effect"] == effect:
            out.append(s)
    return out


def matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def with_action(doc: dict, action: str, effect: str) -> list[dict]:
    return [s for s in statements(doc, effect) if any(matches(p, action) for p in s["Action"])]


def actions(doc: dict, effect: str = "Allow") -> set[str]:
    return {a for s in statements(doc, effect) for a in s["Action"]}
