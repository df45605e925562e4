"""GPU capacity and node disks in the contract: Capacity Blocks, capacity reservations, a
Bottlerocket data volume snapshot and fastImagePull; each refusal names the setting and what is
allowed, through the schema and through `render` (exit 2)."""

from __future__ import annotations

import copy

import pytest
import yaml

from components.__main__ import main
from components.config import ConfigError
from components.config.node_groups import CAPACITY_BLOCK_TYPES
from components.planning.catalog import CATALOG

from ..conftest import ROOT, validate_settings

RID = "cr-0123456789abcdef0"
GROUP_ARN = "arn:aws:resource-groups:us-east-1:123456789012:group/gpu-reservations"
SNAPSHOT = "snap-0123456789abcdef0"
# A Capacity Block of one p5.48xlarge type in us-east-1a.
BLOCK = {"instanceTypes": ["p5.48xlarge"], "capacityType": "CAPACITY_BLOCK",
         "capacityReservation": {"id": RID, "availabilityZone": "us-east-1a"}}
ODCR = {"instanceTypes": ["g6.xlarge"], "capacityType": "ON_DEMAND",
        "capacityReservation": {"id": RID, "availabilityZone": "us-east-1a"}}
BOTTLEROCKET = {"amiType": "BOTTLEROCKET_x86_64_NVIDIA"}


def _group(settings: dict, *changes: dict) -> dict:
    for change in changes:
        settings["gpuNodeGroups"][0].update(copy.deepcopy(change))
    return settings


REFUSED = [
    ({"capacityType": "CAPACITY_BLOCK"},
     "gpuNodeGroups[0].capacityReservation.id: required with capacityType CAPACITY_BLOCK"),
    ({**BLOCK, "capacityReservation": {"resourceGroupArn": GROUP_ARN}},
     "gpuNodeGroups[0].capacityReservation.id: required with capacityType CAPACITY_BLOCK"),
    ({**BLOCK, "instanceTypes": ["p5.48xlarge", "p4d.24xlarge"]},
     "gpuNodeGroups[0].instanceTypes: ['p5.48xlarge', 'p4d.24xlarge'] with capacityType CAPACITY_BLOCK: "
     "list exactly the Capacity Block's one instance type, one of p4d.24xlarge, p5.48xlarge, p5en.48xlarge"),
    ({**BLOCK, "instanceTypes": ["g6e.xlarge"]},
     "gpuNodeGroups[0].instanceTypes: ['g6e.xlarge'] with capacityType CAPACITY_BLOCK"),
    ({**BLOCK, "minSize": 1, "desiredSize": 1},
     "gpuNodeGroups[0].minSize: 1 with capacityType CAPACITY_BLOCK: must be 0"),
    ({**ODCR, "capacityType": "SPOT"},
     "gpuNodeGroups[0].capacityReservation: reservations hold On-Demand capacity: not with capacityType SPOT"),
    ({**ODCR, "instanceTypes": ["g6.xlarge", "g5.xlarge"]},
     "gpuNodeGroups[0].instanceTypes: ['g6.xlarge', 'g5.xlarge'] with capacityReservation.id: "
     "a reservation is for one instance type"),
    ({**ODCR, "capacityReservation": {"id": RID}},
     "gpuNodeGroups[0].capacityReservation.availabilityZone: required with id: a reservation is in one AZ"),
    ({**ODCR, "capacityReservation": {"id": RID, "resourceGroupArn": GROUP_ARN, "availabilityZone": "us-east-1a"}},
     "gpuNodeGroups[0].capacityReservation.id: set exactly one of id (a reservation, cr-...) and resourceGroupArn"),
    ({**ODCR, "capacityReservation": {"reservedOnly": True}},
     "gpuNodeGroups[0].capacityReservation.id: set exactly one of id"),
    ({**ODCR, "capacityReservation": {"id": "cr-0123", "availabilityZone": "us-east-1a"}},
     "gpuNodeGroups[0].capacityReservation.id: 'cr-0123' is not a capacity reservation id (cr- and 17 hexadecimal digits)"),
    ({**ODCR, "capacityReservation": {"resourceGroupArn": "arn:aws:ec2:us-east-1:123456789012:capacity-reservation/" + RID}},
     "gpuNodeGroups[0].capacityReservation.resourceGroupArn: 'arn:aws:ec2:us-east-1:123456789012:capacity-reservation/"
     + RID + "' is not a resource group ARN"),
    ({**ODCR, "capacityReservation": {"id": RID, "availabilityZone": "use1-az1"}},
     "gpuNodeGroups[0].capacityReservation.availabilityZone: 'use1-az1' is not an availability zone name, e.g. us-east-1a"),
    ({**ODCR, "capacityReservation": {"id": RID, "availabilityZone": "us-east-1a", "onlyReserved": True}},
     "gpuNodeGroups[0].capacityReservation.onlyReserved: unknown setting; allowed here: availabilityZone, id, "
     "reservedOnly, resourceGroupArn"),
    ({"dataVolumeSnapshotId": SNAPSHOT},
     "gpuNodeGroups[0].dataVolumeSnapshotId: a Bottlerocket data volume: needs amiType BOTTLEROCKET_x86_64_NVIDIA, "
     "not AL2023_x86_64_NVIDIA"),
    ({**BOTTLEROCKET, "dataVolumeSnapshotId": "snap-0123"},
     "gpuNodeGroups[0].dataVolumeSnapshotId: 'snap-0123' is not an EBS snapshot id"),
    ({**BOTTLEROCKET, "dataVolumeSnapshotId": SNAPSHOT, "fastImagePull": True},
     "gpuNodeGroups[0].fastImagePull: not with dataVolumeSnapshotId: Bottlerocket's soci snapshotter removes "
     "the images the snapshot holds"),
    ({"capacityType": "RESERVED"},
     "gpuNodeGroups[0].capacityType: 'RESERVED' is not one of ON_DEMAND, SPOT, CAPACITY_BLOCK"),
]


@pytest.mark.parametrize("change,expected", REFUSED, ids=[e.split(":")[0] + f"-{i}" for i, (_, e) in enumerate(REFUSED)])
def test_refused_with_the_setting_and_what_is_allowed(dev_settings, change, expected):
    with pytest.raises(ConfigError) as err:
        validate_settings(_group(dev_settings, change))
    assert any(line.startswith(expected) for line in err.value.errors), err.value.errors


@pytest.mark.parametrize("change", [
    BLOCK,
    {**BLOCK, "instanceTypes": ["p4d.24xlarge"], "capacityReservation": {**BLOCK["capacityReservation"], "reservedOnly": True}},
    ODCR,
    {**ODCR, "capacityReservation": {**ODCR["capacityReservation"], "reservedOnly": True}},
    # A resource group may hold reservations of several types, in several AZs.
    {"capacityType": "ON_DEMAND", "capacityReservation": {"resourceGroupArn": GROUP_ARN}},
    {"capacityType": "ON_DEMAND", "capacityReservation": {"resourceGroupArn": GROUP_ARN.replace("arn:aws:", "arn:aws-us-gov:")
                                                                           .replace("us-east-1", "us-gov-west-1"),
                                                          "availabilityZone": "us-gov-west-1a"}},
    {**BOTTLEROCKET, "dataVolumeSnapshotId": SNAPSHOT},
    {**BOTTLEROCKET, "dataVolumeSnapshotId": "snap-0123abcd"},  # an old, 8-digit id
    {**BOTTLEROCKET, "fastImagePull": True},
    {"fastImagePull": True},
])
def test_accepted(dev_settings, change):
    validate_settings(_group(dev_settings, change))


def test_unset_the_shipped_stacks_keep_their_groups(dev_settings):
    group = validate_settings(dev_settings).gpu_node_groups[0]
    assert group.capacity_reservation is None and group.data_volume_snapshot_id is None
    assert group.fast_image_pull is False


def test_the_capacity_block_types_are_in_the_catalog():
    assert set(CAPACITY_BLOCK_TYPES) <= set(CATALOG)


def test_a_model_only_on_capacity_blocks_is_warned_about(dev_settings):
    settings = validate_settings(_group(dev_settings, BLOCK))
    [warning] = [w for w in settings.warnings if w.startswith("models[")]
    assert warning.startswith("models[0]: every slot runs on a CAPACITY_BLOCK node group (gpu-24g): "
                              "the model loses its capacity when the block ends")


def test_a_model_with_a_slot_elsewhere_is_not(dev_settings):
    _group(dev_settings, BLOCK)
    dev_settings["gpuNodeGroups"].append({"name": "spot", "instanceTypes": ["g6.xlarge"], "capacityType": "SPOT",
                                          "minSize": 0, "desiredSize": 0, "maxSize": 2})
    dev_settings["models"][0].update(slots={"blue": {}, "green": {"nodeGroup": "spot"}}, active="blue")
    assert not [w for w in validate_settings(dev_settings).warnings if w.startswith("models[")]
    # Without a Capacity Block, no model is warned about.
    assert not [w for w in validate_settings(_group(dev_settings, {"capacityType": "ON_DEMAND",
                                                                    "capacityReservation": None})).warnings
                if w.startswith("models[")]


DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())


@pytest.mark.parametrize("change,expected", [
    ({"capacityType": "CAPACITY_BLOCK"},
     "gpuNodeGroups[0].capacityReservation.id: required with capacityType CAPACITY_BLOCK"),
    ({**BOTTLEROCKET, "dataVolumeSnapshotId": SNAPSHOT, "fastImagePull": True},
     "gpuNodeGroups[0].fastImagePull: not with dataVolumeSnapshotId"),
])
def test_render_refuses_with_exit_code_2(tmp_path, capsys, change, expected):
    doc = copy.deepcopy(DEV)
    doc["config"]["llmserve:gpuNodeGroups"][0].update(change)
    stack, out = tmp_path / "Pulumi.bad.yaml", tmp_path / "out"
    stack.write_text(yaml.safe_dump(doc))
    code = main(["render", "--stack", "bad", "--config-file", str(stack), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert "Traceback" not in err and not out.exists()
