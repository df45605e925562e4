"""GPU groups on reserved capacity and with prepared disks, as the program registers them: the
launch template's and node group's inputs (market type, reservation target, where the instance
type sits, one AZ's subnet, the snapshot on /dev/xvdb, the fast image pull user data), the AZ
check before any GPU group, and the snapshot script (scripts/build-image-cache-snapshot.sh)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from components.offline import mockrun

from ..conftest import ROOT, run_settings

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
GROUP = "llmserve-test-gpu-24g"
RID = "cr-0123456789abcdef0"
GROUP_ARN = "arn:aws:resource-groups:us-east-1:123456789012:group/gpu-reservations"
SNAPSHOT = "snap-0123456789abcdef0"
SCRIPT = ROOT / "scripts" / "build-image-cache-snapshot.sh"


def _run(settings: dict, **change) -> mockrun.Run:
    settings["gpuNodeGroups"][0].update(change)
    return run_settings(settings)


def _group(run: mockrun.Run, name: str = GROUP) -> tuple[dict, dict]:
    return (mockrun.reveal(run.one(NODE_GROUP, f"{name}-ng").inputs),
            mockrun.reveal(run.one(LAUNCH_TEMPLATE, f"{name}-lt").inputs))


def _private_subnet(run: mockrun.Run, zone: str) -> str:
    return run.one(SUBNET, f"llmserve-test-private-{zone}").id


def _user_data(lt: dict) -> str:
    return base64.b64decode(lt["userData"]).decode()


def test_a_capacity_block_group(dev_settings):
    run = _run(dev_settings, instanceTypes=["p5.48xlarge"], capacityType="CAPACITY_BLOCK",
               capacityReservation={"id": RID, "availabilityZone": "us-east-1b"})
    ng, lt = _group(run)
    assert ng["capacityType"] == "CAPACITY_BLOCK"
    # The one instance type in the launch template, none on the node group (never both).
    assert lt["instanceType"] == "p5.48xlarge" and "instanceTypes" not in ng
    assert lt["instanceMarketOptions"] == {"marketType": "capacity-block"}
    # The block's target; no preference (a Capacity Block launches only in its block).
    assert lt["capacityReservationSpecification"] == {"capacityReservationTarget": {"capacityReservationId": RID}}
    # The subnet of the block's AZ only.
    assert ng["subnetIds"] == [_private_subnet(run, "us-east-1b")]
    assert ng["scalingConfig"]["minSize"] == 0


def test_a_reservation_only_group(dev_settings):
    run = _run(dev_settings, instanceTypes=["g6.xlarge"], capacityType="ON_DEMAND",
               capacityReservation={"id": RID, "availabilityZone": "us-east-1a", "reservedOnly": True})
    ng, lt = _group(run)
    assert ng["capacityType"] == "ON_DEMAND" and ng["instanceTypes"] == ["g6.xlarge"]
    assert "instanceType" not in lt and "instanceMarketOptions" not in lt
    assert lt["capacityReservationSpecification"] == {
        "capacityReservationPreference": "capacity-reservations-only",
        "capacityReservationTarget": {"capacityReservationId": RID}}
    assert ng["subnetIds"] == [_private_subnet(run, "us-east-1a")]


def test_a_resource_group_of_reservations_in_every_az(dev_settings):
    run = _run(dev_settings, capacityType="ON_DEMAND", capacityReservation={"resourceGroupArn": GROUP_ARN})
    ng, lt = _group(run)
    # Not reservedOnly: the target without a preference; beyond the reservations, On-Demand.
    assert lt["capacityReservationSpecification"] == {
        "capacityReservationTarget": {"capacityReservationResourceGroupArn": GROUP_ARN}}
    assert ng["instanceTypes"] == ["g6.xlarge", "g5.xlarge"]
    assert sorted(ng["subnetIds"]) == sorted(_private_subnet(run, z) for z in ("us-east-1a", "us-east-1b"))


@pytest.mark.parametrize("zone", ["us-east-1d", "us-west-2a"])
def test_a_zone_outside_the_network_is_refused_before_any_gpu_group(dev_settings, zone):
    dev_settings["gpuNodeGroups"][0].update(capacityType="ON_DEMAND", instanceTypes=["g6.xlarge"],
                                            capacityReservation={"id": RID, "availabilityZone": zone})
    run = mockrun.Run()
    with pytest.raises(Exception, match=r"gpuNodeGroups\[0\]\.capacityReservation\.availabilityZone: "
                                        rf"{zone} is not one of the cluster's AZs \(us-east-1a, us-east-1b\)"):
        run_settings(dev_settings, run=run)
    assert [r.name for r in run.of_type(NODE_GROUP)] in ([], ["llmserve-test-system-ng"])


def test_a_bottlerocket_data_volume_from_a_snapshot(dev_settings):
    _, lt = _group(_run(dev_settings, amiType="BOTTLEROCKET_x86_64_NVIDIA", dataVolumeSnapshotId=SNAPSHOT,
                        diskSizeGiB=150))
    [disk] = lt["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/xvdb"
    # Sized as the group says (at least the snapshot), encrypted as the snapshot is: EC2 takes no
    # encryption value for a volume made from a snapshot.
    assert disk["ebs"] == {"snapshotId": SNAPSHOT, "volumeSize": 150, "volumeType": "gp3",
                           "deleteOnTermination": "true"}
    assert "userData" not in lt


def test_fast_image_pull_on_al2023(dev_settings):
    _, lt = _group(_run(dev_settings, fastImagePull=True))
    text = _user_data(lt)
    # A MIME multi-part document EKS merges with its own, with a NodeConfig part.
    assert text.startswith('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="//"\n')
    part = text.split("Content-Type: application/node.eks.aws\n\n", 1)[1].split("\n--//--", 1)[0]
    assert yaml.safe_load(part) == {"apiVersion": "node.eks.aws/v1alpha1", "kind": "NodeConfig",
                                    "spec": {"featureGates": {"FastImagePull": True}}}
    [disk] = lt["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/xvda"
    assert disk["ebs"]["throughput"] == 600 and disk["ebs"]["iops"] == 3000 and disk["ebs"]["encrypted"] == "true"


def test_fast_image_pull_on_bottlerocket(dev_settings):
    _, lt = _group(_run(dev_settings, amiType="BOTTLEROCKET_x86_64_NVIDIA", fastImagePull=True))
    settings = tomllib.loads(_user_data(lt))["settings"]
    assert settings["container-runtime"] == {"snapshotter": "soci"}
    # Bottlerocket's own defaults (3 downloads, 1 unpack per image) barely parallelise: AL2023's.
    soci = settings["container-runtime-plugins"]["soci-snapshotter"]
    assert soci["pull-mode"] == "parallel-pull-unpack"
    assert soci["parallel-pull-unpack"] == {"max-concurrent-downloads-per-image": 20,
                                            "concurrent-download-chunk-size": "16mb",
                                            "max-concurrent-unpacks-per-image": 12, "discard-unpacked-layers": True}
    [disk] = lt["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/xvdb" and disk["ebs"]["throughput"] == 600


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_use_none_of_it(stack_runs, stack):
    run = stack_runs[stack]
    for lt in run.of_type(LAUNCH_TEMPLATE):
        inputs = mockrun.reveal(lt.inputs)
        assert not {"userData", "instanceType", "instanceMarketOptions", "capacityReservationSpecification"} & set(inputs)
        [disk] = inputs["blockDeviceMappings"]
        assert disk["ebs"]["encrypted"] == "true" and not {"snapshotId", "throughput", "iops"} & set(disk["ebs"])
    for ng in run.of_type(NODE_GROUP):
        assert mockrun.reveal(ng.inputs)["instanceTypes"]


# The snapshot script, against a stand-in `aws` that records its calls and answers each as AWS
# would on the happy path.
FAKE_AWS = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
answer = {{"ssm get-parameter": "ami-0123456789abcdef0", "ec2 run-instances": "i-0123456789abcdef0",
          "ssm describe-instance-information": "Online", "ssm send-command": "c0ffee00-0000-0000-0000-000000000000",
          "ssm get-command-invocation": "Success", "ecr get-login-password": "ECR-PASSWORD",
          "ec2 describe-instances": "vol-0123456789abcdef0", "ec2 create-snapshot": "{SNAPSHOT}",
          "ec2 describe-snapshots": "completed"}}.get(" ".join(args[:2]))
if answer:  # `aws ec2 wait ...` and the calls whose output is discarded print nothing here
    print(answer)
"""
ECR_IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/llmserve-prod/ghcr/huggingface/text-generation-inference:3.3.7"
PUBLIC_IMAGE = "public.ecr.aws/docker/library/busybox:1.37"


def _script(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    log = tmp_path / "aws.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AWS_LOG": str(log)}
    env.pop("AWS_REGION", None)
    env.pop("AWS_DEFAULT_REGION", None)
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_the_script_parses_and_passes_shellcheck():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("args,expected", [
    ((), "usage: build-image-cache-snapshot.sh -k KUBERNETES_VERSION"),
    (("-k", "1.35", "-s", "subnet-1", "-g", "sg-1", "-p", "builder"), "usage:"),  # no image
    (("-k", "1.35", "-s", "subnet-1", "-g", "sg-1", "-p", "builder", PUBLIC_IMAGE), "error: no region"),
    (("-r", "us-east-1", "-k", "v1.35", "-s", "subnet-1", "-g", "sg-1", "-p", "builder", PUBLIC_IMAGE),
     "error: -k v1.35 is not a Kubernetes minor version"),
    (("-r", "us-east-1", "-k", "1.35", "-s", "subnet-1", "-g", "sg-1", "-p", "builder", "busybox;reboot"),
     "error: busybox;reboot is not an image reference"),
])
def test_the_script_refuses_bad_arguments_before_calling_aws(tmp_path, args, expected):
    result, calls = _script(tmp_path, *args)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert calls == [] and result.stdout == ""


def test_the_script_builds_the_snapshot(tmp_path):
    result, calls = _script(tmp_path, "-r", "us-east-1", "-k", "1.35", "-s", "subnet-0123", "-g", "sg-0123",
                            "-p", "image-cache-builder", ECR_IMAGE, PUBLIC_IMAGE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{SNAPSHOT}\n"
    assert "ECR-PASSWORD" not in result.stderr

    def call(service, op):
        return [c for c in calls if c[:2] == [service, op]]

    [parameter] = call("ssm", "get-parameter")
    assert "/aws/service/bottlerocket/aws-k8s-1.35-nvidia/x86_64/latest/image_id" in parameter
    [launch] = call("ec2", "run-instances")
    flat = " ".join(launch)
    assert "HttpTokens=required" in flat and "Name=image-cache-builder" in flat
    assert "DeviceName=/dev/xvdb,Ebs={VolumeSize=100,VolumeType=gp3,Encrypted=true,DeleteOnTermination=true}" in launch
    assert "DeviceName=/dev/xvda,Ebs={Encrypted=true,DeleteOnTermination=true}" in launch
    assert launch[launch.index("--user-data") + 1] == "[settings.host-containers.admin]\nenabled = true\n"
    commands = [json.loads(c[c.index("--parameters") + 1])["commands"][0] for c in call("ssm", "send-command")]
    pull = "apiclient exec admin sheltie ctr -a /run/containerd/containerd.sock -n k8s.io images pull " \
           "--platform linux/amd64 --label io.cri-containerd.image=managed"
    assert commands == ["apiclient exec admin sheltie systemctl stop kubelet",
                        f"{pull} -u AWS:ECR-PASSWORD {ECR_IMAGE}", f"{pull} {PUBLIC_IMAGE}"]
    # The password of the image's registry's region.
    assert call("ecr", "get-login-password") == [["ecr", "get-login-password", "--region", "us-west-2"]]
    [snapshot] = call("ec2", "create-snapshot")
    assert snapshot[snapshot.index("--volume-id") + 1] == "vol-0123456789abcdef0"
    # Stopped before the snapshot, terminated at the end.
    order = [" ".join(c[:2]) for c in calls]
    assert order.index("ec2 stop-instances") < order.index("ec2 create-snapshot")
    assert order[-1] == "ec2 terminate-instances"
