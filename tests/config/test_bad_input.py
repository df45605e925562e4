"""Bad input through the front door: `render` of a broken stack file exits 2, names the setting
and what is allowed, prints no traceback and writes nothing. One row per mistake a platform
engineer makes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from components.__main__ import main

from ..conftest import ROOT, cli

DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())


def model(**changes):
    return lambda c: c["llmserve:models"][0].update(changes)


def group(**changes):
    return lambda c: c["llmserve:gpuNodeGroups"][0].update(changes)


def cluster(**changes):
    return lambda c: c["llmserve:cluster"].update(changes)


def vpc(**changes):
    return lambda c: c["llmserve:cluster"]["vpc"].update(changes)


def setting(key, value):
    return lambda c: c.update({f"llmserve:{key}": value})


INGRESS = {"domain": "llm.example.com", "allowedCidrs": ["10.0.0.0/8"],
           "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-0000-0000-000000000000"}

def second_model(**changes):
    """A copy of the first model, changed."""
    return lambda c: c["llmserve:models"].append({**c["llmserve:models"][0], **changes})


CASES = [
    # names that would clash: a model named like another model's slot Service
    (second_model(name="qwen-7b-green"), "models[0].name: the Service of its green slot is named qwen-7b-green"),
    (second_model(name="qwen-7b-writer"), "models[0].name: the ServiceAccount of its S3 download Jobs is named qwen-7b-writer"),
    # types
    (group(minSize="two"), "gpuNodeGroups[0].minSize: 'two' is not allowed: input should be a valid integer"),
    (cluster(kubernetesVersion=1.35), "cluster.kubernetesVersion: write the version as a string in quotes"),
    (setting("models", {"name": "x"}), "models: {'name': 'x'} is not allowed: input should be a valid list"),
    (setting("apiKey", {"nested": "value"}), "apiKey: must be a non-empty string"),
    # ranges
    (group(diskSizeGiB=50), "gpuNodeGroups[0].diskSizeGiB: 50 is not allowed: input should be greater than or equal to 100"),
    (vpc(azCount=1), "cluster.vpc.azCount: 1 is not allowed: input should be greater than or equal to 2"),
    (vpc(cidr="10.0.0.0/8"), "cluster.vpc.cidr: '10.0.0.0/8': the prefix must be /16 to /20"),
    (model(replicas={"min": 0, "max": 2}), "models[0].replicas.min: 0 is not allowed"),
    (cluster(logRetentionDays=45), "cluster.logRetentionDays: 45 is not one of 1, 3, 5, 7, 14, 30, 60, 90"),
    # enumerations
    (model(quantize="int4"), "models[0].quantize: 'int4' is not one of awq, compressed-tensors, eetq, exl2, gptq, marlin"),
    (group(capacityType="RESERVED"), "gpuNodeGroups[0].capacityType: 'RESERVED' is not one of ON_DEMAND, SPOT"),
    (setting("storage", {"throughputMode": "max-io"}), "storage.throughputMode: 'max-io' is not one of elastic, bursting, provisioned"),
    (group(amiType="AL2_x86_64_GPU"), "gpuNodeGroups[0].amiType: 'AL2_x86_64_GPU' is not one of AL2023_x86_64_NVIDIA, BOTTLEROCKET_x86_64_NVIDIA"),
    # unsupported versions and wrong instance types
    (cluster(kubernetesVersion="1.34"), "cluster.kubernetesVersion: '1.34' is not one of 1.35, 1.36"),
    (group(instanceTypes=["m7i.large"]), "gpuNodeGroups[0].instanceTypes[0]: 'm7i.large' is not a GPU instance type of the catalog"),
    (setting("systemNodeGroup", {"instanceTypes": ["p5.48xlarge"]}), "systemNodeGroup.instanceTypes[0]: 'p5.48xlarge' is a GPU instance"),
    (model(image="ghcr.io/huggingface/text-generation-inference:latest"), "models[0].image: 'ghcr.io/huggingface/text-generation-inference:latest' is not pinned"),
    # cross-field rules
    (group(desiredSize=5), "gpuNodeGroups[0].desiredSize: 5 must be between minSize (0) and maxSize (2)"),
    (model(dtype="float16", quantize="awq"), "models[0].dtype: cannot be set together with quantize 'awq'"),
    (model(maxInputTokens=9000), "models[0].maxInputTokens: 9000 must be less than maxTotalTokens (8192)"),
    (setting("storage", {"throughputMode": "provisioned"}), "storage.provisionedThroughputMibps: required with throughputMode 'provisioned'"),
    (vpc(id="vpc-0123456789abcdef0"), "cluster.vpc: set either cidr (a new VPC) or id (an existing VPC), not both"),
    (model(slots={"blue": {}, "green": {}}), "models[0].active: required with two slots"),
    # unknown keys
    (setting("modle", []), "modle: unknown setting; allowed here: addons, cluster, gateway, gpuNodeGroups, images, ingress"),
    (model(replica=2), "models[0].replica: unknown setting; allowed here:"),
    (cluster(publicAcessCidrs=["10.0.0.0/8"]), "cluster.publicAcessCidrs: unknown setting; allowed here: accessEntries"),
    # names that clash or do not resolve
    (lambda c: c["llmserve:models"].append({**c["llmserve:models"][0]}), "models[1].name: 'qwen-7b' is used twice"),
    (group(name="system"), "gpuNodeGroups[0].name: 'system' is the name of the system node group"),
    (model(nodeGroup="h100"), "models[0].nodeGroup: 'h100' is not one of gpu-24g"),
    (model(name="Qwen_7B"), "models[0].name: 'Qwen_7B' is not a DNS-1035 label"),
    # security
    (cluster(publicAccessCidrs=["0.0.0.0/0"]), "cluster.publicAccessCidrs[0]: '0.0.0.0/0' opens the Kubernetes API to the whole internet"),
    (setting("ingress", {**INGRESS, "allowedCidrs": []}), "ingress.allowedCidrs: [] is not allowed"),
    (setting("ingress", {**INGRESS, "certificateArn": "my-cert"}), "ingress.certificateArn: 'my-cert' is not an ACM certificate ARN"),
    # models that cannot work
    (model(id="Qwen/Qwen2.5-72B-Instruct"), "models[0]: Qwen/Qwen2.5-72B-Instruct does not fit node group gpu-24g"),
    (model(id="acme/not-locked"), "models[0].id: acme/not-locked is not in models.lock.yaml: run `python -m components lock --stack bad`"),
    (model(maxTotalTokens=65536, maxInputTokens=4096), "models[0]: Qwen/Qwen2.5-7B-Instruct does not fit node group gpu-24g"),
    (model(revision="0" * 40), "models[0].revision: Qwen/Qwen2.5-7B-Instruct at '0000000000000000000000000000000000000000' is not in models.lock.yaml (locked: 'main')"),
    (model(revision="v2"), "models[0].revision: Qwen/Qwen2.5-7B-Instruct at 'v2' is not in models.lock.yaml (locked: 'main'): run `python -m components lock --stack bad`"),
    (setting("addons", {"gpuTimeSlicingReplicas": 1}), "addons.gpuTimeSlicingReplicas: 1 is not allowed"),
    # accepted once, can never run (issue #11)
    # (an L4 holds ~84k tokens of KV cache besides Qwen2.5-7B, its context 32768: the planned total)
    (model(maxTotalTokens=None, maxInputTokens=32768),
     "models[0]: Qwen/Qwen2.5-7B-Instruct does not fit node group gpu-24g (g6.xlarge, 1 shard(s)): maxInputTokens 32768 must be less than maxTotalTokens"),
    (model(replicas={"min": 3, "max": 3}),
     "gpuNodeGroups[0].maxSize: 2 node(s) of 1 GPUs hold 2; the minimum replicas of qwen-7b need 3"),
    (lambda c: c["llmserve:models"].append({**c["llmserve:models"][0], "name": "qwen-7b-b", "replicas": {"min": 2, "max": 2}}),
     "gpuNodeGroups[0].maxSize: 2 node(s) of 1 GPUs hold 2; the minimum replicas of qwen-7b, qwen-7b-b need 3"),
    (setting("addons", {"gpuTimeSlicingReplicas": 4}), "addons.gpuTimeSlicingReplicas: TGI cannot share a GPU between pods"),
    (lambda c: (setting("ingress", {**INGRESS, "scheme": "internet-facing", "allowedCidrs": ["198.51.100.7/32"]})(c),
                c["llmserve:cluster"].update(vpc={"id": "vpc-0123456789abcdef0",
                                                  "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]})),
     "ingress.scheme: an internet-facing load balancer needs public subnets"),
    (cluster(name="a" * 34), "cluster.name: '" + "a" * 34 + "' is not a DNS-1123 label of at most 33 characters"),
    (lambda c: (cluster(name="a" * 30)(c), group(name="g" * 22)(c), model(nodeGroup="g" * 22)(c)),
     "gpuNodeGroups[0].name: '" + "g" * 22 + "' with the cluster name '" + "a" * 30 + "' names the EKS node group"),
    (model(image="ghcr.io/huggingface/text-generation-inference@sha256:abc123"),
     "models[0].image: 'ghcr.io/huggingface/text-generation-inference@sha256:abc123' is not an image reference"),
    (model(image="GHCR.io/HuggingFace/TGI:3.3.7"), "models[0].image: 'GHCR.io/HuggingFace/TGI:3.3.7' is not an image reference"),
    (model(replicas={"min": 1, "max": 2**31}), "models[0].replicas.max: 2147483648 is not allowed: input should be less than or equal to 2147483647"),
    (model(name="7b"), "models[0].name: '7b' is not a DNS-1035 label"),
    (model(name="default"), "models[0].name: 'default' names the ServiceAccount every namespace has"),
    (setting("apiKey", "short"), "apiKey: at least 16 characters"),
    # The application log group masks a fixed span after the key TGI logs (infra/cluster.py).
    (setting("apiKey", "k" * 129), "apiKey: at most 128 characters of a bearer token"),
    (setting("apiKey", 'key-with-a-"quote"-0123'), "apiKey: at most 128 characters of a bearer token"),
    (cluster(publicAccessCidrs=["0.0.0.0/1", "128.0.0.0/1"]),
     "cluster.publicAccessCidrs: together these blocks open at least as many public IPv4 addresses as a /1"),
    (setting("ingress", {**INGRESS, "scheme": "internet-facing", "allowedCidrs": ["52.0.0.0/8"]}),
     "ingress.allowedCidrs: together these blocks open at least as many public IPv4 addresses as a /8"),
    (model(timeout=float("nan")), "models[0].timeout: unknown setting"),
    (model(replicas={"min": 1, "max": 2}, evictions="allow"),  # dev's model, behind its gateway
     "models[0].replicas.min: 1 replica of a model behind the ingress or gateway goes down on every node roll"),
    (setting("monitoring", {"alerts": {"p95LatencySeconds": float("inf")}}), "monitoring.alerts.p95LatencySeconds: inf is not allowed"),
    # engines and their quantize modes
    (model(engine="sglang"), "models[0].engine: 'sglang' is not one of tgi, vllm"),
    (model(engine="vllm", quantize="eetq"),
     "models[0].quantize: 'eetq' is not one of vLLM's modes (awq, awq_marlin, gptq, gptq_marlin, compressed-tensors, fp8_per_tensor"),
    (model(quantize="fp8_per_tensor"), "models[0].quantize: 'fp8_per_tensor' is not one of TGI's modes (awq,"),
    (model(slots={"blue": {}, "green": {"engine": "vllm", "quantize": "fp8"}}, active="blue"),
     "models[0].slots.green.quantize: 'fp8' is not one of vLLM's modes"),
    (model(quantize="eetq", slots={"blue": {}, "green": {"engine": "vllm"}}, active="blue"),
     "models[0].quantize: 'eetq' is not one of vLLM's modes (awq, awq_marlin, gptq, gptq_marlin, compressed-tensors, "
     "fp8_per_tensor, fp8_per_channel, fp8_per_block), the engine of slots.green"),
    (model(slots={"blue": {"engine": "tensorrt"}}), "models[0].slots.blue.engine: 'tensorrt' is not one of tgi, vllm"),
    (model(engine=["vllm"]), "models[0].engine: ['vllm'] is not one of tgi, vllm"),
    (model(engine="vllm", image="vllm/vllm-openai:latest"), "models[0].image: 'vllm/vllm-openai:latest' is not pinned"),
]


def _write(tmp_path: Path, change) -> Path:
    doc = copy.deepcopy(DEV)
    change(doc["config"])
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_there_are_enough_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("change,expected", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_render_refuses_bad_input(tmp_path, capsys, change, expected):
    out = tmp_path / "out"
    code = main(["render", "--stack", "bad", "--config-file", str(_write(tmp_path, change)),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert expected in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()


def test_exit_code_and_stderr_of_the_real_command(tmp_path):
    """The same through a real process: exit status 2, one line per error, nothing written."""
    stack = _write(tmp_path, lambda c: (model(quantize="int4")(c), group(capacityType="RESERVED")(c)))
    out = tmp_path / "out"
    result = cli("render", "--stack", "bad", "--config-file", str(stack), "--out", str(out))
    assert result.returncode == 2
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert lines[0] == "error: invalid stack configuration:"
    assert any(line.startswith("gpuNodeGroups[0].capacityType:") for line in lines)
    assert any(line.startswith("models[0].quantize:") for line in lines)
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("front", ["ingress", "gateway"])
def test_an_internal_load_balancer_on_an_existing_vpc_needs_load_balancer_subnets(tmp_path, capsys, front):
    """The pods behind it admit the load balancer's subnets: they must be known."""
    existing = {"id": "vpc-0123456789abcdef0",
                "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]}

    def change(c):
        c["llmserve:cluster"].update(vpc=existing)
        if front == "ingress":
            del c["llmserve:gateway"]
            setting("ingress", INGRESS)(c)
        else:
            c["llmserve:gateway"]["allowedCidrs"] = ["10.0.0.0/8"]
    code = main(["render", "--stack", "bad", "--config-file", str(_write(tmp_path, change)), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines()[1:] == [
        f"  cluster.vpc.loadBalancerSubnetIds: required with an internal {front} on an existing VPC: small "
        "subnets (/27 or larger, one per AZ) for the load balancers only; the "
        f"{'serving' if front == 'ingress' else 'gateway'} pods admit their addresses"]
