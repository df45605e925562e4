"""IAM policy documents shared by the components (pure functions)."""

from __future__ import annotations

import json

import pulumi

MANAGED = "arn:aws:iam::aws:policy"


def trust_policy(service: str) -> str:
    """Assume-role policy for an AWS service principal. `sts:TagSession` is what EKS (cluster
    role) and EKS Pod Identity (`pods.eks.amazonaws.com`) need besides `sts:AssumeRole`
    (docs/eks.md)."""
    actions = ["sts:AssumeRole"] if service == "ec2.amazonaws.com" else ["sts:AssumeRole", "sts:TagSession"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
    })


def pod_identity_trust(cluster_arn: pulumi.Input[str], namespace: str,
                       service_account: str) -> pulumi.Output[str]:
    """Assume-role policy of an EKS Pod Identity role that only this cluster's association for
    this service account can use: EKS Pod Identity tags the session with the cluster's ARN (its
    account and region too), the namespace and the service account, and the trust policy matches
    them (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html, "Setting Conditions";
    the session tags: https://docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html)."""
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": namespace,
                "aws:RequestTag/kubernetes-service-account": service_account,
            }},
        }],
    })


def _account_administers(account_id: str) -> dict:
    """The account administers a key through IAM (without it the key could become unmanageable,
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html)."""
    return {"Sid": "AccountAdministersThroughIam", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}


def _logs_use(sid: str, region: str, operator: str, log_groups: str) -> dict:
    """CloudWatch Logs may use a key only for these log groups, by their encryption context
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""
    return {"Sid": sid, "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*", "Condition": {operator: {"kms:EncryptionContext:aws:logs:arn": log_groups}}}


def cluster_key_policy(account_id: str, region: str, cluster_name: str, cluster_role_arn: str) -> str:
    """The key policy of the cluster's KMS key, explicit rather than the default:
    - the account administers the key through IAM (without it the key could become unmanageable,
      https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html);
    - the cluster role uses it only through EKS (`kms:ViaService`), for Secrets;
    - CloudWatch Logs uses it only for the cluster's control-plane log group (its encryption
      context, https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""
    log_group = f"arn:aws:logs:{region}:{account_id}:log-group:/aws/eks/{cluster_name}/cluster"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            _account_administers(account_id),
            {"Sid": "ClusterRoleThroughEks", "Effect": "Allow", "Principal": {"AWS": cluster_role_arn},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ListGrants"],
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": f"eks.{region}.amazonaws.com",
                                            "kms:CallerAccount": account_id}}},
            _logs_use("ControlPlaneLogs", region, "ArnEquals", log_group),
        ],
    })


def container_logs_key_policy(account_id: str, region: str, cluster_name: str) -> str:
    """The key policy of the container logs' KMS key (a key of their own: the cluster key's policy
    stays as it was created, since the deploy roles may not change key policies, docs/bootstrap.md):
    - the account administers the key through IAM, as for the cluster key;
    - CloudWatch Logs uses it only for the cluster's container log groups
      (/aws/containerinsights/<cluster>/*), by their encryption context
      (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""
    log_groups = f"arn:aws:logs:{region}:{account_id}:log-group:/aws/containerinsights/{cluster_name}/*"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            _account_administers(account_id),
            _logs_use("ContainerLogs", region, "ArnLike", log_groups),
        ],
    })


def after(value: pulumi.Input[str], resources: list[pulumi.CustomResource]) -> pulumi.Output[str]:
    """value, resolved only once the resources exist: what is created with it waits for them
    (a role's ARN once its policies are attached, a cluster's name once its add-ons are in)."""
    return pulumi.Output.all(value, *[r.id for r in resources]).apply(lambda values: values[0])
