"""ModelService: one model served on the GPU nodes, built from the small builders of this package.

Per model: a ServiceAccount without a token, the model cache (a ReadWriteMany volume on EFS),
NetworkPolicies (network_policies.py), a Service selecting the active slot and, with an ingress
configured, an Ingress on the shared ALB (exposure.py), a PodMonitor (pod_monitor.py); with an
ingress, a Service per slot too, the Ingress weighting their target groups. Per slot
(blue, green), each on its own engine (TGI or vLLM, `SlotSpec.engine`): the Job that downloads
the pinned revision into the cache (download.py), the Deployment, created once the Job is done
(workload.py), its autoscaler and disruption budget (scaling.py). The Service and Ingress follow
the active slot's engine (its ports and public routes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from ..config import IngressConfig, Replicas
from ..config.images import cached_image
from ..engines import tgi
from . import exposure, network_policies, scaling
from .download import download_job
from .labels import model_labels
from .pod_monitor import pod_monitor
from .scope import Scope
from .slots import SlotSpec
from .store import StoreAccess, store_access
from .workload import deployment


@dataclass
class ModelServiceArgs:
    model: str  # the model's name (DNS label)
    namespace: pulumi.Input[str]
    slots: list[SlotSpec]
    active: str
    replicas: Replicas
    storage_class: pulumi.Input[str]
    lb_source_cidrs: list[str]  # where the load balancer's traffic and health checks come from
    # The model's own engine (models[].engine), in the labels of its shared objects; unset, the
    # first slot's.
    engine: Optional[str] = None
    # The image the model's settings pin (not a slot's): it runs the download Jobs (huggingface_hub).
    download_image: Optional[str] = None
    block_evictions: bool = False  # models[].evictions: block
    hf_token_secret: Optional[pulumi.Input[str]] = None
    ingress: Optional[IngressConfig] = None
    waf_acl_arn: Optional[pulumi.Input[str]] = None
    access_logs_bucket: Optional[pulumi.Input[str]] = None  # Serving.access_logs_bucket
    lb_subnet_ids: Optional[list[pulumi.Input[str]]] = None  # where the load balancer goes
    # Monitoring: the labels Prometheus selects monitors by, and what brings the CRDs.
    prometheus_selector: Optional[dict[str, str]] = None
    monitoring: Optional[pulumi.Resource] = None
    load_balancer_controller: Optional[pulumi.Resource] = None
    # The stack's cost tags, for the load balancer (shared by every model: no model tag here).
    cost_tags: dict[str, str] = field(default_factory=dict)
    # Where the stack's pull-through cache keeps its repositories (ImageCache.registry): the
    # engines' images are pulled through it. None: from their own registries.
    image_registry: Optional[pulumi.Input[str]] = None
    # The stack's S3 model store, required when a slot reads from it (models[].store: s3).
    store: Optional[StoreAccess] = None
    # Behind the gateway (serving/gateway.py): only its Envoy pods reach the engines, which hold
    # no client key (the gateway checks the teams' keys).
    gateway_pods: Optional[tuple[str, dict[str, str]]] = None


class ModelService(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    deployments: dict[str, k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: ModelServiceArgs, opts: pulumi.ResourceOptions | None = None):
        # Named TgiService before the engines were split out: the alias keeps existing stacks'
        # resources in place.
        opts = (opts or pulumi.ResourceOptions()).merge(pulumi.ResourceOptions(
            aliases=[pulumi.Alias(type_="llmserve:serving:TgiService")]))
        super().__init__("llmserve:serving:ModelService", name, None, opts)
        scope = Scope(parent=self, name=name, model=args.model, namespace=args.namespace,
                      labels=model_labels(args.model, args.engine or args.slots[0].engine.name))

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=scope.metadata(args.model),
                                             automount_service_account_token=False, opts=scope.opts())
        cache = k8s.core.v1.PersistentVolumeClaim(f"{name}-cache", metadata=scope.metadata(
            f"{args.model}-cache"), spec={
            "accessModes": ["ReadWriteMany"],
            "storageClassName": args.storage_class,
            "resources": {"requests": {"storage": f"{tgi.cache_request_gib(max(s.stored_bytes for s in args.slots))}Gi"}},
        }, opts=scope.opts())

        # The download Jobs start once they may reach DNS and the Hub (the namespace denies all).
        # Prometheus scrapes each slot's engine on its metrics port (TGI's own, vLLM's http).
        metrics_ports = list(dict.fromkeys(s.engine.metrics_port for s in args.slots))
        on_s3 = [s for s in args.slots if s.slot.store == "s3"]
        if on_s3 and args.store is None:
            raise ValueError("ModelServiceArgs.store is required: a slot reads from the S3 store")
        store = args.store if on_s3 else None
        s3_cidrs = store.cidrs if store else None
        network_policies.serving_policy(scope, args.lb_source_cidrs, metrics_ports, s3_cidrs, args.gateway_pods)
        download_policy = network_policies.download_policy(scope, s3_cidrs)
        writer, grants = (store_access(scope, store, [s.slot.id for s in on_s3], account) if store
                          else (None, []))
        self.deployments, jobs = {}, {}
        for spec in args.slots:
            s3 = spec.slot.store == "s3"
            # Slots that run the same commit from the same store share its download (one Job each).
            commit = (spec.slot.id, spec.revision, spec.slot.store)
            if commit not in jobs:
                image = spec.engine.image(spec.slot.image) if s3 else tgi.image(args.download_image)
                jobs[commit] = download_job(scope, spec, self.pull(args, image), writer if s3 else account,
                                            cache, download_policy, args.hf_token_secret,
                                            store=store if s3 else None, depends_on=grants)
            self.deployments[spec.slot.slot] = workload = deployment(
                scope, spec, args.replicas, account, cache, jobs[commit],
                self.pull(args, spec.engine.image(spec.slot.image)), surge=args.block_evictions,
                store=store, depends_on=grants, client_key=args.gateway_pods is None)
            if args.replicas.max > args.replicas.min:
                scaling.autoscaler(scope, spec, args.replicas, workload)
            scaling.disruption_budget(scope, spec, block=args.block_evictions)

        # Blue-green: the selector moves to a slot once its Deployment is ready (exposure.py).
        active = next(s for s in args.slots if s.slot.slot == args.active)
        ready = self.deployments[args.active]
        # Behind the load balancer each slot has its own Service and target group, for as long as
        # the slot exists: adding green leaves blue's target group as it is, the switch moves the
        # weights between two warm ones, and removing blue leaves green's (a target group that
        # moved with a selector would start its targets in `initial`: 503s).
        tags = {"model": args.model}
        slot_services = ({s.slot.slot: exposure.slot_service(scope, s.slot.slot, tags) for s in args.slots}
                         if args.ingress is not None else None)
        service = exposure.service(scope, args.active, active.engine, ready=ready,
                                   tags=tags if args.ingress is not None and not slot_services else None)
        self.service_name = service.metadata.name
        if args.ingress is not None:
            # Every target group of the model drains for its slowest slot's generations.
            delay = max(s.engine.deregistration_delay_seconds(s.plan) for s in args.slots)
            exposure.ingress(scope, args.ingress, service, active.engine.public_routes,
                             args.waf_acl_arn, args.load_balancer_controller,
                             deregistration_delay_seconds=delay, access_logs_bucket=args.access_logs_bucket,
                             subnet_ids=args.lb_subnet_ids, cost_tags=args.cost_tags,
                             slot_services=slot_services, active=args.active, ready=ready)
        if args.prometheus_selector is not None:
            pod_monitor(scope, args.prometheus_selector, args.monitoring,
                        {s.engine.name: s.engine.metrics_port for s in args.slots})
        self.register_outputs({"service": self.service_name})

    @staticmethod
    def pull(args: ModelServiceArgs, image: str) -> pulumi.Input[str]:
        """The reference the nodes pull `image` by: through the stack's pull-through cache when it
        has one (an image of a registry ECR does not cache stays as it is)."""
        if args.image_registry is None:
            return image
        return pulumi.Output.from_input(args.image_registry).apply(lambda root: cached_image(image, root))
