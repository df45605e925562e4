"""`python -m components render`: files of every stack, validated; bad input; secrets."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ..charts import validate_manifest
from ..conftest import ALL_STACKS, ROOT, STACKS, cli, stack_settings, validate_settings


def test_shipped_stacks_are_dev_and_prod():
    assert {"dev", "prod"} <= set(STACKS)


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_every_kubernetes_object_passes_strict_validation(rendered, stack):
    version = validate_settings(stack_settings(stack)).cluster.kubernetes_version + ".0"
    files = sorted((rendered[stack] / "kubernetes").glob("*.yaml"))
    assert files
    for path in files:
        try:
            validate_manifest(yaml.safe_load(path.read_text()), version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{path.name}: {str(exc).splitlines()[0]}")


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_aws_resources_and_outputs(rendered, stack):
    resources = json.loads((rendered[stack] / "aws.json").read_text())
    types = {r["type"] for r in resources}
    assert {"aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:efs/fileSystem:FileSystem",
            "aws:ec2/launchTemplate:LaunchTemplate"} <= types
    assert not any(t.startswith("kubernetes:") for t in types)
    assert all(set(r) == {"type", "name", "inputs"} for r in resources)
    # In a stable order, so that a review diff of two renders shows only real changes.
    keys = [(r["type"], r["name"]) for r in resources]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    outputs = json.loads((rendered[stack] / "outputs.json").read_text())
    assert outputs["clusterName"] == f"llmserve-{stack}"
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["efsId"].startswith("fs-")
    provider = next(r for r in resources if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "[secret]"


def test_manifests_are_in_wire_form(rendered):
    sc = yaml.safe_load((rendered["dev"] / "kubernetes" / "storageclass-efs-model-cache.yaml").read_text())
    assert sc["apiVersion"] == "storage.k8s.io/v1" and sc["kind"] == "StorageClass"
    assert sc["metadata"]["name"] == "efs-model-cache"


def _bad_stack(tmp_path: Path, change) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    change(doc["config"])
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_invalid_config_exits_2_names_the_setting_and_writes_nothing(tmp_path):
    stack_file = _bad_stack(tmp_path, lambda c: c["llmserve:models"][0].update(quantize="int4"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    result = cli("render", "--stack", "bad", "--config-file", str(stack_file), "--out", str(out))
    assert result.returncode == 2
    assert "models[0].quantize: 'int4' is not one of awq, compressed-tensors" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_unknown_stack_exits_2(tmp_path):
    result = cli("render", "--stack", "staging", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "no stack file" in result.stderr and "dev, prod" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_secrets_never_reach_rendered_files(tmp_path):
    token, key = "hf_PLAINTEXTTOKEN123", "api-key-PLAINTEXT-456"
    stack_file = _bad_stack(tmp_path, lambda c: (c.pop("llmserve:gateway"), c.update(
        {"llmserve:hfToken": token, "llmserve:apiKey": key})))  # the shared key: without the gateway
    out = tmp_path / "out"
    result = cli("render", "--stack", "secrets", "--config-file", str(stack_file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert token not in text and key not in text, path
    assert token not in result.stdout + result.stderr and key not in result.stdout + result.stderr


def test_encrypted_stack_values_render(tmp_path):
    """A stack file whose secrets are `secure:` ciphertext (as `pulumi config set --secret`
    writes them) renders without the passphrase: secrets are never shown anyway."""
    stack_file = _bad_stack(tmp_path, lambda c: c.update(
        {"llmserve:teamKeys": {"platform": {"secure": "v1:0Zw9kTEr5PGhHnTk:5ZIIfb2nQf1Yyq4UEEQG3VYlm6E="}}}))
    result = cli("render", "--stack", "enc", "--config-file", str(stack_file), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr


def test_rerender_replaces_earlier_output(tmp_path, rendered):
    out = tmp_path / "out"
    (out / "kubernetes").mkdir(parents=True)
    (out / "kubernetes" / "stale.yaml").write_text("kind: Stale\n")
    assert cli("render", "--stack", "dev", "--out", str(out)).returncode == 0
    assert not (out / "kubernetes" / "stale.yaml").exists()
    assert sorted(p.name for p in (out / "kubernetes").iterdir()) == sorted(
        p.name for p in (rendered["dev"] / "kubernetes").iterdir())


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_helm_releases_are_written_one_file_each(rendered, stack):
    files = sorted((rendered[stack] / "helm").glob("*.yaml"))
    gateway = ["ai-gateway", "ai-gateway-crds", "cert-manager", "envoy-gateway"]
    assert sorted(f.stem for f in files) == sorted(
        ["aws-load-balancer-controller", "cluster-autoscaler", "gpu-operator", "kube-prometheus-stack",
         "prometheus-adapter"] + (gateway if stack_settings(stack).get("gateway") else []))
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert set(doc) == {"name", "namespace", "chart", "version", "repository", "values"}
        assert doc["name"] == f.stem and doc["repository"].startswith(("https://", "oci://"))
