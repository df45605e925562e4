"""The hardening every container of a model gets, and the few security checks the TGI image
knowingly does not meet, each with its reason, as checkov's skip annotations on the objects (no
global skip list anywhere)."""

from __future__ import annotations

_ROOT = ("the TGI image runs as root and fails under any other UID (libpython under /root, "
         "huggingface/text-generation-inference#3082); privileges, capabilities and the token are dropped instead")
CHECKOV_SKIPS = {
    "CKV_K8S_23": _ROOT,
    "CKV_K8S_40": _ROOT,
    "CKV_K8S_22": "TGI writes to /tmp and to kernel and compiler caches under the root filesystem",
    "CKV_K8S_43": "pinned to a release tag by the stack config (models[].image); give tag@sha256:... to pin bytes",
    "CKV_K8S_15": "the tag is pinned and never moves: IfNotPresent starts pods from the node's cached image "
                  "when the registry is unreachable",
}
SECRET_ENV_SKIP = {"CKV_K8S_35": "TGI reads API_KEY from its environment only (launcher setting)"}


def checkov_skips(skips: dict[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips.items(), 1)}


def hardened(container: dict) -> dict:
    # The TGI image runs as root: any other UID fails to start (libpython under /root,
    # huggingface/text-generation-inference#3082), so runAsNonRoot cannot be set. Everything else
    # is locked down: no privilege escalation, no capabilities, no service account token.
    return {**container, "securityContext": {
        "allowPrivilegeEscalation": False, "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        # TGI writes to /tmp and kernel caches under the root filesystem.
        "readOnlyRootFilesystem": False,
    }}


def pod_security() -> dict:
    return {"seccompProfile": {"type": "RuntimeDefault"}}
