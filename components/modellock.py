"""models.lock.yaml: what the planner knows of each model, resolved once from the Hugging Face Hub.

`python -m components lock` resolves every model of a stack with huggingface_hub (model info with
file metadata, the safetensors headers, config.json) and writes the lock, reviewed and committed
like any lock file. `render` and `pulumi up` read only the lock: no network at deploy time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

LOCK_FILE = "models.lock.yaml"
LOCK_VERSION = 1

# safetensors dtype -> torch dtype name, for the floating types a checkpoint is served in.
_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


class LockError(Exception):
    """The lock is missing, invalid, or does not cover the stack: exit 2 with this message."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    method: str
    bits: Optional[int] = None


class ModelShape(_Strict):
    model_type: str
    num_hidden_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_key_value_heads: int = Field(ge=1)
    head_dim: Optional[int] = Field(None, ge=1)  # null: hidden_size / num_attention_heads
    max_position_embeddings: int = Field(ge=1)
    vocab_size: int = Field(ge=1)

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


class LockEntry(_Strict):
    revision: Optional[str] = None  # commit sha, or null if unknown
    # The revision the config asked for (branch, tag or commit) when the lock was written; a
    # config asking for another one is stale against the lock. Absent: `main`.
    requested_revision: Optional[str] = None
    parameters: int = Field(ge=1)
    weights_bytes: int = Field(ge=1)  # bytes of the weight files as stored
    dtype: Literal["float16", "bfloat16", "float32"]
    quantization: Optional[Quantization] = None
    gated: bool
    config: ModelShape


class Lock(_Strict):
    """`models` is keyed by repo id; a second revision of a repo used at the same time (blue-green)
    is keyed `<repo id>@<requested revision>`."""

    version: Literal[1]
    models: dict[str, LockEntry] = {}

    def find(self, repo_id: str, revision: str) -> Optional[LockEntry]:
        """The entry locked for this repo at this requested revision (or commit), if any."""
        keys = [k for k in self.models if k == repo_id or k.startswith(f"{repo_id}@")]
        return next((self.models[k] for k in keys
                     if revision in (self.models[k].requested_revision or "main", self.models[k].revision)),
                    None)

    def with_entry(self, repo_id: str, entry: LockEntry) -> "Lock":
        """The lock with this entry added, replacing the one for the same repo and revision."""
        requested = entry.requested_revision or "main"
        current = self.models.get(repo_id)
        key = repo_id if current is None or (current.requested_revision or "main") == requested \
            else f"{repo_id}@{requested}"
        return self.model_copy(update={"models": {**self.models, key: entry}})


def read(path: Path) -> Lock:
    if not path.is_file():
        return Lock(version=LOCK_VERSION)
    try:
        return Lock.model_validate(yaml.safe_load(path.read_text()) or {"version": LOCK_VERSION})
    except (ValidationError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()
        raise LockError(f"{path.name} is not a valid lock file ({'; '.join(first[:3])}); "
                        "run `python -m components lock` to rewrite it") from None


def write(path: Path, lock: Lock) -> None:
    doc = lock.model_dump(mode="json")
    doc["models"] = dict(sorted(doc["models"].items()))
    header = ("# Written by `python -m components lock --stack NAME`: what the planner knows of each\n"
              "# model, from the Hugging Face Hub. Review changes like any lock file.\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(path)


def shape_from_config(config: dict) -> ModelShape:
    """The numbers the planner needs from a transformers config.json. Multimodal configs keep
    them under text_config; Falcon spells KV heads `num_kv_heads` or `multi_query` and has no
    max_position_embeddings (transformers' FalconConfig default: 2048)."""
    text = config.get("text_config") or config
    heads = text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads") or text.get("num_kv_heads") or \
        (1 if text.get("multi_query") else heads)
    context = next((text[k] for k in ("max_position_embeddings", "n_positions", "max_seq_len",
                                      "seq_length") if text.get(k)), None)
    if context is None and (config.get("model_type") or text.get("model_type")) == "falcon":
        context = 2048
    if context is None:
        raise ValueError("config.json has no max_position_embeddings")
    return ModelShape(
        model_type=config.get("model_type") or text.get("model_type"),
        num_hidden_layers=text["num_hidden_layers"],
        hidden_size=text["hidden_size"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=text.get("head_dim"),
        max_position_embeddings=context,
        vocab_size=text["vocab_size"],
    )


def quantization_from_config(config: dict) -> Optional[Quantization]:
    q = config.get("quantization_config")
    if not q:
        return None
    method = q.get("quant_method") or ("bitsandbytes" if q.get("load_in_4bit") or q.get("load_in_8bit") else None)
    bits = q.get("bits") or q.get("w_bit")
    if bits is None and q.get("load_in_4bit"):
        bits = 4
    elif bits is None and q.get("load_in_8bit"):
        bits = 8
    elif bits is None and method == "fp8":
        bits = 8
    elif bits is None:  # compressed-tensors: config_groups.<group>.weights.num_bits
        groups = q.get("config_groups") or {}
        bits = next((g.get("weights", {}).get("num_bits") for g in groups.values()), None)
    return Quantization(method=method or "unknown",
                        bits=None if bits is None else math.ceil(float(bits)))


def checkpoint_dtype(config: dict, parameter_count: dict[str, int]) -> str:
    declared = config.get("torch_dtype") or config.get("dtype") or (config.get("text_config") or {}).get("torch_dtype")
    if declared in ("float16", "bfloat16", "float32"):
        return declared
    floats = {_FLOAT_DTYPES[d]: n for d, n in parameter_count.items() if d in _FLOAT_DTYPES}
    return max(floats, key=floats.get) if floats else "float16"


def resolve(repo_id: str, revision: str, token: Optional[str] = None) -> LockEntry:
    """Resolves one model on the Hub (HF_ENDPOINT, HF_TOKEN are honoured by huggingface_hub)."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import (GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    api = HfApi(token=token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
        if info.gated and not (token or get_token()):
            raise LockError(f"{repo_id} is gated ({info.gated}): set HF_TOKEN to a token of an "
                            "account that accepted its license on the Hub")
        sha = info.sha
        safetensors = api.get_safetensors_metadata(repo_id, revision=sha)
        with open(api.hf_hub_download(repo_id, "config.json", revision=sha)) as f:
            config = json.load(f)
    except GatedRepoError:
        raise LockError(f"{repo_id} is gated and the token was refused: accept its license on "
                        "the Hub with the account of HF_TOKEN") from None
    except RevisionNotFoundError:
        raise LockError(f"{repo_id}: revision {revision!r} does not exist") from None
    except RepositoryNotFoundError:
        raise LockError(f"{repo_id}: no such model on the Hub (or it is private: set HF_TOKEN)") from None
    except LockError:
        raise
    except Exception as exc:  # network, an unreadable config.json or safetensors header
        raise LockError(f"{repo_id}: could not be resolved on the Hub: {exc}") from None
    weights = sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".safetensors"))
    return LockEntry(
        revision=sha,
        requested_revision=revision,
        parameters=sum(safetensors.parameter_count.values()),
        weights_bytes=weights,
        dtype=checkpoint_dtype(config, safetensors.parameter_count),
        quantization=quantization_from_config(config),
        gated=bool(info.gated),
        config=shape_from_config(config),
    )
