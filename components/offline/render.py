"""`python -m components render`: what `pulumi up` would create, written as files for review.

The program is run under Pulumi's mocks (components/offline/mockrun.py) and every registered resource
is written in its wire form:
- `kubernetes/<kind>-[<namespace>-]<name>.yaml`: one file per Kubernetes object;
- `helm/<release>.yaml`: one file per `helm.v3.Release` (name, namespace, chart, version,
  repository, values);
- `aws.json`: every other resource as {type, name, inputs};
- `outputs.json`: the stack outputs.
Secrets are written as `[secret]`. Files are written to a temporary folder first and moved in
only when the whole program ran: an invalid config leaves the output folder untouched.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from .mockrun import Registration, Run, reveal

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
OWNED = ("kubernetes", "helm", "aws.json", "outputs.json")


def is_kubernetes_object(r: Registration) -> bool:
    return r.custom and r.type.startswith("kubernetes:") and r.type != HELM_RELEASE


def manifest_filename(manifest: dict) -> str:
    meta = manifest.get("metadata", {})
    parts = [manifest["kind"], meta.get("namespace"), meta["name"]]
    return "-".join(p for p in parts if p).lower() + ".yaml"


def helm_document(r: Registration) -> dict:
    inputs = reveal(r.inputs)
    chart, repository = inputs["chart"], inputs.get("repositoryOpts", {}).get("repo")
    if chart.startswith("oci://"):  # an OCI chart is named by its whole reference (infra/charts.py)
        repository, chart = chart.rsplit("/", 1)
    return {
        "name": inputs.get("name", r.name),
        "namespace": inputs.get("namespace"),
        "chart": chart,
        "version": inputs.get("version"),
        "repository": repository,
        "values": inputs.get("values", {}),
    }


class _Dumper(yaml.SafeDumper):
    pass


# Multi-line strings (scripts, JSON documents) as literal blocks, readable in a review.
_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


FIRST = ("apiVersion", "kind", "metadata", "name")


def canonical(value):
    """Keys in a stable order (the wire form's maps have none), so that renders diff cleanly:
    apiVersion, kind, metadata and name first, the rest alphabetical."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (FIRST.index(k) if k in FIRST else len(FIRST), k))
        return {k: canonical(value[k]) for k in keys}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def dump_yaml(doc: dict) -> str:
    return yaml.dump(canonical(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=100)


def write(run: Run, out: Path) -> Counter:
    """Writes the run under out (replacing what an earlier render wrote there)."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    try:
        (staging / "kubernetes").mkdir()
        (staging / "helm").mkdir()
        others, counts = [], Counter()
        for r in run.resources:
            if not r.custom:
                continue
            counts[r.type] += 1
            if r.type == HELM_RELEASE:
                doc = helm_document(r)
                (staging / "helm" / f"{doc['name']}.yaml").write_text(dump_yaml(doc))
            elif is_kubernetes_object(r):
                manifest = reveal(r.inputs)
                path = staging / "kubernetes" / manifest_filename(manifest)
                if path.exists():
                    raise RuntimeError(f"two Kubernetes objects render to {path.name}")
                path.write_text(dump_yaml(manifest))
            else:
                others.append({"type": r.type, "name": r.name, "inputs": reveal(r.inputs)})
        # Sorted: resources register concurrently, and a render must not change between runs.
        others.sort(key=lambda o: (o["type"], o["name"]))
        (staging / "aws.json").write_text(json.dumps(canonical(others), indent=2) + "\n")
        (staging / "outputs.json").write_text(json.dumps(canonical(reveal(run.outputs)), indent=2) + "\n")
        for name in OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts
