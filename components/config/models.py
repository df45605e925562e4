"""`models`: what each model serves, its replicas and its blue-green slots."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .fields import INT32, Image, Settings, dns_label, vocabulary

SLOTS = ("blue", "green")
STORE_WRITER = "writer"  # the ServiceAccount `<model>-writer` of a model's S3 download Jobs
HF_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


class Replicas(Settings):
    min: int = Field(1, ge=1, le=INT32)
    max: int = Field(1, ge=1, le=INT32)
    # The HPA adds replicas when the average queue per pod is above this: TGI's tgi_queue_size,
    # vLLM's vllm:num_requests_waiting.
    target_queue_size: int = Field(10, ge=1, le=INT32)

    @model_validator(mode="after")
    def _order(self) -> "Replicas":
        if self.min > self.max:
            raise ValueError(f"max: {self.max} is less than min ({self.min})")
        return self


class ModelSettings(Settings):
    """What a model slot runs. At the model level these are the defaults of its slots."""

    id: Optional[str] = None
    revision: Optional[str] = None
    engine: Optional[str] = None  # the vocabulary's engines; unset: the first (tgi)
    quantize: Optional[str] = None
    dtype: Optional[Literal["float16", "bfloat16"]] = None
    node_group: Optional[str] = None
    max_input_tokens: Optional[int] = Field(None, ge=1, le=INT32)
    max_total_tokens: Optional[int] = Field(None, ge=2, le=INT32)
    image: Optional[Image] = None
    # Where the serving pods read the weights from: `efs`, the shared model cache, or `s3`, a
    # bucket of the stack's that vLLM streams from with the Run:ai model streamer (docs/vllm.md).
    store: Optional[Literal["efs", "s3"]] = None

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, v: Any, info: ValidationInfo) -> Any:
        allowed = list(vocabulary(info).engines)
        if v is not None and (not isinstance(v, str) or v not in allowed):
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return v

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize(cls, v: Any, info: ValidationInfo) -> Any:
        # Which engine's modes apply is known once the slots are resolved (ModelConfig._slots);
        # here, any engine's.
        allowed = list(dict.fromkeys(q for e in vocabulary(info).engines.values() for q in e.quantize))
        if v is not None and (not isinstance(v, str) or v not in allowed):
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (len(v) > 96 or not HF_REPO_ID.match(v) or ".." in v or "--" in v):
            raise ValueError(f"{v!r} is not a Hugging Face model repo id, e.g. "
                             "mistralai/Mistral-7B-Instruct-v0.3")
        return v


@dataclass(frozen=True)
class Slot:
    """A model slot with every setting resolved (slot over model over defaults)."""

    slot: str
    id: str
    revision: str
    engine: str
    quantize: Optional[str]
    dtype: Optional[str]
    node_group: str
    max_input_tokens: Optional[int]
    max_total_tokens: Optional[int]
    image: Optional[str]  # None: the engine's default image
    store: str = "efs"  # where the serving pods read the weights from


class ModelConfig(ModelSettings):
    name: str
    id: str
    node_group: str
    replicas: Replicas = Replicas()
    # What a voluntary disruption (node roll, drain, auto-repair, scale-down) may do to the
    # model's pods: `allow` takes one at a time, `block` none (its PodDisruptionBudget allows
    # no eviction, node rolls wait, and its rollouts start the new pod before the old one stops).
    evictions: Literal["allow", "block"] = "allow"
    # Blue-green: each slot overrides the model's settings; the Service sends traffic to `active`.
    slots: dict[Literal[SLOTS], ModelSettings] = {}  # type: ignore[valid-type]
    active: Optional[Literal[SLOTS]] = None  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _default_engine(cls, data: Any, info: ValidationInfo) -> Any:
        # The model's engine is always set: the vocabulary's first (tgi) when unset.
        if isinstance(data, dict) and data.get("engine") is None:
            return {**data, "engine": vocabulary(info).default_engine}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The model's Service is named after it: a DNS-1035 label (a letter first). Every
        # namespace has a ServiceAccount `default`, which the model's would be.
        if v == "default":
            raise ValueError("'default' names the ServiceAccount every namespace has; choose another")
        return dns_label(v, 40, letter_first=True)

    @model_validator(mode="after")
    def _slots(self, info: ValidationInfo) -> "ModelConfig":
        configured = list(self.slots) or ["blue"]
        if self.active is not None and self.active not in configured:
            raise ValueError(f"active: {self.active!r} is not a configured slot; slots: "
                             f"{', '.join(configured)}")
        if len(configured) > 1 and self.active is None:
            raise ValueError("active: required with two slots (blue or green)")
        for slot in self.resolved_slots():
            where = f"slots.{slot.slot}." if self.slots else ""
            engine = vocabulary(info).engines[slot.engine]
            if slot.quantize and slot.quantize not in engine.quantize:
                own = slot.slot in self.slots and "quantize" in self.slots[slot.slot].model_fields_set
                raise ValueError(f"{where if own else ''}quantize: {slot.quantize!r} is not one of "
                                 f"{engine.label}'s modes ({', '.join(engine.quantize)})"
                                 + ("" if own or not self.slots else f", the engine of slots.{slot.slot}"))
            # docs/tgi.md: "Only 1 can be set between dtype and quantize" (bitsandbytes excepted).
            if slot.dtype and slot.quantize and slot.quantize not in engine.quantize_with_dtype:
                raise ValueError(f"{where}dtype: cannot be set together with quantize "
                                 f"{slot.quantize!r} (TGI allows dtype only with the bitsandbytes modes)")
            if slot.store not in engine.stores:
                raise ValueError(f"{where}store: {slot.store!r} is not a store {engine.label} reads from "
                                 f"({', '.join(engine.stores)}): only vLLM streams weights from S3")
            if slot.max_input_tokens is not None and slot.max_total_tokens is not None \
                    and slot.max_input_tokens >= slot.max_total_tokens:
                raise ValueError(f"{where}maxInputTokens: {slot.max_input_tokens} must be less than "
                                 f"maxTotalTokens ({slot.max_total_tokens})")
        return self

    def resolved_slots(self) -> list[Slot]:
        """The slots, each setting taken from the slot, else the model, else the default."""
        out = []
        for name, override in (self.slots or {"blue": ModelSettings()}).items():
            value = {f: getattr(override, f) if f in override.model_fields_set else getattr(self, f)
                     for f in ModelSettings.model_fields}
            out.append(Slot(slot=name, id=value["id"], revision=value["revision"] or "main",
                            engine=value["engine"], quantize=value["quantize"], dtype=value["dtype"],
                            node_group=value["node_group"],
                            max_input_tokens=value["max_input_tokens"],
                            max_total_tokens=value["max_total_tokens"],
                            image=value["image"], store=value["store"] or "efs"))
        return out

    @property
    def active_slot(self) -> str:
        return self.active or next(iter(self.slots), "blue")
