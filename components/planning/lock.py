"""models.lock.yaml: what the planner knows of each model, resolved once from the Hugging Face Hub.

`python -m components lock` resolves every model of a stack on the Hub (planning/hub.py) and
writes the lock, reviewed and committed like any lock file. `render` and `pulumi up` read only the lock: no network at deploy time.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

LOCK_FILE = "models.lock.yaml"
LOCK_VERSION = 1
COMMIT = re.compile(r"[0-9a-f]{40}")  # a git commit sha as the Hub spells it (lowercase)

# A count: an integer >= 1; strict, so that "64", 64.0 or true from a config.json are refused.
Count = Annotated[int, Field(strict=True, ge=1)]


class LockError(Exception):
    """The lock is missing, invalid, or does not cover the stack: exit 2 with this message."""


def field_errors(exc: ValidationError, prefix: str = "") -> str:
    """A ValidationError as `field problem; ...`: field names and the rule, never the input
    (which may come from a server)."""
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        field = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            out.append(f"{field} missing")
        elif e["type"] in ("int_type", "greater_than_equal"):  # every int of the schema is a Count
            out.append(f"{field} must be a positive integer")
        elif e["type"] == "value_error":  # our validators' messages follow the field name
            out.append(f"{field} {e['msg'].removeprefix('Value error, ')}")
        else:
            out.append(f"{field}: {e['msg']}")
    return "; ".join(out)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    method: str
    bits: Optional[Count] = None


class ModelShape(_Strict):
    model_type: str
    num_hidden_layers: Count
    hidden_size: Count
    num_attention_heads: Count
    num_key_value_heads: Count
    head_dim: Optional[Count] = None  # null: hidden_size / num_attention_heads
    max_position_embeddings: Count
    vocab_size: Count
    # The MLP's width (config.json `intermediate_size`; Falcon's `ffn_hidden_size`); absent in
    # older locks: 4 x hidden_size, the classic transformer's.
    intermediate_size: Optional[Count] = None

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def mlp_width(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size


class LockEntry(_Strict):
    revision: Optional[str] = None  # commit sha, or null if unknown
    # The revision the config asked for (branch, tag or commit) when the lock was written; a
    # config asking for another one is stale against the lock. Absent: `main`.
    requested_revision: Optional[str] = None
    parameters: Count
    weights_bytes: Count  # bytes of the weight files as stored
    dtype: Literal["float16", "bfloat16", "float32"]
    quantization: Optional[Quantization] = None
    gated: bool
    config: ModelShape

    @field_validator("revision")
    @classmethod
    def _commit(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not COMMIT.fullmatch(value):
            raise ValueError("must be a 40-hex commit sha (lowercase)")
        return value


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
        problem = field_errors(exc) if isinstance(exc, ValidationError) else "; ".join(str(exc).splitlines()[:3])
        raise LockError(f"{path.name} is not a valid lock file ({problem}); "
                        "run `python -m components lock` to rewrite it") from None


def write(path: Path, lock: Lock) -> None:
    doc = lock.model_dump(mode="json")
    doc["models"] = dict(sorted(doc["models"].items()))
    header = ("# Written by `python -m components lock --stack NAME`: what the planner knows of each\n"
              "# model, from the Hugging Face Hub. Review changes like any lock file.\n")
    text = header + yaml.safe_dump(doc, sort_keys=False)
    # Atomic: a unique temporary file next to the lock, on disk before it replaces the lock
    # (os.replace is atomic within a file system); on any failure the old lock stays as it was.
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp: 0600
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise LockError(f"could not write {path}: {exc.strerror or type(exc).__name__}") from None
        raise
