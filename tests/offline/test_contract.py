"""The contract of every stack file, tested on stack files nobody wrote by hand: the shipped
ones, mutated (types, ranges, names, lists, YAML structure). `render` either refuses one with
exit 2, each problem named, no traceback, nothing written, no secret shown; or it renders
objects that are valid and schedulable.

A fixed number of examples, derandomized, keeps CI fast and repeatable; for a longer hunt:
`HYPOTHESIS_PROFILE=hunt make test` (random, 500 examples)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from components.__main__ import main
from components.planning.catalog import CATALOG

from ..charts import unknown_keys, validate_manifest
from ..conftest import ROOT, STACKS

TOKEN = "hf_PropertyTestToken0123456789"
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("hunt", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DOCS = {s: yaml.safe_load((ROOT / f"Pulumi.{s}.yaml").read_text()) for s in STACKS}
WORDS = ["0.0.0.0/1", "128.0.0.0/1", "::/0", "10.0.0.0/8", "52.0.0.0/8", "203.0.113.9/32",
         "default", "default-deny", "x", "x-download", "system", "a" * 33, "a" * 63, "Qwen_7B", "7b",
         "ghcr.io/huggingface/text-generation-inference:latest", "ghcr.io/a/b@sha256:" + "0" * 64,
         "g5.xlarge", "g6e.12xlarge", "p5.48xlarge", "m7i.large", "1.35", "1.36", "1.34", "SPOT",
         "awq", "fp8", "eetq", "bitsandbytes", "float16", "internet-facing", "internal", "green",
         "blue", "main", "0" * 40, "Qwen/Qwen2.5-72B-Instruct", "subnet-0123456789abcdef0",
         "vpc-0123456789abcdef0", "", " ", "\t", "é", "provisioned", "15d",
         "tgi", "vllm", "fp8_per_tensor", "awq_marlin", "vllm/vllm-openai:latest", "vllm/vllm-openai:v0.33.0"]
SCALARS = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, 8, 4096, 32768, 2**31 - 1, 2**31, 10**12]),
    st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS), st.text(max_size=40), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "min", "max", "id", "blue", "green", "cidr", "extra"]), inner, max_size=3)), max_leaves=6)


def _places(node, out):
    """Every (container, key) of the tree, the containers themselves included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append((node, key))
        _places(value, out)
    return out


@st.composite
def stack_files(draw) -> bytes:
    doc = copy.deepcopy(DOCS[draw(st.sampled_from(STACKS))])
    config = doc["config"]
    config["llmserve:hfToken"] = TOKEN
    for _ in range(draw(st.integers(1, 3))):
        node, key = draw(st.sampled_from(_places(config, [])))
        action = draw(st.sampled_from(["near", "near", "near", "replace", "replace", "delete", "copy", "add"]))
        if action == "near":  # a plausible edit: another number nearby, another known word
            old = node[key]
            if isinstance(old, bool) or not isinstance(old, (int, str)):
                continue
            node[key] = (draw(st.integers(min(old // 2 - 1, old * 4), max(old // 2 - 1, old * 4 + 2))) if isinstance(old, int)
                         else draw(st.sampled_from(WORDS + [old + "-2", old[:-1] or old])))
        elif action == "replace":
            node[key] = draw(VALUES)
        elif action == "delete":
            del node[key]
        elif action == "copy" and isinstance(node, list):
            node.append(copy.deepcopy(node[key]))
        elif isinstance(node, dict):
            node[draw(st.sampled_from(["extra", "name", "maxSize", "slots", "active", "engine",
                                        "llmserve:ingress"]))] = draw(VALUES)
    text = yaml.safe_dump(doc, allow_unicode=True)
    if draw(st.integers(0, 9)) == 0:  # the YAML itself broken: a character deleted or inserted
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(["", "\t", ":", "\"", "&a ", "*a", "- ", "\n  "])) + text[at + 1:]
    return text.encode()


def _run(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return code, stdout.getvalue(), stderr.getvalue()


def _schedulable(out: Path) -> None:
    """Independently of the planner: what each node group can hold, from the rendered objects."""
    aws = json.loads((out / "aws.json").read_text())
    groups = {r["inputs"]["labels"]["llmserve/node-group"]: r["inputs"] for r in aws
              if r["type"] == "aws:eks/nodeGroup:NodeGroup"}
    operator = yaml.safe_load((out / "helm" / "gpu-operator.yaml").read_text())["values"]
    sharing = operator.get("devicePlugin", {}).get("config", {}).get("data", {}).get("any")
    share = yaml.safe_load(sharing)["sharing"]["timeSlicing"]["resources"][0]["replicas"] if sharing else 1
    objects = [yaml.safe_load(p.read_text()) for p in (out / "kubernetes").glob("*.yaml")]
    hpa_min = {o["spec"]["scaleTargetRef"]["name"]: o["spec"]["minReplicas"] for o in objects
               if o["kind"] == "HorizontalPodAutoscaler"}
    need: dict[str, int] = {}
    for o in objects:
        if o["kind"] != "Deployment" or o["metadata"]["namespace"] != "llm":
            continue
        pod = o["spec"]["template"]["spec"]
        [group] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
        [c] = pod["containers"]
        gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
        smallest = min((CATALOG[t] for t in groups[group]["instanceTypes"]), key=lambda i: i.gpus)
        assert gpus <= smallest.gpus * share, o["metadata"]["name"]
        need[group] = need.get(group, 0) + gpus * hpa_min.get(o["metadata"]["name"], o["spec"].get("replicas", 1))
    for group, gpus in need.items():
        g = groups[group]
        per_node = min(CATALOG[t].gpus for t in g["instanceTypes"]) * share
        assert gpus <= g["scalingConfig"]["maxSize"] * per_node, group


@given(stack_files())
def test_render_either_refuses_cleanly_or_builds_what_works(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("prop")
    stack_file, out = tmp / "Pulumi.prop.yaml", tmp / "out"
    stack_file.write_bytes(text)
    # `plan` reads the same file without running the program: the same contract.
    code, stdout, stderr = _run("plan", "--stack", "prop", "--config-file", str(stack_file))
    assert code in (0, 2) and "Traceback" not in stderr and TOKEN not in stdout + stderr, stderr
    code, stdout, stderr = _run("render", "--stack", "prop", "--config-file", str(stack_file), "--out", str(out))
    event(f"exit {code}")
    assert "Traceback" not in stderr and TOKEN not in stdout + stderr
    assert code in (0, 2), stderr
    if code == 2:
        assert stderr.startswith("error: ") and not out.exists()
        lines = stderr.splitlines()[1:] or stderr.splitlines()
        for line in lines:  # each problem: where (a setting path, the file), then what is allowed
            assert re.match(r"^\s*(error: )?\S.*?: \S", line), line
        return
    files = sorted((out / "kubernetes").glob("*.yaml"))
    assert files and all(TOKEN not in p.read_text() for p in out.rglob("*") if p.is_file())
    version = yaml.safe_load(text).get("config", {}).get("llmserve:cluster", {}).get("kubernetesVersion", "1.35")
    for path in files:
        validate_manifest(yaml.safe_load(path.read_text()), f"{version}.0")
    for path in (out / "helm").glob("*.yaml"):
        release = yaml.safe_load(path.read_text())
        assert unknown_keys(release["chart"], release["values"]) == [], path.name
    _schedulable(out)
