"""Names and labels of a model's objects, chosen here so that every builder agrees on them."""

from __future__ import annotations

import hashlib

MODEL_LABEL = "llmserve/model"
SLOT_LABEL = "llmserve/slot"
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}  # the operator labels Prometheus' pods so


def model_labels(model: str, engine: str) -> dict[str, str]:
    """`engine`: the model's own (a slot's pods carry their slot's: workload.slot_labels)."""
    return {"app.kubernetes.io/name": engine, "app.kubernetes.io/instance": model,
            "app.kubernetes.io/part-of": "llmserve", MODEL_LABEL: model}


def component(model: str, name: str) -> dict[str, str]:
    """Selects the pods of one part of the model: `server` or `download`."""
    return {MODEL_LABEL: model, "app.kubernetes.io/component": name}


def download_job_name(model: str, model_id: str, revision: str, store: str = "efs") -> str:
    """A Job per (model, revision, store): a new revision gets a new download Job."""
    digest = hashlib.sha256(f"{model_id}@{revision}{'' if store == 'efs' else ':' + store}".encode()).hexdigest()[:10]
    return f"{model}-download-{digest}"
