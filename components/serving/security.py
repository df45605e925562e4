"""The hardening every container of a model gets, and the few security checks each engine's image
knowingly does not meet (Engine.checkov_skips, with their reasons), as checkov's skip annotations
on the objects (no global skip list anywhere)."""

from __future__ import annotations

from typing import Mapping, Optional

from ..engines import tgi

# The TGI image's (its download Jobs run it too): components/engines/tgi.py, with the reasons.
CHECKOV_SKIPS, SECRET_ENV_SKIP = tgi.CHECKOV_SKIPS, tgi.SECRET_ENV_SKIP
SECRET_ENV_CHECK = "CKV_K8S_35"  # secrets in the environment: the engines' API key


def without_key_skip(skips: Mapping[str, str]) -> dict[str, str]:
    """An engine's checkov skips for a pod with no API key in its environment."""
    return {k: v for k, v in skips.items() if k != SECRET_ENV_CHECK}


def checkov_skips(skips: dict[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips.items(), 1)}


def hardened(container: dict, engine_context: Optional[Mapping[str, object]] = None) -> dict:
    """No privilege escalation, no capabilities (and no service account token, on the pod), plus
    what the engine's image allows (Engine.security_context: the user, a read-only root). The TGI
    image runs as root: any other UID fails to start (libpython under /root,
    huggingface/text-generation-inference#3082), so runAsNonRoot cannot be set for it; TGI writes
    to /tmp and kernel caches under the root filesystem. The download Jobs run the TGI image."""
    return {**container, "securityContext": {
        "allowPrivilegeEscalation": False, "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
        **(engine_context or {}),
    }}


def pod_security() -> dict:
    return {"seccompProfile": {"type": "RuntimeDefault"}}
