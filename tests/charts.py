"""Checks against the charts' published values.yaml and CRD schemas, copied into tests/data
(each folder's PROVENANCE names the upstream repository, tag, commit and path)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import yaml

DATA = Path(__file__).resolve().parent / "data"
CHARTS = DATA / "charts"
CRDS = DATA / "crds"

# Maps a chart documents as free-form ("additional arguments"), whose keys are the user's.
FREE_FORM = {
    ("cluster-autoscaler", "extraArgs"),  # "Additional container arguments" (chart README)
    # Envoy Gateway's own configuration file (EnvoyGateway, api/v1alpha1/envoygateway_types.go),
    # which the chart's values.yaml only samples (tests/infra/test_gateway_controllers.py checks it).
    ("gateway-helm", "config.envoyGateway"),
}


def provenance(chart: str) -> dict:
    return yaml.safe_load((CHARTS / chart / "PROVENANCE").read_text())


def subcharts(chart: str) -> list[str]:
    """The fixtures of the chart's dependencies (PROVENANCE `subchartOf`): their values go under
    a key named after them."""
    return sorted(p.name for p in CHARTS.iterdir() if provenance(p.name).get("subchartOf") == chart)


def chart_values(chart: str) -> dict:
    """The chart's defaults, each dependency's own defaults merged under its key (the parent's
    values.yaml lists only the few it overrides)."""
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    for dependency in subcharts(chart):
        values[dependency] = _merged(chart_values(dependency), values.get(dependency) or {})
    return values


def _merged(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def unknown_keys(chart: str, values: dict) -> list[str]:
    """Paths of `values` that the chart's values.yaml does not have. Below a key whose default is
    empty (`{}`, `[]`, null, "") or a list, or a documented free-form map, anything goes."""
    return list(_unknown(chart, chart_values(chart), values, ""))


def _unknown(chart: str, defaults: Any, values: Any, path: str) -> Iterator[str]:
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults:
            yield where
            continue
        default = defaults[key]
        if (chart, where) in FREE_FORM or not isinstance(default, dict) or not default:
            continue
        yield from _unknown(chart, default, value, where)


def validate_manifest(manifest: dict, kubernetes_version: str) -> None:
    """A rendered object against the API server's schemas (kubernetes-validate, strict) or, for a
    custom resource, its CRD in tests/data/crds; raises either validator's error."""
    if manifest["apiVersion"].split("/")[0] in {crd["spec"]["group"] for crd in _crds()}:
        validate_custom_resource(manifest)
    else:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)


@functools.cache
def _crds() -> tuple[dict, ...]:
    """The vendored CRDs, read once (some are megabytes of YAML)."""
    return tuple(doc for path in sorted(CRDS.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
                 if doc and doc.get("kind") == "CustomResourceDefinition")


def _crd_schema(kind: str) -> dict:
    for doc in _crds():
        if doc["spec"]["names"]["kind"] == kind:
            [version] = [v for v in doc["spec"]["versions"] if v.get("storage")]
            return version["schema"]["openAPIV3Schema"]  # _strict copies it
    raise LookupError(f"no CRD for {kind} in {CRDS}")


def _strict(schema: Any) -> Any:
    """The API server prunes unknown fields of structural schemas: reject them instead."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def validate_custom_resource(resource: dict) -> None:
    """Raises jsonschema.ValidationError when the resource does not match its CRD."""
    schema = _strict(_crd_schema(resource["kind"]))
    schema["properties"]["metadata"] = {"type": "object"}
    # The CRDs carry Go regular expressions (`^(?i)...`) that Python's metaschema check refuses:
    # validate the instance without checking the schema itself.
    jsonschema.Draft7Validator(schema).validate(resource)
