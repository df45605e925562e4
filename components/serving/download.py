"""The download Job of a slot: the locked commit from the Hub into the model cache (EFS) or the S3
model store, on the system nodes, before any GPU node is needed."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from ..engines import tgi
from ..engines.base import store_prefix
from ..infra.node_group import SYSTEM_NODES
from .labels import download_job_name
from .scope import Scope
from .security import CHECKOV_SKIPS, checkov_skips, hardened, pod_security, without_key_skip
from .shared import HF_TOKEN_KEY
from .slots import SlotSpec
from .store import StoreAccess

SCRATCH_PATH = "/scratch"
SCRATCH_SIZE = "50Gi"


def download_job(scope: Scope, spec: SlotSpec, image: pulumi.Input[str], account: k8s.core.v1.ServiceAccount,
                 cache: k8s.core.v1.PersistentVolumeClaim, policy: pulumi.Resource,
                 hf_token_secret: Optional[pulumi.Input[str]], store: Optional[StoreAccess] = None,
                 depends_on: Sequence[pulumi.Resource] = ()) -> k8s.batch.v1.Job:
    """The Job of one commit, whichever slots use it: nothing in it comes from a slot's own
    settings, so adding or removing a slot leaves it as it is (a changed Job template would
    replace the Job and download again). Into the EFS cache with TGI's image, or, for a slot on
    the S3 store (`store`), into the bucket with its engine's image (vLLM's: huggingface_hub and
    boto3), as the writer ServiceAccount, one file at a time through a scratch disk."""
    slot = spec.slot
    labels = {**scope.labels, "app.kubernetes.io/component": "download"}
    env = [{"name": "MODEL_ID", "value": slot.id}, {"name": "REVISION", "value": spec.revision}]
    if store is None:
        env += [{"name": "HUGGINGFACE_HUB_CACHE", "value": tgi.HUB_CACHE},
                {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}]
        command, skips, context = ["python", "-c", tgi.download_script()], CHECKOV_SKIPS, None
        mounts = [{"name": "cache", "mountPath": tgi.CACHE_PATH}]
        volumes = [{"name": "cache", "persistentVolumeClaim": {"claimName": cache.metadata.name}}]
    else:
        engine = spec.engine
        env += [{"name": "BUCKET", "value": store.bucket},
                {"name": "PREFIX", "value": store_prefix(slot.id, spec.revision)},
                {"name": "SCRATCH", "value": SCRATCH_PATH}, *store.region_env(),
                *({"name": k, "value": v} for k, v in engine.env(scope.model, slot, spec.plan, spec.revision).items()
                  if k == "HOME")]
        command, context = ["python3", "-c", engine.store_script()], engine.security_context
        skips = without_key_skip(engine.checkov_skips)  # no API key in its environment
        scratch = [*engine.scratch, ("scratch", SCRATCH_PATH)]
        mounts = [{"name": name, "mountPath": path} for name, path in scratch]
        # The largest file of a repo at a time (shards of a few GB), never the model.
        volumes = [{"name": name, "emptyDir": {"sizeLimit": SCRATCH_SIZE}} for name, _ in scratch]
    if spec.gated:
        env.append({"name": HF_TOKEN_KEY, "valueFrom": {"secretKeyRef": {
            "name": hf_token_secret, "key": HF_TOKEN_KEY}}})
    timeout = (tgi.job_timeout_seconds(spec.stored_bytes) if store is None else
               tgi.job_timeout_seconds(spec.stored_bytes, spec.engine.memory.startup.image_bytes, transfers=2))
    job_name = download_job_name(scope.model, slot.id, spec.revision, slot.store)
    # Named for the commit it downloads, not for a slot: removing the slot that created it
    # must not rename it (the Kubernetes name would clash while both exist).
    return k8s.batch.v1.Job(f"{scope.name}-{job_name.removeprefix(scope.model + '-')}", metadata=scope.metadata(
        job_name, labels,
        annotations=checkov_skips(skips),
    ), spec={
        "backoffLimit": 3,
        "activeDeadlineSeconds": timeout,
        "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "OnFailure",
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            # No GPU needed: the download runs on the system nodes, before any GPU node.
            "nodeSelector": SYSTEM_NODES,
            "containers": [hardened({
                "name": "download",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "env": env,
                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"},
                              "limits": {"cpu": "2", "memory": "4Gi"}},
                "volumeMounts": mounts,
            }, context)],
            "volumes": volumes,
        }},
    }, opts=scope.opts(
        delete_before_replace=True, depends_on=[policy, *depends_on],
        aliases=[pulumi.Alias(name=f"{scope.name}-{slot.slot}-download")],  # its earlier name
        custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")))
