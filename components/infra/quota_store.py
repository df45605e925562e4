"""QuotaStore: the Redis (Amazon ElastiCache) that Envoy Gateway's global rate limit keeps the
teams' token counts in, in stacks that set a token quota (docs/gateway.md).

- TLS in transit, required; encrypted at rest. No AUTH token: Envoy Gateway v1.8 has no password
  setting for its rate-limit Redis (envoyproxy/gateway v1.8.3 api/v1alpha1/envoygateway_types.go,
  RateLimitRedisSettings: url and tls only), so the network is the lock: private subnets, and a
  security group that admits port 6379 from the cluster's nodes only (the rate-limit pods' ENIs
  are the nodes').
- Two nodes in two AZs with automatic failover: a lost primary is replaced in about a minute;
  while the limiter cannot reach Redis, requests pass (fail-open, infra/gateway_controllers.py).
- Cluster mode off: the rate limit's Redis client takes one endpoint (REDIS_TYPE single)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_aws import ec2, elasticache

PORT = 6379
# The smallest Graviton node type: a rate limiter keeps a few keys per team and minute.
NODE_TYPE = "cache.t4g.small"
ENGINE, ENGINE_VERSION = "redis", "7.1"
REPLICATION_GROUP_ID_MAX = 40  # ElastiCache: 1-40 lowercase letters, digits, hyphens


@dataclass
class QuotaStoreArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]  # private, one per AZ
    node_security_group_id: pulumi.Input[str]
    tags: Optional[dict[str, str]] = None


class QuotaStore(pulumi.ComponentResource):
    url: pulumi.Output[str]  # host:port of the primary endpoint, for Envoy Gateway's rateLimit

    def __init__(self, name: str, args: QuotaStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmserve:infra:QuotaStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id,
                                  description=f"Token quota Redis of {args.cluster_name}: the nodes only",
                                  ingress=[ec2.SecurityGroupIngressArgs(
                                      protocol="tcp", from_port=PORT, to_port=PORT,
                                      security_groups=[args.node_security_group_id],
                                      description="Envoy Gateway's rate limit, on the nodes")],
                                  egress=[], tags=args.tags, opts=child)
        subnets = elasticache.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids,
                                          description=f"Private subnets of {args.cluster_name}",
                                          tags=args.tags, opts=child)
        redis = elasticache.ReplicationGroup(
            f"{name}-redis", replication_group_id=f"{args.cluster_name}-quotas",
            description=f"Token quotas of the {args.cluster_name} gateway",
            engine=ENGINE, engine_version=ENGINE_VERSION, node_type=NODE_TYPE, port=PORT,
            num_cache_clusters=2, automatic_failover_enabled=True, multi_az_enabled=True,
            transit_encryption_enabled=True, transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            subnet_group_name=subnets.name, security_group_ids=[group.id],
            apply_immediately=True, tags=args.tags, opts=child)
        self.url = pulumi.Output.concat(redis.primary_endpoint_address, f":{PORT}")
        self.register_outputs({"url": self.url})
