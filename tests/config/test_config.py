"""Stack config: the shipped stacks are valid and shaped as promised; every invalid setting is
reported by its path, with what is allowed, before any resource is registered."""

from __future__ import annotations

import copy
import json

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from components import config
from components.config import ConfigError
from components.engines.vocabulary import VOCABULARY
from components.offline import mockrun
from components.planning.catalog import CATALOG

from ..conftest import run_settings, stack_settings, validate_settings


def test_dev_is_a_cheap_single_gpu_spot_setup():
    s = validate_settings(stack_settings("dev"))
    [group] = s.gpu_node_groups
    assert group.capacity_type == "SPOT"
    assert all(CATALOG[t].gpus == 1 for t in group.instance_types)
    assert s.cluster.vpc.single_nat_gateway
    assert not s.storage.protect


def test_prod_is_production_shaped():
    s = validate_settings(stack_settings("prod"))
    assert {g.capacity_type for g in s.gpu_node_groups} == {"ON_DEMAND"}
    assert s.cluster.vpc.az_count >= 3 and not s.cluster.vpc.single_nat_gateway
    assert len(s.models) > 1
    # Stricter access than dev: single addresses only.
    assert s.cluster.public_access_cidrs
    assert all(c.endswith("/32") for c in s.cluster.public_access_cidrs)
    assert s.storage.backup and s.storage.protect and s.cluster.deletion_protection


def test_defaults():
    s = validate_settings({
        "cluster": {"vpc": {"cidr": "10.0.0.0/16"},
                    "accessEntries": [{"principalArn": "arn:aws:iam::123456789012:role/deploy", "access": "admin"}]},
        "monitoring": {"runbookBaseUrl": "https://example.com/runbook.md",
                       "alerting": {"critical": "none", "warning": "none", "heartbeat": False}},
        "gpuNodeGroups": [{"name": "gpu", "instanceTypes": ["g5.xlarge"], "minSize": 0,
                           "maxSize": 1, "desiredSize": 0}],
    })
    assert s.cluster.kubernetes_version == "1.35"
    assert s.cluster.public_access_cidrs == []  # private endpoint only unless listed
    group = s.gpu_node_groups[0]
    assert group.ami_type == "AL2023_x86_64_NVIDIA"
    assert group.disk_size_gi_b >= 100
    assert group.capacity_type == "ON_DEMAND"
    assert s.storage.throughput_mode == "elastic"
    assert s.system_node_group.min_size >= 1


def _set(path: str, value):
    """A change to the dev settings: set the value at a dotted path (list indexes as numbers)."""
    def change(settings: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = settings
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return change


def _delete(path: str):
    def change(settings: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = settings
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return change


def _append(path: str, value):
    def change(settings: dict) -> None:
        settings[path].append(copy.deepcopy(value))
    return change


MODEL = {"name": "second", "id": "org/model", "nodeGroup": "gpu-24g"}

INVALID = [
    (_set("models.0.quantize", "int4"),
     "models[0].quantize: 'int4' is not one of awq, compressed-tensors, eetq, exl2, gptq, marlin, "
     "bitsandbytes, bitsandbytes-nf4, bitsandbytes-fp4, fp8"),
    (_set("models.0.dtype", "float8"), "models[0].dtype: 'float8' is not one of float16, bfloat16"),
    (lambda s: s["models"][0].update(dtype="float16", quantize="awq"),
     "models[0].dtype: cannot be set together with quantize 'awq'"),
    (_set("models.0.name", "Qwen_7B"), "models[0].name: 'Qwen_7B' is not a DNS-1035 label"),
    (_set("models.0.id", "not a repo"), "models[0].id: 'not a repo' is not a Hugging Face model repo id"),
    (_set("models.0.nodeGroup", "h100"), "models[0].nodeGroup: 'h100' is not one of gpu-24g"),
    (_set("models.0.maxInputTokens", 8192), "models[0].maxInputTokens: 8192 must be less than maxTotalTokens (8192)"),
    (_set("models.0.replicas", {"min": 3, "max": 2}), "models[0].replicas.max: 2 is less than min (3)"),
    (_set("models.0.replicas.min", 0), "models[0].replicas.min: 0 is not allowed: input should be greater than or equal to 1"),
    (_set("models.0.replica", 2), "models[0].replica: unknown setting; allowed here:"),
    (_append("models", {**MODEL, "name": "qwen-7b"}), "models[1].name: 'qwen-7b' is used twice"),
    (_set("gpuNodeGroups.0.instanceTypes", ["m5.large"]),
     "gpuNodeGroups[0].instanceTypes[0]: 'm5.large' is not a GPU instance type of the catalog; allowed: g4dn.xlarge"),
    (_set("gpuNodeGroups.0.capacityType", "RESERVED"),
     "gpuNodeGroups[0].capacityType: 'RESERVED' is not one of ON_DEMAND, SPOT"),
    (_set("gpuNodeGroups.0.amiType", "AL2_x86_64_GPU"),
     "gpuNodeGroups[0].amiType: 'AL2_x86_64_GPU' is not one of AL2023_x86_64_NVIDIA, BOTTLEROCKET_x86_64_NVIDIA"),
    (_set("gpuNodeGroups.0.diskSizeGiB", 50),
     "gpuNodeGroups[0].diskSizeGiB: 50 is not allowed: input should be greater than or equal to 100"),
    (_set("gpuNodeGroups.0.desiredSize", 5),
     "gpuNodeGroups[0].desiredSize: 5 must be between minSize (0) and maxSize (2)"),
    (_set("gpuNodeGroups.0.minSize", "two"),
     "gpuNodeGroups[0].minSize: 'two' is not allowed: input should be a valid integer"),
    (_set("gpuNodeGroups.0.name", "system"), "gpuNodeGroups[0].name: 'system' is the name of the system node group"),
    (_set("gpuNodeGroups", []), "gpuNodeGroups: [] is not allowed: list should have at least 1 item"),
    (_set("systemNodeGroup.instanceTypes", ["g5.xlarge"]),
     "systemNodeGroup.instanceTypes[0]: 'g5.xlarge' is a GPU instance"),
    (_set("cluster.kubernetesVersion", "1.34"), "cluster.kubernetesVersion: '1.34' is not one of 1.35, 1.36"),
    (_set("cluster.kubernetesVersion", 1.35), "cluster.kubernetesVersion: write the version as a string in quotes"),
    (_set("cluster.publicAccessCidrs", ["0.0.0.0/0"]),
     "cluster.publicAccessCidrs[0]: '0.0.0.0/0' opens the Kubernetes API to the whole internet"),
    (_set("cluster.publicAccessCidrs", ["10.0.0.300/32"]), "cluster.publicAccessCidrs[0]: '10.0.0.300/32' is not a CIDR block"),
    (_set("cluster.accessEntries", [{"principalArn": "admin", "access": "admin"}]),
     "cluster.accessEntries[0].principalArn: 'admin' is not an IAM role or user ARN"),
    (_set("cluster.accessEntries", [{"principalArn": "arn:aws:iam::123456789012:role/ci", "access": "view"}]),
     "cluster.accessEntries: no admin of the whole cluster: list the role that runs `pulumi up`"),
    (_set("cluster.accessEntries", [{"principalArn": "arn:aws:iam::123456789012:role/ci", "access": "owner"}]),
     "cluster.accessEntries[0].access: 'owner' is not one of admin, view"),
    (_set("cluster.accessEntries", []), "cluster.accessEntries: [] is not allowed"),
    (_set("monitoring.runbookBaseUrl", "docs/runbook.md"), "monitoring.runbookBaseUrl: 'docs/runbook.md' is not an absolute https URL"),
    (_delete("monitoring.runbookBaseUrl"), "monitoring.runbookBaseUrl: required: the absolute https URL"),
    (_set("cluster.permissionsBoundaryArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
     "cluster.permissionsBoundaryArn: 'arn:aws:iam::aws:policy/AdministratorAccess' is not a customer-managed IAM policy ARN"),
    (_set("cluster.logRetentionDays", 10), "cluster.logRetentionDays: 10 is not one of 1, 3, 5, 7, 14"),
    (_set("cluster.vpc.azCount", 1), "cluster.vpc.azCount: 1 is not allowed: input should be greater than or equal to 2"),
    (_set("cluster.vpc.cidr", "10.0.0.0/24"), "cluster.vpc.cidr: '10.0.0.0/24': the prefix must be /16 to /20"),
    (_set("cluster.vpc.id", "vpc-0123456789abcdef0"), "cluster.vpc: set either cidr (a new VPC) or id (an existing VPC), not both"),
    (_set("cluster.vpc", {"id": "vpc-0123456789abcdef0", "privateSubnetIds": ["subnet-0123456789abcdef0"]}),
     "cluster.vpc.privateSubnetIds: an existing VPC needs private subnets in at least 2 AZs"),
    (_set("cluster.vpc", {"id": "vpc-0123456789abcdef0", "privateSubnetIds": ["subnet-1", "subnet-2"]}),
     "cluster.vpc.privateSubnetIds[0]: 'subnet-1' is not a subnet id"),
    (_delete("cluster.vpc"), "cluster.vpc: required"),
    (_set("storage.throughputMode", "max-io"), "storage.throughputMode: 'max-io' is not one of elastic, bursting, provisioned"),
    (_set("storage.throughputMode", "provisioned"),
     "storage.provisionedThroughputMibps: required with throughputMode 'provisioned'"),
    (_set("storage.backups", True), "storage.backups: unknown setting; allowed here: backup, protect, provisionedThroughputMibps, throughputMode"),
    (_set("modles", []), "modles: unknown setting; allowed here: addons, cluster, gateway, gpuNodeGroups, images, ingress, models, monitoring, storage, systemNodeGroup"),
]


@pytest.mark.parametrize("change,expected", INVALID, ids=[e[1].split(":")[0] for e in INVALID])
def test_invalid_setting_is_named_with_what_is_allowed(dev_settings, change, expected):
    change(dev_settings)
    with pytest.raises(ConfigError) as err:
        validate_settings(dev_settings)
    assert any(line.startswith(expected) for line in err.value.errors), err.value.errors


def test_every_error_is_reported_at_once(dev_settings):
    dev_settings["models"][0]["quantize"] = "int4"
    dev_settings["gpuNodeGroups"][0]["capacityType"] = "RESERVED"
    dev_settings["storage"]["throughputMode"] = "max-io"
    with pytest.raises(ConfigError) as err:
        validate_settings(dev_settings)
    assert [e.split(":")[0] for e in err.value.errors] == [
        "gpuNodeGroups[0].capacityType", "storage.throughputMode", "models[0].quantize"]


def test_invalid_config_stops_the_program_before_any_resource(dev_settings):
    dev_settings["models"][0]["quantize"] = "int4"
    run = mockrun.Run()
    with pytest.raises(ConfigError, match=r"models\[0\]\.quantize"):
        run_settings(dev_settings, run=run)
    assert run.resources == []


def test_missing_region_is_reported(dev_settings):
    config = {f"llmserve:{k}": json.dumps(v) for k, v in dev_settings.items()}
    with pytest.raises(ConfigError, match=r"aws:region: required"):
        mockrun.run_program("test", config)


def test_secret_must_be_a_string_and_is_not_echoed(dev_settings):
    dev_settings["apiKey"] = {"value": "hunter2-secret"}
    with pytest.raises(ConfigError) as err:
        run_settings(dev_settings)
    assert "apiKey: must be a non-empty string" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_secrets_typed_in_plain_text_are_read_as_pulumi_secrets(dev_settings):
    """`pulumi config set hfToken hf_x` without --secret: the program still holds a secret."""
    pulumi_config = {"aws:region": "us-east-1", "llmserve:hfToken": "hf_plain_token",
                     "llmserve:apiKey": "plain-api-key-0123456789"}
    del dev_settings["gateway"]  # the shared apiKey is for stacks without it
    for key, value in dev_settings.items():
        pulumi_config[f"llmserve:{key}"] = json.dumps(value)
    loaded = {}
    pulumi.runtime.set_mocks(mockrun.PlatformMocks("us-east-1"), project="llmserve", stack="test",
                             preview=False)
    pulumi.runtime.set_all_config(pulumi_config, [])  # not marked secret by the engine
    stack = config.load(VOCABULARY)
    for name in ("hf_token", "api_key"):
        output = getattr(stack, name)
        loaded[name] = (_sync_await(output.future()), _sync_await(output.is_secret()))
    assert loaded == {"hf_token": ("hf_plain_token", True), "api_key": ("plain-api-key-0123456789", True)}
    assert stack.cluster_name == "llmserve-test"


def test_pulumi_up_never_shows_a_token_typed_into_a_setting(dev_settings):
    """Under `pulumi up` the engine prints the ConfigError: a token pasted into the wrong setting
    and the configured secrets are redacted from it."""
    dev_settings["cluster"]["kubernetesVersion"] = "hf_PastedByMistake0123456789"
    dev_settings["hfToken"] = "not-hf-shaped-secret-value"
    dev_settings["models"][0]["quantize"] = "not-hf-shaped-secret-value"
    with pytest.raises(ConfigError) as err:
        run_settings(dev_settings)
    assert "cluster.kubernetesVersion: '[secret]' is not one of" in str(err.value)
    assert "models[0].quantize: '[secret]' is not one of" in str(err.value)
    assert "PastedByMistake" not in str(err.value) and "not-hf-shaped" not in str(err.value)


def test_engine_defaults_to_tgi_and_a_slot_may_run_another(dev_settings):
    from components.engines.registry import ENGINES
    settings = validate_settings(dev_settings)
    [slot] = settings.models[0].resolved_slots()
    assert settings.models[0].engine == "tgi" and slot.engine == "tgi"
    dev_settings["models"][0].update(slots={"blue": {}, "green": {"engine": "vllm", "quantize": "fp8_per_tensor"}},
                                     active="blue")
    blue, green = validate_settings(dev_settings).models[0].resolved_slots()
    assert (blue.engine, blue.quantize) == ("tgi", None) and (green.engine, green.quantize) == ("vllm", "fp8_per_tensor")
    # Each engine's pinned release when `image` is unset.
    assert ENGINES["tgi"].image(None) == "ghcr.io/huggingface/text-generation-inference:3.3.7"
    assert ENGINES["vllm"].image(None) == "vllm/vllm-openai:v0.33.0"
    assert ENGINES["vllm"].image("vllm/vllm-openai:v0.33.0-x86_64") == "vllm/vllm-openai:v0.33.0-x86_64"
