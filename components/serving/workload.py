"""The Deployment of a slot: its engine (TGI, vLLM: `SlotSpec.engine`) on the GPU nodes of its
node group, sized by its plan, started once its download Job is done."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from ..config import Replicas
from ..engines.base import MODEL_URI_ENV, store_prefix
from ..infra.node_group import GPU_TOLERATION, NODE_GROUP_LABEL
from .labels import MODEL_LABEL, SLOT_LABEL
from .scope import Scope
from ..planning.planner import PRESTOP_SECONDS
from .security import checkov_skips, hardened, pod_security, without_key_skip
from .shared import API_KEY_KEY, API_KEY_SECRET
from .slots import SlotSpec
from .store import StoreAccess


SCRATCH_SIZE = "10Gi"  # compile and kernel caches, IPC sockets: on the node's disk


def slot_labels(scope: Scope, spec: SlotSpec) -> dict[str, str]:
    return {**scope.labels, "app.kubernetes.io/name": spec.engine.name, SLOT_LABEL: spec.slot.slot,
            "app.kubernetes.io/component": "server",
            "app.kubernetes.io/version": spec.engine.image(spec.slot.image).rsplit(":", 1)[-1][:63]}


def slot_selector(scope: Scope, slot: str) -> dict[str, str]:
    return {MODEL_LABEL: scope.model, SLOT_LABEL: slot}


def deployment(scope: Scope, spec: SlotSpec, replicas: Replicas, account: k8s.core.v1.ServiceAccount,
               cache: k8s.core.v1.PersistentVolumeClaim, job: k8s.batch.v1.Job, image: pulumi.Input[str],
               surge: bool = False, store: Optional[StoreAccess] = None,
               depends_on: Sequence[pulumi.Resource] = (), client_key: bool = True) -> k8s.apps.v1.Deployment:
    """`image`: the engine's image as the nodes pull it (ModelService.pull). `surge`: start a new
    pod before stopping an old one (the model's evictions are blocked, so a rollout must not take
    its only replica down either; the autoscaler adds the node)."""
    slot, plan, engine = spec.slot, spec.plan, spec.engine
    labels, selector = slot_labels(scope, spec), slot_selector(scope, slot.slot)
    resources = engine.pod_resources(spec.instances, plan.num_shard)
    env = [{"name": k, "value": v} for k, v in engine.env(scope.model, slot, plan, spec.revision).items()]
    # The same Secret for every engine, read into the engine's variable; behind the gateway none
    # (`client_key` False): the gateway checks the teams' keys, the engine holds no key to log.
    if client_key:
        env.append({"name": engine.api_key_env, "valueFrom": {"secretKeyRef": {
            "name": API_KEY_SECRET, "key": API_KEY_KEY}}})
    if slot.store == "s3":  # the commit in the stack's bucket, read by Pod Identity (store.py)
        env += [{"name": MODEL_URI_ENV, "value": pulumi.Output.concat(
                    "s3://", store.bucket, "/", store_prefix(slot.id, spec.revision))},
                *store.region_env()]
    args = engine.args(scope.model, slot, plan, spec.revision)
    # One rollout step: an old pod drains (its GPUs), a new one starts.
    create, step = engine.deployment_timeout_seconds(plan), engine.deployment_update_timeout_seconds(plan)
    scratch = [{"name": name, "mountPath": path} for name, path in engine.scratch]
    return k8s.apps.v1.Deployment(f"{scope.name}-{slot.slot}", metadata=scope.metadata(
        f"{scope.model}-{slot.slot}", labels,
        # Without the key in its environment (behind the gateway), not the check it skips for it.
        annotations=checkov_skips(dict(engine.checkov_skips) if client_key else without_key_skip(engine.checkov_skips)),
    ), spec={
        # With an autoscaler the replica count is its to set.
        **({} if replicas.max > replicas.min else {"replicas": replicas.min}),
        "selector": {"matchLabels": selector},
        # Without progress for this long a rollout is "failed" (ProgressDeadlineExceeded), and
        # `kubectl rollout status` stops waiting; the default 600 s is shorter than one GPU pod's
        # start (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
        # #progress-deadline-seconds).
        "progressDeadlineSeconds": step,
        # Without surge no spare GPU node is needed: pods are replaced one at a time. Model
        # changes without downtime go through a second slot (blue-green).
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0} if surge
                     else {"maxSurge": 0, "maxUnavailable": 1}},
        "template": {"metadata": {"labels": labels}, "spec": {
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "terminationGracePeriodSeconds": engine.termination_grace_seconds(plan),
            **engine.pod_spec,
            "tolerations": [GPU_TOLERATION],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": NODE_GROUP_LABEL, "operator": "In", "values": [slot.node_group]}]}]}}},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": selector}}
                for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")],
            "containers": [hardened({
                "name": engine.container,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                **({"args": args} if args else {}),
                "env": env,
                "ports": [{"name": name, "containerPort": port, "protocol": "TCP"}
                          for name, port in engine.ports],
                "resources": {
                    "requests": {"cpu": resources.cpu_request, "memory": resources.memory,
                                 "nvidia.com/gpu": str(plan.num_shard)},
                    "limits": {"cpu": resources.cpu_limit, "memory": resources.memory,
                               "nvidia.com/gpu": str(plan.num_shard)},
                },
                **engine.probes(plan),
                # Keep serving while the load balancer deregisters the pod, then the engine drains
                # (TGI's GRACEFUL_TERMINATION_TIMEOUT, vLLM's --shutdown-timeout: the plan's
                # generation cap).
                "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
                "volumeMounts": [{"name": "cache", "mountPath": engine.cache_path},
                                 {"name": "shm", "mountPath": "/dev/shm"}, *scratch],
            }, engine.security_context)],
            "volumes": [
                {"name": "cache", "persistentVolumeClaim": {"claimName": cache.metadata.name}},
                # NCCL between shards needs shared memory (docs/tgi.md, docs/vllm.md).
                {"name": "shm", "emptyDir": {"medium": "Memory",
                                             "sizeLimit": f"{engine.shm_size_gib(plan.num_shard)}Gi"}},
                # The writable directories of a read-only root filesystem (Engine.scratch).
                *({"name": name, "emptyDir": {"sizeLimit": SCRATCH_SIZE}} for name, _ in engine.scratch),
            ],
        }},
    }, opts=scope.opts(
        depends_on=[job, *depends_on],
        # A rollout replaces the pods one step at a time, up to replicas.max of them.
        custom_timeouts=pulumi.CustomTimeouts(create=f"{create}s", update=f"{step * replicas.max}s")))
