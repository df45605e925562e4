"""GPU and system node groups: AMI, taint, labels, launch template, capacity and scaling."""

from __future__ import annotations

import pytest

from components.offline import mockrun

from ..conftest import run_settings

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG_TAG = "aws:autoscaling/tag:Tag"


def _group(run, name):
    ng = mockrun.reveal(run.one(NODE_GROUP, f"{name}-ng").inputs)
    lt = run.one(LAUNCH_TEMPLATE, f"{name}-lt")
    return ng, lt


def test_gpu_node_group(dev_run):
    ng, lt = _group(dev_run, "llmserve-dev-gpu-24g")
    assert ng["amiType"] == "AL2023_x86_64_NVIDIA"
    assert ng["instanceTypes"] == ["g6.xlarge", "g5.xlarge"]
    assert ng["capacityType"] == "SPOT"
    assert ng["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 2}
    assert ng["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    # The autoscaler's AWS provider knows GPU nodes by the accelerator label.
    assert ng["labels"] == {"llmserve/node-group": "gpu-24g", "k8s.amazonaws.com/accelerator": "nvidia"}
    assert ng["nodeRepairConfig"] == {"enabled": True}
    assert ng["launchTemplate"] == {"id": lt.id, "version": "1"}
    private = [s.id for s in dev_run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name]
    assert sorted(ng["subnetIds"]) == sorted(private)


def test_launch_template_requires_imdsv2_with_hop_limit_1_and_sizes_the_root_volume(dev_run):
    _, lt = _group(dev_run, "llmserve-dev-gpu-24g")
    assert lt.inputs["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                            "httpPutResponseHopLimit": 1}
    [disk] = lt.inputs["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/xvda"
    assert disk["ebs"]["volumeSize"] == 100
    assert disk["ebs"]["volumeType"] == "gp3" and disk["ebs"]["encrypted"] == "true"


def test_bottlerocket_sizes_its_data_volume(dev_settings):
    dev_settings["gpuNodeGroups"][0]["amiType"] = "BOTTLEROCKET_x86_64_NVIDIA"
    run = run_settings(dev_settings)
    ng, lt = _group(run, "llmserve-test-gpu-24g")
    assert ng["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert lt.inputs["blockDeviceMappings"][0]["deviceName"] == "/dev/xvdb"


def test_autoscaler_owns_desired_size(dev_run):
    for ng in dev_run.of_type(NODE_GROUP):
        assert ng.ignore_changes == ["scalingConfig.desiredSize"]


def test_system_node_group_is_small_on_demand_and_untainted(prod_run):
    ng, lt = _group(prod_run, "llmserve-prod-system")
    assert ng["amiType"] == "AL2023_x86_64_STANDARD"
    assert ng["capacityType"] == "ON_DEMAND"
    assert ng["instanceTypes"] == ["m7i.xlarge"]
    assert ng["scalingConfig"] == {"minSize": 3, "desiredSize": 3, "maxSize": 6}
    assert "taints" not in ng
    assert ng["labels"] == {"llmserve/node-group": "system"}
    assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1


@pytest.mark.parametrize("group,instance", [("l40s", "g6e.xlarge"), ("l40s-x4", "g6e.12xlarge")])
def test_prod_gpu_groups_are_on_demand(prod_run, group, instance):
    ng, lt = _group(prod_run, f"llmserve-prod-{group}")
    assert ng["capacityType"] == "ON_DEMAND" and ng["instanceTypes"] == [instance]
    assert ng["labels"] == {"llmserve/node-group": group, "k8s.amazonaws.com/accelerator": "nvidia"}


def test_groups_are_pinned_to_the_cluster_version_and_their_release_version(dev_settings):
    dev_settings["cluster"]["kubernetesVersion"] = "1.36"
    dev_settings["systemNodeGroup"]["releaseVersion"] = "1.36.2-20260818"
    run = run_settings(dev_settings)
    system, _ = _group(run, "llmserve-test-system")
    gpu, _ = _group(run, "llmserve-test-gpu-24g")
    assert system["version"] == gpu["version"] == "1.36"
    assert system["releaseVersion"] == "1.36.2-20260818"
    # Unpinned (warned about): EKS keeps the AMI the group was created with.
    assert "releaseVersion" not in gpu


def _model_tags(run, name) -> list[dict]:
    """The group's `model` tags on its auto-scaling group."""
    return [t.inputs["tag"] for t in run.of_type(ASG_TAG) if t.name == f"{name}-model-tag"]


def test_instances_and_volumes_carry_the_stable_cost_tags_and_instances_the_models_they_serve(prod_run):
    for group, model in [("l40s", "qwen-14b"), ("l40s-x4", "qwen-72b"), ("system", None)]:
        name = f"llmserve-prod-{group}"
        _, lt = _group(prod_run, name)
        assert [s["resourceType"] for s in lt.inputs["tagSpecifications"]] == ["instance", "volume"]
        for spec in lt.inputs["tagSpecifications"]:
            assert spec["tags"]["project"] == "llmserve" and spec["tags"]["environment"] == "prod"
            # Not in the launch template: a changed tag there is a new version, rolling every node.
            assert "model" not in spec["tags"]
        # On the auto-scaling group, tagging the instances it launches.
        tags = _model_tags(prod_run, name)
        if model is None:
            assert tags == []
        else:
            [tag] = tags
            assert tag["key"] == "model" and tag["propagateAtLaunch"] is True
            assert model in tag["value"].split("+")


def test_a_model_change_leaves_the_launch_templates_as_they_were(dev_settings):
    """Adding a model, or a blue-green slot landing on a group, retags its auto-scaling group:
    the launch template, and so the nodes, stay as they are."""
    before = run_settings(dev_settings)
    second = {**dev_settings["models"][0], "name": "another-7b"}
    dev_settings["models"].append(second)
    after = run_settings(dev_settings)
    for name in ("llmserve-test-gpu-24g", "llmserve-test-system"):
        assert _group(before, name)[1].inputs == _group(after, name)[1].inputs
    assert [t["value"] for t in _model_tags(before, "llmserve-test-gpu-24g")] == ["qwen-7b"]
    assert [t["value"] for t in _model_tags(after, "llmserve-test-gpu-24g")] == ["another-7b+qwen-7b"]
    # Without aws:defaultTags: the Pulumi project and stack.
    assert _group(after, "llmserve-test-gpu-24g")[1].inputs["tagSpecifications"][0]["tags"]["environment"] == "test"


def test_a_group_serving_too_many_models_for_one_tag_value_says_it_is_shared(dev_settings):
    """Tag values hold 256 characters: seven 40-character names do not fit."""
    dev_settings["models"] = [{**dev_settings["models"][0], "name": f"{i}" * 40}
                              for i in "abcdefg"]
    dev_settings["gpuNodeGroups"][0]["maxSize"] = 7 * dev_settings["models"][0]["replicas"]["max"]
    run = run_settings(dev_settings)
    assert [t["value"] for t in _model_tags(run, "llmserve-test-gpu-24g")] == ["shared by 7 models"]
    _, lt = _group(run, "llmserve-test-gpu-24g")
    assert all("model" not in s["tags"] for s in lt.inputs["tagSpecifications"])
