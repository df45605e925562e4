"""Pulumi ComponentResources of the cluster: network, EKS cluster, node groups, model cache, Pod
Identity roles, add-ons and monitoring, with the pinned charts and IAM documents they use.
May import `engines`, `planning` and `config`; nothing above (not `serving`)."""
