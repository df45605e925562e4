"""Cluster: endpoint access, encryption, logs, IAM, add-ons and their order, kubeconfig, provider."""

from __future__ import annotations

import json
import re

import pytest

from components.config.cluster import ADDON_VERSIONS
from components.infra.node_group import GPU_TOLERATION
from components.offline import mockrun

from ..conftest import inputs, names, run_settings

CLUSTER = "aws:eks/cluster:Cluster"
ADDON = "aws:eks/addon:Addon"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
KEY = "aws:kms/key:Key"
CLUSTER_KEY = "llmserve-prod-secrets"
LOGS_KEY = "llmserve-prod-container-logs"


def test_endpoint_is_private_with_public_access_only_from_configured_cidrs(dev_run, prod_run):
    vpc = inputs(prod_run, CLUSTER)["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == ["198.51.100.10/32", "198.51.100.11/32"]
    assert inputs(dev_run, CLUSTER)["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_no_cidrs_means_a_private_only_endpoint(dev_settings):
    dev_settings["cluster"]["publicAccessCidrs"] = []
    vpc = inputs(run_settings(dev_settings), CLUSTER)["vpcConfig"]
    assert vpc["endpointPublicAccess"] is False and vpc["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in vpc


def test_cluster_settings(prod_run):
    c = inputs(prod_run, CLUSTER)
    assert c["name"] == "llmserve-prod" and c["version"] == "1.35"
    key = prod_run.one(KEY, CLUSTER_KEY)
    assert key.inputs["enableKeyRotation"] is True
    assert c["encryptionConfig"]["provider"]["keyArn"] == key.outputs["arn"]
    assert c["encryptionConfig"] == {"resources": ["secrets"],
                                     "provider": {"keyArn": mockrun.reveal(c["encryptionConfig"]["provider"]["keyArn"])}}
    assert c["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert c["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert c["accessConfig"] == {"authenticationMode": "API",
                                 "bootstrapClusterCreatorAdminPermissions": False}
    assert c["bootstrapSelfManagedAddons"] is False
    assert c["upgradePolicy"] == {"supportType": "STANDARD"}
    assert c["deletionProtection"] is True


def test_control_plane_logs_have_a_retention_and_exist_first(dev_run):
    logs = dev_run.one("aws:cloudwatch/logGroup:LogGroup", "llmserve-dev-logs")
    assert logs.inputs["name"] == "/aws/eks/llmserve-dev/cluster"
    assert logs.inputs["retentionInDays"] == 14
    assert logs.name in names(dev_run.one(CLUSTER).dependencies)


def test_cluster_role_is_trusted_by_eks_and_may_use_only_its_key(dev_run):
    roles = {r.name: mockrun.reveal(r.inputs) for r in dev_run.of_type("aws:iam/role:Role")}
    trust = json.loads(roles["llmserve-dev-cluster-role"]["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    assert trust["Statement"][0]["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    kms = json.loads(inputs(dev_run, "aws:iam/rolePolicy:RolePolicy", "llmserve-dev-cluster-kms")["policy"])
    key_arn = inputs(dev_run, CLUSTER)["encryptionConfig"]["provider"]["keyArn"]
    assert kms["Statement"][0]["Resource"] == key_arn
    attached = {a.inputs["policyArn"].rsplit("/", 1)[-1]
                for a in dev_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert {"AmazonEKSClusterPolicy", "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryPullOnly", "AmazonEFSCSIDriverPolicy",
            "AmazonEBSCSIDriverPolicy", "CloudWatchAgentServerPolicy"} == attached


def test_managed_addons_and_their_order(dev_run):
    addons = {a.inputs["addonName"]: a for a in dev_run.of_type(ADDON)}
    assert set(addons) == {"vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns",
                           "aws-efs-csi-driver", "aws-ebs-csi-driver", "eks-node-monitoring-agent",
                           "amazon-cloudwatch-observability"}
    # NetworkPolicy objects are enforced only with the VPC CNI's network policy agent.
    assert json.loads(addons["vpc-cni"].inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    for ng in dev_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        # Networking and credentials before nodes join; the node role's policies attached first.
        assert {addons[a].name for a in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")} \
            <= names(ng.dependencies)
        assert "llmserve-dev-node-AmazonEKSWorkerNodePolicy" in names(ng.dependencies)
    # CoreDNS and the EFS CSI controller need nodes to run on.
    for addon in ("coredns", "aws-efs-csi-driver", "aws-ebs-csi-driver", "eks-node-monitoring-agent",
                  "amazon-cloudwatch-observability"):
        assert "llmserve-dev-system-ng" in names(addons[addon].dependencies)


def test_the_vpc_cni_has_its_own_role_not_the_nodes(dev_run):
    """Every pod can reach what the node role may do (it is the node's): the CNI's permissions
    to manage network interfaces go to its own Pod Identity role instead."""
    node_policies = {p.inputs["policyArn"].rsplit("/", 1)[-1] for p in dev_run.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if "-node-" in p.name}
    assert node_policies == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly"}
    cni = next(a for a in dev_run.of_type(ADDON) if a.inputs["addonName"] == "vpc-cni")
    [association] = mockrun.reveal(cni.inputs)["podIdentityAssociations"]
    assert association["serviceAccount"] == "aws-node"
    role = next(r for r in dev_run.of_type("aws:iam/role:Role") if r.outputs["arn"] == association["roleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert trust["aws:RequestTag/kubernetes-service-account"] == "aws-node"
    attached = {p.inputs["policyArn"].rsplit("/", 1)[-1] for p in dev_run.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if p.inputs["role"] == role.outputs["name"]}
    assert attached == {"AmazonEKS_CNI_Policy"}


def test_pod_identity_roles_trust_only_their_cluster_namespace_and_service_account(prod_run):
    """No other cluster's (or account's) Pod Identity association can assume them."""
    roles = [r for r in prod_run.of_type("aws:iam/role:Role")
             if "pods.eks.amazonaws.com" in r.inputs["assumeRolePolicy"]]
    assert len(roles) >= 5  # CNI, EBS CSI, EFS CSI, load balancer controller, autoscaler
    for role in roles:
        [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        condition = statement["Condition"]["StringEquals"]
        assert condition["aws:RequestTag/eks-cluster-arn"] == \
            f"arn:aws:eks:us-east-1:{mockrun.ACCOUNT}:cluster/llmserve-prod"  # account, region, name
        # The container logs' agent lives in the add-on's own namespace, the S3 model store's
        # readers and writers in the models' (serving/store.py).
        assert condition["aws:RequestTag/kubernetes-namespace"] in ("kube-system", "amazon-cloudwatch", "llm")
        assert condition["aws:RequestTag/kubernetes-service-account"]


def test_access_entries_are_all_in_code(dev_settings):
    """No hidden admin for the cluster's creator; each entry its policy and scope."""
    dev_settings["cluster"]["accessEntries"] = [
        {"principalArn": "arn:aws:iam::123456789012:role/deploy", "access": "admin"},
        {"principalArn": "arn:aws:iam::123456789012:role/oncall", "access": "view"},
        {"principalArn": "arn:aws:iam::123456789012:role/ml-team", "access": "admin", "namespaces": ["llm"]},
    ]
    run = run_settings(dev_settings)
    cluster = inputs(run, "aws:eks/cluster:Cluster")
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    entries = [mockrun.reveal(e.inputs) for e in run.of_type("aws:eks/accessEntry:AccessEntry")]
    assert sorted(e["principalArn"].rsplit("/", 1)[-1] for e in entries) == ["deploy", "ml-team", "oncall"]
    grants = {a.inputs["principalArn"].rsplit("/", 1)[-1]: mockrun.reveal(a.inputs)
              for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
    policy = "arn:aws:eks::aws:cluster-access-policy/"
    assert grants["deploy"]["policyArn"] == policy + "AmazonEKSClusterAdminPolicy"
    assert grants["deploy"]["accessScope"] == {"type": "cluster"}
    assert grants["oncall"]["policyArn"] == policy + "AmazonEKSViewPolicy"
    assert grants["ml-team"]["accessScope"] == {"type": "namespace", "namespaces": ["llm"]}
    # Kubernetes resources wait for the grants: the deployer can reach the API only then.
    provider = run.one("pulumi:providers:kubernetes")
    grant_urns = {a.urn for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
    assert grant_urns <= set(provider.dependencies)


def test_every_role_carries_the_permissions_boundary(prod_run):
    roles = prod_run.of_type("aws:iam/role:Role")
    assert len(roles) >= 7
    assert {r.inputs.get("permissionsBoundary") for r in roles} == {
        "arn:aws:iam::123456789012:policy/github-llmserve-workload-boundary"}


def test_kubeconfig_uses_aws_eks_get_token_and_is_a_secret(dev_run):
    assert mockrun.is_secret(dev_run.outputs["kubeconfig"])
    kubeconfig = json.loads(mockrun.reveal(dev_run.outputs["kubeconfig"], mask=False))
    cluster = dev_run.one(CLUSTER)
    [entry] = kubeconfig["clusters"]
    assert entry["cluster"]["server"].startswith("https://") and entry["cluster"]["server"].endswith(
        ".gr7.us-east-1.eks.amazonaws.com")
    [user] = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"] == ["--region", "us-east-1", "eks", "get-token",
                                            "--cluster-name", "llmserve-dev", "--output", "json"]
    assert cluster.inputs["name"] == "llmserve-dev"
    assert dev_run.outputs["clusterName"] == "llmserve-dev"


def test_every_kubernetes_resource_uses_the_clusters_provider(dev_run, prod_run):
    for run in (dev_run, prod_run):
        provider = run.one("pulumi:providers:kubernetes")
        assert mockrun.is_secret(provider.inputs["kubeconfig"])
        k8s = [r for r in run.resources if r.custom and r.type.startswith("kubernetes:")]
        assert k8s
        for r in k8s:
            assert r.provider.startswith(provider.urn + "::"), (r.type, r.name, r.provider)


def test_encrypted_gp3_is_the_default_block_storage(dev_run):
    sc = mockrun.reveal(next(r for r in dev_run.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
                             if r.inputs["metadata"]["name"] == "gp3").inputs)
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert {k: v for k, v in sc["parameters"].items() if not k.startswith("tagSpecification_")} == \
        {"type": "gp3", "encrypted": "true"}
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    addon = next(a for a in dev_run.of_type(ADDON) if a.inputs["addonName"] == "aws-ebs-csi-driver")
    [assoc] = mockrun.reveal(addon.inputs["podIdentityAssociations"])
    assert assoc["serviceAccount"] == "ebs-csi-controller-sa"


def test_the_cluster_key_has_an_explicit_policy_and_encrypts_the_logs(prod_run):
    key = prod_run.one(KEY, CLUSTER_KEY)
    policy = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    assert policy["AccountAdministersThroughIam"]["Principal"] == {"AWS": f"arn:aws:iam::{mockrun.ACCOUNT}:root"}
    role = next(r for r in prod_run.of_type("aws:iam/role:Role") if r.name.endswith("-cluster-role"))
    eks = policy["ClusterRoleThroughEks"]
    assert eks["Principal"] == {"AWS": role.outputs["arn"]}
    assert eks["Condition"]["StringEquals"]["kms:ViaService"] == "eks.us-east-1.amazonaws.com"
    logs = policy["ControlPlaneLogs"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    group = prod_run.one("aws:cloudwatch/logGroup:LogGroup", "llmserve-prod-logs")
    assert logs["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn":
                                               f"arn:aws:logs:us-east-1:{mockrun.ACCOUNT}:log-group:{group.inputs['name']}"}}
    assert group.inputs["kmsKeyId"] == key.outputs["arn"]


def test_the_cluster_key_policy_is_the_one_it_was_created_with():
    """The deploy roles may not change a key policy (no kms:PutKeyPolicy, docs/bootstrap.md): a
    change to the cluster key's would fail every deploy. This is the policy the key was created
    with, byte for byte; what else needs a key gets one of its own."""
    from components.infra.iam import cluster_key_policy
    assert cluster_key_policy("123456789012", "us-east-1", "c", "arn:aws:iam::123456789012:role/r") == (
        '{"Version": "2012-10-17", "Statement": ['
        '{"Sid": "AccountAdministersThroughIam", "Effect": "Allow", "Principal": {"AWS": '
        '"arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}, '
        '{"Sid": "ClusterRoleThroughEks", "Effect": "Allow", "Principal": {"AWS": '
        '"arn:aws:iam::123456789012:role/r"}, "Action": ["kms:Encrypt", "kms:Decrypt", '
        '"kms:DescribeKey", "kms:CreateGrant", "kms:ListGrants"], "Resource": "*", "Condition": '
        '{"StringEquals": {"kms:ViaService": "eks.us-east-1.amazonaws.com", "kms:CallerAccount": '
        '"123456789012"}}}, '
        '{"Sid": "ControlPlaneLogs", "Effect": "Allow", "Principal": {"Service": '
        '"logs.us-east-1.amazonaws.com"}, "Action": ["kms:Encrypt*", "kms:Decrypt*", '
        '"kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], "Resource": "*", "Condition": '
        '{"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": '
        '"arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/c/cluster"}}}]}')


def test_container_logs_have_a_key_of_their_own_the_deploy_role_may_create(prod_run):
    key = prod_run.one(KEY, LOGS_KEY)
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    assert key.inputs["bypassPolicyLockoutSafetyCheck"] is True
    # The deploy roles create only keys carrying the platform's tag (CreatePlatformKeys).
    assert key.inputs["tags"]["llmserve/cluster"] == "llmserve-prod"
    policy = json.loads(key.inputs["policy"])["Statement"]
    assert [s["Sid"] for s in policy] == ["AccountAdministersThroughIam", "ContainerLogs"]
    assert policy[0]["Principal"] == {"AWS": f"arn:aws:iam::{mockrun.ACCOUNT}:root"}
    assert policy[0]["Action"] == "kms:*"
    assert policy[1]["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert policy[1]["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
        f"arn:aws:logs:us-east-1:{mockrun.ACCOUNT}:log-group:/aws/containerinsights/llmserve-prod/*"}}
    alias = prod_run.one("aws:kms/alias:Alias", LOGS_KEY)
    assert alias.inputs["name"] == "alias/eks/llmserve-prod-container-logs"


@pytest.mark.parametrize("version", ["1.35", "1.36"])
def test_addons_are_pinned_per_kubernetes_version(dev_settings, version):
    """Bumping kubernetesVersion moves the pinned add-ons with it (config/cluster.py
    ADDON_VERSIONS); an add-on left unpinned gets no addonVersion, so EKS keeps what it has."""
    dev_settings["cluster"]["kubernetesVersion"] = version
    run = run_settings(dev_settings)
    addons = {a.inputs["addonName"]: a.inputs for a in run.of_type(ADDON)}
    assert addons["kube-proxy"]["addonVersion"].startswith(f"v{version}.")
    for addon, pinned in ADDON_VERSIONS[version].items():
        assert addons[addon].get("addonVersion") == pinned, addon


def test_node_health_agent_runs_its_gpu_checks_on_tainted_gpu_nodes(dev_run):
    """Node auto repair acts on the agent's AcceleratedHardwareReady condition; its DCGM host
    engine tolerates no taint unless told, and every GPU node is tainted."""
    [agent] = [a for a in dev_run.of_type(ADDON) if a.inputs["addonName"] == "eks-node-monitoring-agent"]
    values = json.loads(agent.inputs["configurationValues"])
    assert values["dcgmAgent"]["tolerations"] == [GPU_TOLERATION]
    assert "podIdentityAssociations" not in agent.inputs
    for ng in dev_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert ng.inputs["nodeRepairConfig"] == {"enabled": True}


def test_container_logs_ship_from_every_node_into_log_groups_that_expire(prod_run):
    [addon] = [a for a in prod_run.of_type(ADDON) if a.inputs["addonName"] == "amazon-cloudwatch-observability"]
    values = json.loads(addon.inputs["configurationValues"])
    assert values["containerLogs"] == {"enabled": True}
    assert values["tolerations"] == [{"operator": "Exists"}]  # GPU pods' logs too
    # Logs only: no per-observation metrics, no second DCGM exporter beside the GPU operator's.
    for off in ("containerInsights", "applicationSignals", "dcgmExporter"):
        assert values[off] == {"enabled": False}
    key = prod_run.one(KEY, LOGS_KEY)
    groups = {g.inputs["name"]: g for g in prod_run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for kind in ("application", "dataplane", "host"):
        group = groups[f"/aws/containerinsights/llmserve-prod/{kind}"]
        assert group.inputs["retentionInDays"] == 365
        assert group.inputs["kmsKeyId"] == key.outputs["arn"]
        assert group.name in names(addon.dependencies)  # before Fluent Bit could create it
    protection = prod_run.one("aws:cloudwatch/logDataProtectionPolicy:LogDataProtectionPolicy")
    assert protection.inputs["logGroupName"] == "/aws/containerinsights/llmserve-prod/application"
    assert protection.name in names(addon.dependencies)  # masking only covers later events
    [association] = mockrun.reveal(addon.inputs)["podIdentityAssociations"]
    assert association["serviceAccount"] == "cloudwatch-agent"
    role = next(r for r in prod_run.of_type("aws:iam/role:Role") if r.outputs["arn"] == association["roleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert trust["aws:RequestTag/kubernetes-namespace"] == "amazon-cloudwatch"
    attached = {p.inputs["policyArn"] for p in prod_run.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if p.inputs["role"] == role.outputs["name"]}
    assert attached == {"arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"}


def test_gp3_volumes_carry_the_cost_tags(prod_run, dev_settings):
    params = inputs(prod_run, STORAGE_CLASS, "llmserve-prod-gp3")["parameters"]
    assert {v for k, v in params.items() if k.startswith("tagSpecification_")} == \
        {"project=llmserve", "environment=prod"}
    # Without aws:defaultTags: the Pulumi project and stack.
    params = inputs(run_settings(dev_settings), STORAGE_CLASS, "llmserve-test-gp3")["parameters"]
    assert {v for k, v in params.items() if k.startswith("tagSpecification_")} == \
        {"project=llmserve", "environment=test"}


# TGI v3.3.7's launcher at start: `tracing::info!("{:#?}", args)` (launcher/src/main.rs), Rust's
# pretty Debug of its Args struct (4-space indent, an Option's value on a line of its own), as
# tracing-subscriber's JSON formatter writes it (JSON_OUTPUT=true): one line, the text in
# fields.message.
API_KEY = "Zq3xY7wP0aB5cD8eF1gH4iJ6kL9mN2oP5qR8sT1uV4wX7yZ0"  # as generated: 48 alphanumerics


def _debug(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f'Some(\n        "{value}",\n    )'


def _launcher_args(api_key) -> str:
    fields = [("model_id", '"/data/hub/models--Qwen--Qwen2.5-7B-Instruct"'), ("revision", _debug("a09a354")),
              ("validation_workers", "2"), ("num_shard", _debug(1)), ("port", "8080"),
              ("json_output", "true"), ("otlp_endpoint", "None"),
              ("otlp_service_name", '"text-generation-inference.router"'), ("cors_allow_origin", "[]"),
              ("api_key", _debug(api_key)), ("watermark_gamma", "None"), ("watermark_delta", "None"),
              ("ngrok", "false"), ("ngrok_authtoken", "None"), ("ngrok_edge", "None"),
              ("tokenizer_config_path", "None"), ("disable_grammar_support", "false"), ("env", "false"),
              ("max_client_batch_size", "4"), ("lora_adapters", "None"), ("usage_stats", "Off"),
              ("payload_limit", "2000000"), ("enable_prefill_logprobs", "false"),
              ("graceful_termination_timeout", "90")]
    return "Args {\n" + "".join(f"    {k}: {v},\n" for k, v in fields) + "}"


def _tgi_line(message: str) -> str:
    return json.dumps({"timestamp": "2026-12-02T00:28:12.345678Z", "level": "INFO",
                       "fields": {"message": message}, "target": "text_generation_launcher"},
                      separators=(",", ":"))


def _fluent_bit_event(line: str) -> str:
    """What Fluent Bit of amazon-cloudwatch-observability 6.2.0 puts into the application log
    group for one container line: the CRI record with `log` (the raw line) and, Merge_Log On,
    `log_processed` (the line parsed), plus the kubernetes filter's metadata."""
    return json.dumps({"time": "2026-12-02T00:28:12.345678901Z", "stream": "stdout", "_p": "F",
                       "log": line, "log_processed": json.loads(line),
                       "kubernetes": {"pod_name": "qwen-7b-blue-5d9f7c6b8-x2x9q", "namespace_name": "llm",
                                      "container_name": "tgi", "host": "ip-10-0-1-23.ec2.internal"}},
                      separators=(",", ":"))


def _masked(text: str) -> str:
    """CloudWatch Logs masks every match of a custom data identifier (Python's `re` reads the
    identifier's regex, which uses only the syntax both share)."""
    from components.infra.cluster import API_KEY_REGEX
    return re.sub(API_KEY_REGEX, lambda m: "*" * len(m.group()), text)


@pytest.mark.parametrize("key", [API_KEY, "0123456789abcdef" * 4, "k" * 16, "a-b.c_d~e+f/g0123" * 7 + "a==",
                                 "x" * 128])
def test_the_launcher_args_line_masks_the_api_key_in_every_shape_fluent_bit_ships(key):
    line = _tgi_line(_launcher_args(key))
    assert key in line and "api_key: Some(\\n        \\\"" in line  # the real shape, escaped once
    event = _fluent_bit_event(line)
    assert event.count(key) == 2  # `log` (escaped twice) and `log_processed` (once)
    for text in (line, event):
        masked = _masked(text)
        assert key not in masked
        assert "model_id" in masked and "json_output: true" in masked  # the rest stays readable


def test_ordinary_lines_are_not_masked():
    without_key = _tgi_line(_launcher_args(None))
    assert "api_key: None" in without_key
    for line in (without_key, _tgi_line("Starting Webserver"),
                 _tgi_line("Args are not logged here; the api_key is set"),
                 _tgi_line("Successfully downloaded weights for Qwen/Qwen2.5-7B-Instruct"),
                 '{"timestamp":"2026-12-02T00:28:14Z","level":"INFO","message":"Success",'
                 '"target":"text_generation_router::server","filename":"router/src/server.rs"}'):
        assert _masked(_fluent_bit_event(line)) == _fluent_bit_event(line)


def test_the_application_log_group_masks_the_launchers_api_key(prod_run):
    from components.infra.cluster import API_KEY_IDENTIFIER, API_KEY_REGEX
    protection = prod_run.one("aws:cloudwatch/logDataProtectionPolicy:LogDataProtectionPolicy")
    policy = json.loads(protection.inputs["policyDocument"])
    assert policy["Version"] == "2021-06-01"
    assert policy["Configuration"] == {"CustomDataIdentifier": [{"Name": API_KEY_IDENTIFIER, "Regex": API_KEY_REGEX}]}
    audit, mask = policy["Statement"]
    assert audit["DataIdentifier"] == mask["DataIdentifier"] == [API_KEY_IDENTIFIER]
    assert audit["Operation"] == {"Audit": {"FindingsDestination": {}}}
    assert mask["Operation"] == {"Deidentify": {"MaskConfig": {}}}
    # Custom data identifiers: a regex of at most 200 characters from a small alphabet (no
    # parentheses, quotes or colons), a name of letters, digits, `_` and `-`.
    assert len(API_KEY_REGEX) <= 200 and re.fullmatch(r"[A-Za-z0-9_#=@/;, \-^$?\[\]{}|\\*+.]+", API_KEY_REGEX)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", API_KEY_IDENTIFIER)
