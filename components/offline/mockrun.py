"""Runs the real Pulumi program (`__main__.py`) under Pulumi's mocks: no CLI, no cloud.

The mock monitor records every resource registration in its wire form (the inputs a real
`pulumi up` would send to the providers) and the stack's outputs. The mocks answer the invokes
the program makes with plausible, deterministic values, and give resources the outputs the
program reads (ids, ARNs, the cluster endpoint...)."""

from __future__ import annotations

import hashlib
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from ..config.load import STRICT_SECRETS
from ..config.stack_file import SECURE_PLACEHOLDER

PROJECT_DIR = Path(__file__).resolve().parents[2]  # the repository: Pulumi.yaml, __main__.py
ACCOUNT = "123456789012"
SECRET = "[secret]"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    inputs: dict[str, Any]
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)  # the state the mocks gave it
    dependencies: list[str] = field(default_factory=list)  # URNs it waits for
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)


@dataclass
class Run:
    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: Optional[str] = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {type_} named {name}: "
                              f"{[r.name for r in self.of_type(type_)]}")
        return found[0]


def _digest(*parts: str, n: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


# Id prefixes of the AWS resources whose ids the program passes on.
_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-", "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-", "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-", "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-", "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:efs/fileSystem:FileSystem": "fs-", "aws:efs/mountTarget:MountTarget": "fsmt-",
}


class PlatformMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str):
        self.region = region
        self.subnet_zones: dict[str, int] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        typ, name = args.typ, args.name
        if typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "r" * int(state.get("length", 16))  # never shown: a secret
        if typ.startswith(("kubernetes:", "random:")):
            return f"{name}-id", state
        id_ = _ID_PREFIX.get(typ, f"{name}-") + _digest(typ, name)
        if typ.startswith("aws:"):
            service = typ.split(":")[1].split("/")[0]
            state.setdefault("name", f"{name}-{_digest(name, n=7)}")
            state.setdefault("arn", f"arn:aws:{service}:{self.region}:{ACCOUNT}:{state['name']}")
        if typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{state['name']}"
        elif typ == "aws:kms/key:Key":
            state["keyId"] = id_
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        elif typ == "aws:s3/bucket:Bucket":  # its id is its name; S3 ARNs have no region or account
            id_ = state["bucket"] = state["name"]
            state["arn"] = f"arn:aws:s3:::{id_}"
        elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            state["primaryEndpointAddress"] = (f"master.{state.get('replicationGroupId', name)}."
                                               f"{_digest(name, n=6)}.{self.region}.cache.amazonaws.com")
        elif typ == "aws:ecr/pullThroughCacheRule:PullThroughCacheRule":
            state["registryId"] = ACCOUNT
        elif typ == "aws:eks/cluster:Cluster":
            state.update(
                endpoint=f"https://{_digest(name, n=32).upper()}.gr7.{self.region}.eks.amazonaws.com",
                certificateAuthority={"data": "TU9DSyBDQQ=="},
                vpcConfig={**state.get("vpcConfig", {}), "clusterSecurityGroupId": "sg-" + _digest("cluster-sg", name)},
                status="ACTIVE",
            )
            id_ = state["name"]
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            state.setdefault("nodeGroupName", state["name"])
            state["resources"] = [{"autoscalingGroups": [{"name": f"eks-{state['name']}-{_digest(name, n=8)}"}]}]
        return id_, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {"id": self.region, "names": [f"{self.region}{c}" for c in letters],
                    "zoneIds": [f"use1-az{i + 1}" for i in range(len(letters))]}
        if token == "aws:ec2/getSubnet:getSubnet":
            sid = args.args["id"]
            index = self.subnet_zones.setdefault(sid, len(self.subnet_zones))
            return {"id": sid, "availabilityZone": f"{self.region}{'abcdef'[index % 6]}",
                    "cidrBlock": f"10.99.{index * 16}.0/20", "vpcId": "vpc-" + _digest("vpc")}
        if token == "aws:index/getRegion:getRegion":
            return {"id": self.region, "name": self.region, "region": self.region,
                    "endpoint": f"ec2.{self.region}.amazonaws.com", "description": self.region}
        if token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            # Stand-ins from S3's published ranges (ip-ranges.json), not a region's real list.
            return {"id": "pl-63a5400a", "name": args.args["name"], "addressFamily": "IPv4",
                    "entries": [{"cidr": c, "description": ""} for c in ("3.5.0.0/19", "52.216.0.0/15")]}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/render", "userId": "RENDER"}
        raise NotImplementedError(f"the offline mocks have no answer for invoke {token}")


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mocks_: PlatformMocks, run: Run):
        super().__init__(mocks_)
        self.run = run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.run.resources.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                custom=request.custom, provider=request.provider,
                inputs=rpc.deserialize_properties(request.object),
                id=response.id, outputs=self.resources[response.urn].state,
                dependencies=list(request.dependencies), protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                custom_timeouts={k: v for k, v in (("create", request.customTimeouts.create),
                                                   ("update", request.customTimeouts.update),
                                                   ("delete", request.customTimeouts.delete)) if v}))
        return response

    def RegisterResourceOutputs(self, request):
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.run.outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


def project_name(project_dir: Path = PROJECT_DIR) -> str:
    return yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]


def stand_in_secrets(config: dict[str, str], secret_keys: list[str],
                     project: str) -> tuple[dict[str, str], list[str], list[str]]:
    """The alerting and registry secrets a stack file does not hold (they are set with `pulumi
    config set --secret` in the real stack) stand in as secret placeholders, so an offline run
    shows what `pulumi up` builds once they are set; `pulumi up` itself refuses a stack without
    those its receivers and its pull-through cache use. Returns the config, the secret keys and the keys that were stood in for."""
    missing = [k for k in (f"{project}:{s}" for s in STRICT_SECRETS) if k not in config]
    return ({**config, **dict.fromkeys(missing, SECURE_PLACEHOLDER)}, [*secret_keys, *missing],
            [k.split(":", 1)[1] for k in missing])


def run_mocked(program, stack: str, config: dict[str, str], secret_keys: list[str] = (),
        project: str = "llmserve", run: Optional[Run] = None) -> Run:
    """Runs `program()` under the mocks with this config and returns what it registered (into
    `run`, if given, so that it can be looked at after an exception). Exceptions propagate."""
    region = config.get("aws:region", "us-east-1")
    run, platform_mocks = run if run is not None else Run(), PlatformMocks(region)
    pulumi.runtime.set_mocks(platform_mocks, project=project, stack=stack, preview=False,
                             monitor=RecordingMonitor(platform_mocks, run))
    # set_mocks made a root stack of its own; the program gets a fresh one, as under the CLI,
    # so that its exports are registered when it finishes.
    settings.set_root_resource(None)
    runtime_config.set_all_config(dict(config), list(secret_keys))
    _sync_await(run_in_stack(program))
    return run


def run_program(stack: str, config: dict[str, str], secret_keys: list[str] = (),
                project_dir: Path = PROJECT_DIR, run: Optional[Run] = None) -> Run:
    """Runs the project's `__main__.py`, the program `pulumi up` runs, under the mocks."""
    program = str(project_dir / "__main__.py")
    return run_mocked(lambda: runpy.run_path(program, run_name="__main__"), stack, config,
                      secret_keys, project_name(project_dir), run)


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def _mask(value: Any) -> Any:
    """Every leaf of a secret value replaced by `[secret]`, its structure kept (a Secret's
    stringData stays a map, as the schema wants)."""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return SECRET


def reveal(value: Any, mask: bool = True) -> Any:
    """Plain data from the recorded wire form, secrets replaced by `[secret]` (or unwrapped)."""
    if rpc.is_rpc_secret(value):
        plain = reveal(rpc.unwrap_rpc_secret(value), mask=False)
        return _mask(plain) if mask else plain
    if isinstance(value, dict):
        return {k: reveal(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v, mask) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
