"""Versions pinned per Kubernetes version: the EKS add-ons' table and the node groups' AMI release
versions (their format per AMI family, their Kubernetes minor, the warning when unset)."""

from __future__ import annotations

import re

import pytest

from components.config import ConfigError, KUBERNETES_VERSIONS
from components.config.cluster import ADDON_VERSIONS

from ..conftest import validate_settings

ADDON = "aws:eks/addon:Addon"


def test_every_supported_kubernetes_version_pins_every_addon_the_stack_installs(dev_run):
    installed = {a.inputs["addonName"] for a in dev_run.of_type(ADDON)}
    assert set(ADDON_VERSIONS) == set(KUBERNETES_VERSIONS)
    for version, addons in ADDON_VERSIONS.items():
        assert set(addons) == installed, version
        for addon, pinned in addons.items():
            assert pinned is None or re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", pinned), (version, addon)
        # kube-proxy follows the control plane's minor version.
        assert addons["kube-proxy"].startswith(f"v{version}.")


def _errors(settings: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate_settings(settings)
    return exc.value.errors


@pytest.mark.parametrize("ami,release", [("AL2023_x86_64_NVIDIA", "1.35.3-20260415"),
                                         ("BOTTLEROCKET_x86_64_NVIDIA", "1.34.0-18d04e52")])
def test_release_versions_of_each_ami_family(dev_settings, ami, release):
    dev_settings["gpuNodeGroups"][0].update(amiType=ami, releaseVersion=release)
    dev_settings["systemNodeGroup"]["releaseVersion"] = "1.35.3-20260415"
    settings = validate_settings(dev_settings)
    assert settings.gpu_node_groups[0].release_version == release
    assert settings.warnings == []


@pytest.mark.parametrize("ami,release", [("AL2023_x86_64_NVIDIA", "1.34.0-18d04e52"),
                                         ("AL2023_x86_64_NVIDIA", "v20260415"),
                                         ("BOTTLEROCKET_x86_64_NVIDIA", "1.34.0")])
def test_a_release_version_of_another_format_is_refused(dev_settings, ami, release):
    dev_settings["gpuNodeGroups"][0].update(amiType=ami, releaseVersion=release)
    [error] = _errors(dev_settings)
    assert "gpuNodeGroups[0]" in error and "releaseVersion" in error
    assert f"{release!r} is not an {ami} release version" in error
    assert "aws ssm get-parameter" in error


def test_an_al2023_release_for_another_kubernetes_minor_is_refused(dev_settings):
    dev_settings["cluster"]["kubernetesVersion"] = "1.36"
    dev_settings["systemNodeGroup"]["releaseVersion"] = "1.35.3-20260415"
    dev_settings["gpuNodeGroups"][0]["releaseVersion"] = "1.36.2-20260818"
    assert _errors(dev_settings) == [
        "systemNodeGroup.releaseVersion: '1.35.3-20260415' is an AMI for Kubernetes 1.35, but "
        "cluster.kubernetesVersion is 1.36: use a 1.36.<patch>-<date> release (docs/upgrade.md)"]


def test_an_unpinned_group_is_warned_about(dev_settings):
    dev_settings["gpuNodeGroups"][0]["releaseVersion"] = "1.35.3-20260415"
    [warning] = validate_settings(dev_settings).warnings
    assert warning.startswith("systemNodeGroup.releaseVersion: unset: its nodes stay on the AMI "
                              "they were created with")
