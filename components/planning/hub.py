"""The Hugging Face Hub client of `lock`: one model at one revision resolved into a lock entry
with huggingface_hub (model info with file metadata, the safetensors headers, config.json)."""

from __future__ import annotations

import json
import math
from typing import Optional

from .lock import LockEntry, LockError, ModelShape, Quantization

# safetensors dtype -> torch dtype name, for the floating types a checkpoint is served in.
_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


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
