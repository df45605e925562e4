"""The Pulumi program: load and validate the stack config, build the platform, export outputs."""

from pathlib import Path

import pulumi

from components import config
from components.engines.registry import ENGINES, MEMORY_MODELS
from components.engines.vocabulary import VOCABULARY
from components.infra.addons import Addons, AddonsArgs
from components.infra.cluster import Cluster, ClusterArgs
from components.infra.gateway_controllers import GatewayControllers, GatewayControllersArgs
from components.infra.image_cache import ImageCache, ImageCacheArgs
from components.infra.model_cache import ModelCache, ModelCacheArgs
from components.infra.model_store import ModelStore, ModelStoreArgs
from components.infra.monitoring import SELECTED, Monitoring, MonitoringArgs
from components.infra.network import Network, NetworkArgs
from components.infra.quota_store import QuotaStore, QuotaStoreArgs
from components.infra.node_group import NodeGroup, NodeGroupArgs, reservation_subnets
from components.planning.catalog import CATALOG
from components.planning.lock import LOCK_FILE
from components.planning.plans import load_plans, read_lock
from components.serving import alerts, dashboards, gateway
from components.serving.model_service import ModelService, ModelServiceArgs
from components.serving.shared import Serving, ServingArgs
from components.serving.slots import download_image, slot_specs
from components.serving.store import StoreAccess

# Both raise ConfigError, naming every invalid setting or model that cannot work, before any
# resource is registered. The plans come from the committed lock only: no network here.
stack = config.load(VOCABULARY)
lock = read_lock(Path(__file__).parent / LOCK_FILE)
plans, warnings = load_plans(stack, lock, MEMORY_MODELS)
for warning in warnings:
    pulumi.log.warn(warning)
cfg = stack.settings
name = stack.cluster_name
NAMESPACE = gateway.NAMESPACE  # one namespace for every model (components/serving/shared.py)
tags = {"llmserve/cluster": name}

network = Network(name, NetworkArgs(cluster_name=name, region=stack.region, vpc=cfg.cluster.vpc))

cluster = Cluster(name, ClusterArgs(
    cluster_name=name,
    region=stack.region,
    kubernetes_version=cfg.cluster.kubernetes_version,
    private_subnet_ids=network.private_subnet_ids,
    public_access_cidrs=cfg.cluster.public_access_cidrs,
    access_entries=cfg.cluster.access_entries,
    permissions_boundary_arn=cfg.cluster.permissions_boundary_arn,
    log_retention_days=cfg.cluster.log_retention_days,
    system_nodes=cfg.system_node_group,
    deletion_protection=cfg.cluster.deletion_protection,
    tags=tags,
    cost_tags=stack.cost_tags,
))

# A zonal reservation's group launches in its AZ only; an AZ the network lacks is refused before
# any GPU group is registered.
gpu_subnets = [reservation_subnets(f"gpuNodeGroups[{i}]", g.capacity_reservation, network.availability_zones,
                                   network.private_subnet_ids) for i, g in enumerate(cfg.gpu_node_groups)]
for group, subnet_ids in zip(cfg.gpu_node_groups, gpu_subnets):
    NodeGroup(f"{name}-{group.name}", NodeGroupArgs(
        group=group.name,
        cluster_name=cluster.ready_name,
        kubernetes_version=cfg.cluster.kubernetes_version,
        release_version=group.release_version,
        node_role_arn=cluster.node_role_arn,
        subnet_ids=subnet_ids,
        instance_types=group.instance_types,
        ami_type=group.ami_type,
        capacity_type=group.capacity_type,
        min_size=group.min_size,
        max_size=group.max_size,
        desired_size=group.desired_size,
        disk_size_gib=group.disk_size_gi_b,
        # What each node advertises: its GPUs, times the time-slicing replicas.
        gpus=min(CATALOG[t].gpus for t in group.instance_types) * (cfg.addons.gpu_time_slicing_replicas or 1),
        tags=tags,
        cost_tags=stack.cost_tags,  # stable: in the launch template
        model_tag=cfg.model_tag(group.name),  # changes with the models: on the ASG only
        capacity_reservation=group.capacity_reservation,  # docs/capacity.md
        data_volume_snapshot_id=group.data_volume_snapshot_id,
        fast_image_pull=group.fast_image_pull,
    ))

# The engines' images through an ECR pull-through cache in the region (images.pullThroughCache).
upstreams = cfg.images.upstreams(cfg.engine_images(VOCABULARY))
image_cache = ImageCache(f"{name}-images", ImageCacheArgs(
    cluster_name=name, region=stack.region, upstreams=upstreams, node_role_name=cluster.node_role.name,
    usernames={u.host: cfg.images.username(u) for u in upstreams if u.secret},
    tokens={u.host: stack.registry_secrets[u.secret] for u in upstreams if u.secret},
    tags=tags,
)) if upstreams else None

# The S3 bucket vLLM streams weights from, when a slot says `store: s3` (docs/vllm.md).
store = None
if any(s.store == "s3" for m in cfg.models for s in m.resolved_slots()):
    model_store = ModelStore(f"{name}-models", ModelStoreArgs(region=stack.region, tags=tags))
    store = StoreAccess(bucket=model_store.bucket, bucket_arn=model_store.arn, region=stack.region,
                        cluster_name=cluster.ready_name, role_prefix=name, cidrs=model_store.cidrs,
                        permissions_boundary=cfg.cluster.permissions_boundary_arn, tags=tags)

k8s = pulumi.ResourceOptions(providers=[cluster.provider])
cache = ModelCache(f"{name}-cache", ModelCacheArgs(
    cluster_name=cluster.cluster.name,
    vpc_id=network.vpc_id,
    availability_zones=network.availability_zones,
    private_subnet_ids=network.private_subnet_ids,
    node_security_group_id=cluster.node_security_group_id,
    throughput_mode=cfg.storage.throughput_mode,
    provisioned_throughput_mibps=cfg.storage.provisioned_throughput_mibps,
    backup=cfg.storage.backup,
    protect=cfg.storage.protect,
    permissions_boundary=cfg.cluster.permissions_boundary_arn,
    nodes=[cluster.system_nodes],
    tags=tags,
    kubernetes_version=cfg.cluster.kubernetes_version,
), opts=k8s)

# Each model as the gateway routes it: its slots' longest generation bounds its timeouts.
gateway_models = [gateway.GatewayModel(m.name, max(p.generation_seconds for p in plans[m.name].values()))
                  for m in cfg.models]
monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(
    config=cfg.monitoring, storage_class=cluster.block_storage_class,
    rule_groups=alerts.rule_groups(cfg.monitoring.alerts, NAMESPACE, cfg.monitoring.runbook_base_url,
                                   cfg.monitoring.slo, gateway=cfg.gateway),
    dashboards=dashboards.all_dashboards(NAMESPACE, cfg.gateway),
    nodes=[cluster.system_nodes],
    alerting_secrets=stack.alerting_secrets,
), opts=k8s)
addons = Addons(f"{name}-addons", AddonsArgs(
    cluster_name=name, ready_cluster_name=cluster.ready_name, region=stack.region,
    kubernetes_version=cfg.cluster.kubernetes_version, vpc_id=network.vpc_id, bottlerocket=cfg.bottlerocket,
    time_slicing_replicas=cfg.addons.gpu_time_slicing_replicas,
    permissions_boundary=cfg.cluster.permissions_boundary_arn,
    prometheus_selector=SELECTED, monitoring=monitoring.stack, nodes=[cluster.system_nodes],
    tags=tags,
    # The engines' pods and the gateway's proxies: the autoscaler must let each drain.
    longest_grace_seconds=max([ENGINES[p.engine].termination_grace_seconds(p) for slots in plans.values()
                               for p in slots.values()]
                              + ([gateway.proxy_grace_seconds(gateway_models)] if cfg.gateway else []), default=0),
), opts=k8s)

ingress = cfg.ingress
serving = Serving(f"{name}-serving", ServingArgs(
    namespace=NAMESPACE,
    api_key=stack.api_key,
    hf_token=stack.hf_token,
    rate_limit_per_5min=ingress.rate_limit_per_5min if ingress else None,
    access_logs=ingress is not None,
    client_key=cfg.gateway is None,  # behind the gateway each team has its own key
    log_retention_days=cfg.cluster.log_retention_days,
    tags=tags,
), opts=k8s)
# The load balancer's nodes sit in its own subnets (internal) or the public ones.
lb_cidrs, lb_subnets = ([], []) if ingress is None else (
    (network.load_balancer_cidrs, network.load_balancer_subnet_ids) if ingress.scheme == "internal"
    else (network.public_cidrs, network.public_subnet_ids))
for model in cfg.models:
    ModelService(f"{name}-{model.name}", ModelServiceArgs(
        model=model.name,
        engine=model.engine,
        namespace=serving.namespace,
        slots=slot_specs(model, cfg, plans, lock),
        active=model.active_slot,
        replicas=model.replicas,
        block_evictions=model.evictions == "block",
        storage_class=cache.storage_class_name,
        lb_source_cidrs=lb_cidrs,
        download_image=download_image(model),
        hf_token_secret=serving.hf_token_secret,
        ingress=ingress,
        waf_acl_arn=serving.waf_acl_arn,
        access_logs_bucket=serving.access_logs_bucket,
        lb_subnet_ids=lb_subnets,
        prometheus_selector=SELECTED,
        monitoring=monitoring.stack,
        load_balancer_controller=addons.load_balancer_controller,
        cost_tags=stack.cost_tags,
        image_registry=image_cache.registry if image_cache else None,
        store=store,
        gateway_pods=(gateway.PROXY_NAMESPACE, gateway.PROXY_PODS) if cfg.gateway else None,
    ), opts=k8s)

# One OpenAI endpoint for every model, a key per team (docs/gateway.md).
model_gateway = None
if cfg.gateway is not None:
    internal = cfg.gateway.scheme == "internal"
    # The teams' token counts, in stacks that set a quota.
    quota_store = QuotaStore(f"{name}-quotas", QuotaStoreArgs(
        cluster_name=name, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
        node_security_group_id=cluster.node_security_group_id, tags=tags)) if cfg.gateway.quotas else None
    controllers = GatewayControllers(f"{name}-gateway-controllers", GatewayControllersArgs(
        nodes=[cluster.system_nodes], rate_limit_redis_url=quota_store.url if quota_store else None), opts=k8s)
    model_gateway = gateway.ModelGateway(f"{name}-gateway", gateway.ModelGatewayArgs(
        config=cfg.gateway, namespace=serving.namespace,
        models=gateway_models,
        team_keys=stack.team_keys,
        source_cidrs=[cfg.cluster.vpc.cidr] if cfg.cluster.vpc.id is None else [],
        subnet_ids=network.load_balancer_subnet_ids if internal else network.public_subnet_ids,
        subnet_cidrs=network.load_balancer_cidrs if internal else network.public_cidrs,
        cost_tags=stack.cost_tags,
        controllers=controllers.ready,
        monitoring=monitoring.stack, prometheus_selector=SELECTED,
        load_balancer_controller=addons.load_balancer_controller,
    ), opts=k8s)

pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("efsId", cache.file_system.id)
pulumi.export("storageClass", cache.storage_class_name)
pulumi.export("modelPlans", {model_name: {slot: {
    "engine": p.engine, "instanceType": p.instance_type, "numShard": p.num_shard, "maxInputTokens": p.max_input_tokens,
    "maxTotalTokens": p.max_total_tokens, "kvCapacityTokens": p.kv_capacity_tokens,
    "hourlyUsdPerReplica": p.hourly_usd,
} for slot, p in slots.items()} for model_name, slots in plans.items()})
pulumi.export("apiKey", serving.api_key)
# Every team's key, a secret: `pulumi stack output teamKeys --show-secrets` hands them out.
pulumi.export("teamKeys", model_gateway.team_keys if model_gateway else None)
pulumi.export("imageRegistry", image_cache.registry if image_cache else None)
pulumi.export("modelBucket", store.bucket if store else None)
pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
pulumi.export("endpoints", {m.name: f"https://{m.name}.{ingress.domain}" for m in cfg.models}
              if ingress else {})
pulumi.export("gatewayUrl", (f"{'https' if cfg.gateway.certificate_arn else 'http'}://{cfg.gateway.hostname}/v1"
                             if cfg.gateway else None))
