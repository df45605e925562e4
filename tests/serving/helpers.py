"""Helpers for the serving tests: the recorded manifests of a run, a Deployment's container and
its environment."""

from __future__ import annotations

from components.offline import mockrun
from components.planning.lock import read

from ..conftest import ROOT

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
LOCK = read(ROOT / "models.lock.yaml")


def manifest(run, type_, name=None) -> dict:
    found = [r for r in run.of_type(type_) if name is None or r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, [r.inputs["metadata"]["name"] for r in run.of_type(type_)]
    return mockrun.reveal(found[0].inputs)


def container(deployment: dict) -> dict:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}

