"""The Hugging Face Hub client of `lock`: one model at one revision resolved into a lock entry
with huggingface_hub (model info with file metadata, the safetensors headers, config.json)."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from pydantic import ValidationError

from .lock import COMMIT, LockEntry, LockError, ModelShape, Quantization, field_errors

# safetensors dtype -> torch dtype name, for the floating types a checkpoint is served in.
_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def shape_from_config(config: dict) -> ModelShape:
    """The numbers the planner needs from a transformers config.json. Multimodal configs keep
    them under text_config; Falcon spells KV heads `num_kv_heads` or `multi_query` and has no
    max_position_embeddings (transformers' FalconConfig default: 2048). A missing or malformed
    field is a ValueError naming it."""
    text = config.get("text_config") or config
    if not isinstance(text, dict):
        raise ValueError("text_config must be a JSON object")
    heads = text.get("num_attention_heads")
    kv_heads = text.get("num_key_value_heads") or text.get("num_kv_heads") or \
        (1 if text.get("multi_query") else heads)
    context = next((text[k] for k in ("max_position_embeddings", "n_positions", "max_seq_len",
                                      "seq_length") if text.get(k)), None)
    if context is None and (config.get("model_type") or text.get("model_type")) == "falcon":
        context = 2048
    fields = dict(model_type=config.get("model_type") or text.get("model_type"),
                  num_hidden_layers=text.get("num_hidden_layers"), hidden_size=text.get("hidden_size"),
                  num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=text.get("head_dim"),
                  max_position_embeddings=context, vocab_size=text.get("vocab_size"),
                  intermediate_size=text.get("intermediate_size") or text.get("ffn_hidden_size"))
    try:  # absent fields left out: the error says `missing`, not `must be a positive integer`
        return ModelShape.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise ValueError(field_errors(exc, "text_config." if text is not config else "")) from None


def quantization_from_config(config: dict) -> Optional[Quantization]:
    q = config.get("quantization_config")
    if not q:
        return None
    if not isinstance(q, dict):
        raise ValueError("quantization_config must be a JSON object")
    method = q.get("quant_method") or ("bitsandbytes" if q.get("load_in_4bit") or q.get("load_in_8bit") else None)
    bits = q.get("bits") or q.get("w_bit")
    if bits is None and q.get("load_in_4bit"):
        bits = 4
    elif bits is None and q.get("load_in_8bit"):
        bits = 8
    elif bits is None and method == "fp8":
        bits = 8
    elif bits is None:  # compressed-tensors: config_groups.<group>.weights.num_bits
        groups = q.get("config_groups")
        bits = next((g["weights"].get("num_bits") for g in (groups.values() if isinstance(groups, dict) else ())
                     if isinstance(g, dict) and isinstance(g.get("weights"), dict)), None)
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, float)) or not math.isfinite(bits)):
        raise ValueError("quantization_config.bits must be a number")
    try:
        return Quantization(method=method or "unknown", bits=None if bits is None else math.ceil(bits))
    except ValidationError as exc:
        raise ValueError(field_errors(exc, "quantization_config.")) from None


def checkpoint_dtype(config: dict, parameter_count: dict[str, int]) -> str:
    declared = config.get("torch_dtype") or config.get("dtype") or (config.get("text_config") or {}).get("torch_dtype")
    if declared in ("float16", "bfloat16", "float32"):
        return declared
    floats = {_FLOAT_DTYPES[d]: n for d, n in parameter_count.items() if d in _FLOAT_DTYPES}
    return max(floats, key=floats.get) if floats else "float16"


def resolve(repo_id: str, revision: str, token: Optional[str] = None) -> LockEntry:
    """Resolves one model on the Hub (HF_ENDPOINT, HF_TOKEN are honoured by huggingface_hub).
    Any failure is a LockError naming the repo, without the server's text and never the token."""
    import httpx2
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError, SafetensorsParsingError)

    # Read per call. huggingface_hub parses both variables into `constants` (default 10 s), but
    # its own defaults are bound at import (`timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT`) or
    # absent (`model_info(timeout=None)` waits forever).
    timeouts = constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT
    try:
        return _resolve(repo_id, revision, token, *timeouts)
    except LockError as exc:
        message = str(exc)
    except GatedRepoError:  # a subclass of RepositoryNotFoundError
        message = (f"{repo_id} is gated and the token was refused: accept its license on "
                   "the Hub with the account of HF_TOKEN")
    except RevisionNotFoundError:
        message = f"{repo_id}: revision {revision!r} does not exist"
    except RepositoryNotFoundError:
        message = f"{repo_id}: no such model on the Hub (or it is private: set HF_TOKEN)"
    except HfHubHTTPError as exc:
        # str(exc) quotes the server (X-Error-Message, the body's `error`): not printed.
        status = exc.response.status_code
        message = f"{repo_id}: the Hub answered HTTP {status} ({'server' if status >= 500 else 'client'} error)"
    except httpx2.TimeoutException:
        message = (f"{repo_id}: the Hub did not answer in time (HF_HUB_ETAG_TIMEOUT={timeouts[0]} s "
                   f"for metadata, HF_HUB_DOWNLOAD_TIMEOUT={timeouts[1]} s for files)")
    except SafetensorsParsingError:
        message = f"{repo_id}: a safetensors header on the Hub could not be parsed"
    except Exception as exc:  # network, or an answer the client could not read
        message = f"{repo_id}: could not be resolved on the Hub ({type(exc).__name__})"
    for secret in {token, get_token()} - {None, ""}:  # second line of defence
        message = message.replace(secret, "[token]")
    raise LockError(message) from None


def _resolve(repo_id: str, revision: str, token: Optional[str], meta_timeout: float,
             file_timeout: float) -> LockEntry:
    from huggingface_hub import HfApi, get_token, hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    api = HfApi(token=token)
    info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=meta_timeout)
    if info.gated and not (token or get_token()):
        raise LockError(f"{repo_id} is gated ({info.gated}): set HF_TOKEN to a token of an "
                        "account that accepted its license on the Hub")
    sha = info.sha
    if not isinstance(sha, str) or not COMMIT.fullmatch(sha):
        raise LockError(f"{repo_id}: the model info's sha is not a 40-hex commit")
    if COMMIT.fullmatch(revision) and sha != revision:
        raise LockError(f"{repo_id}: the model info's sha is another commit than the requested {revision}")

    def fetch_json(filename: str):
        # One GET at the commit, as parse_safetensors_file_metadata reads a header; not
        # hf_hub_download, which retries a failed HEAD with a fixed 60 s timeout and 5 backoff
        # retries (file_download._ETAG_RETRY_TIMEOUT, http_backoff): minutes on a stalled Hub.
        url = hf_hub_url(repo_id, filename, revision=sha, endpoint=api.endpoint)
        try:
            response = get_session().get(url, headers=build_hf_headers(token=token), timeout=file_timeout)
            hf_raise_for_status(response)
        except RemoteEntryNotFoundError:
            raise LockError(f"{repo_id}: no {filename} at {sha}") from None
        if response.headers.get("X-Repo-Commit", sha) != sha:
            raise LockError(f"{repo_id}: the Hub served {filename} of another commit than {sha}")
        try:
            return json.loads(response.content)
        except ValueError:
            raise LockError(f"{repo_id}: {filename} is not JSON") from None

    # The weights get_safetensors_metadata reads: model.safetensors, else the shards of the index.
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    if "model.safetensors" in sizes:
        shards = ["model.safetensors"]
    elif "model.safetensors.index.json" in sizes:
        index = fetch_json("model.safetensors.index.json")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not weight_map or not isinstance(weight_map, dict) or \
                not all(isinstance(f, str) for f in weight_map.values()):
            raise LockError(f"{repo_id}: model.safetensors.index.json: weight_map must map tensors to files")
        shards = sorted(set(weight_map.values()))
    else:
        raise LockError(f"{repo_id}: no model.safetensors or model.safetensors.index.json at {sha}")
    for shard in shards:
        size = sizes.get(shard)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise LockError(f"{repo_id}: model info: the size of {shard} must be a positive integer")
    with ThreadPoolExecutor(max_workers=8) as pool:  # get_safetensors_metadata uses threads too
        headers = list(pool.map(lambda f: api.parse_safetensors_file_metadata(
            repo_id, f, revision=sha, timeout=file_timeout), shards))
    parameter_count: dict[str, int] = {}
    for header in headers:
        for dtype, n in header.parameter_count.items():
            parameter_count[dtype] = parameter_count.get(dtype, 0) + n
    if sum(parameter_count.values()) < 1 or min(parameter_count.values()) < 0:
        raise LockError(f"{repo_id}: safetensors headers: parameter_count must be positive")

    config = fetch_json("config.json")
    try:
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        shape, quantization = shape_from_config(config), quantization_from_config(config)
    except ValueError as exc:  # our messages: field names, no values
        raise LockError(f"{repo_id}: config.json: {exc}") from None
    return LockEntry(
        revision=sha,
        requested_revision=revision,
        parameters=sum(parameter_count.values()),
        weights_bytes=sum(sizes[s] for s in shards),
        dtype=checkpoint_dtype(config, parameter_count),
        quantization=quantization,
        gated=bool(info.gated),
        config=shape,
    )
