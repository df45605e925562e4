"""models.lock.yaml: what the planner knows of each model, resolved once from the Hugging Face Hub.

`python -m components lock` resolves every model of a stack on the Hub (planning/hub.py) and
writes the lock, reviewed and committed like any lock file. `render` and `pulumi up` read only the lock: no network at deploy time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

LOCK_FILE = "models.lock.yaml"
LOCK_VERSION = 1


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
