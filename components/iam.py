"""IAM policy documents shared by the components (pure functions)."""

from __future__ import annotations

import json

MANAGED = "arn:aws:iam::aws:policy"


def trust_policy(service: str) -> str:
    """Assume-role policy for an AWS service principal. `sts:TagSession` is what EKS (cluster
    role) and EKS Pod Identity (`pods.eks.amazonaws.com`) need besides `sts:AssumeRole`
    (reference/eks.md)."""
    actions = ["sts:AssumeRole"] if service == "ec2.amazonaws.com" else ["sts:AssumeRole", "sts:TagSession"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
    })
