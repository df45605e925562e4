"""The download Job of a slot: the locked commit from the Hub into the model cache, on the system
nodes, before any GPU node is needed."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from ..engines import tgi
from ..infra.node_group import NODE_GROUP_LABEL
from .labels import SYSTEM_GROUP, download_job_name
from .scope import Scope
from .security import CHECKOV_SKIPS, checkov_skips, hardened, pod_security
from .shared import HF_TOKEN_KEY
from .slots import SlotSpec


def download_job(scope: Scope, spec: SlotSpec, image: str, account: k8s.core.v1.ServiceAccount,
                 cache: k8s.core.v1.PersistentVolumeClaim, policy: pulumi.Resource,
                 hf_token_secret: Optional[pulumi.Input[str]]) -> k8s.batch.v1.Job:
    """The Job of one commit, whichever slots use it: nothing in it comes from a slot's own
    settings, so adding or removing a slot leaves it as it is (a changed Job template would
    replace the Job and download again)."""
    slot = spec.slot
    labels = {**scope.labels, "app.kubernetes.io/component": "download"}
    env = [{"name": "MODEL_ID", "value": slot.id}, {"name": "REVISION", "value": spec.revision},
           {"name": "HUGGINGFACE_HUB_CACHE", "value": tgi.HUB_CACHE},
           {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}]
    if spec.gated:
        env.append({"name": HF_TOKEN_KEY, "valueFrom": {"secretKeyRef": {
            "name": hf_token_secret, "key": HF_TOKEN_KEY}}})
    timeout = tgi.job_timeout_seconds(spec.stored_bytes)
    job_name = download_job_name(scope.model, slot.id, spec.revision)
    # Named for the commit it downloads, not for a slot: removing the slot that created it
    # must not rename it (the Kubernetes name would clash while both exist).
    return k8s.batch.v1.Job(f"{scope.name}-{job_name.removeprefix(scope.model + '-')}", metadata=scope.metadata(
        job_name, labels,
        annotations=checkov_skips(CHECKOV_SKIPS),
    ), spec={
        "backoffLimit": 3,
        "activeDeadlineSeconds": timeout,
        "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "OnFailure",
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            # No GPU needed: the download runs on the system nodes, before any GPU node.
            "nodeSelector": {NODE_GROUP_LABEL: SYSTEM_GROUP},
            "containers": [hardened({
                "name": "download",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", tgi.download_script()],
                "env": env,
                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"},
                              "limits": {"cpu": "2", "memory": "4Gi"}},
                "volumeMounts": [{"name": "cache", "mountPath": tgi.CACHE_PATH}],
            })],
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": cache.metadata.name}}],
        }},
    }, opts=scope.opts(
        delete_before_replace=True, depends_on=[policy],
        aliases=[pulumi.Alias(name=f"{scope.name}-{slot.slot}-download")],  # its earlier name
        custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")))
