"""`python -m components lock`: the real huggingface_hub against a local server that answers like
the Hub (HF_ENDPOINT); the lock it writes; gated models; and what the program does with the lock."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.planning.hub import quantization_from_config, shape_from_config
from components.planning.lock import read

from ..conftest import ROOT, stack_settings
from ..fake_hub import FakeHub, Repo, safetensors_file

SHA = "1234567890abcdef1234567890abcdef12345678"
OLD = "fedcba0987654321fedcba0987654321fedcba09"


def _llama(layers: int = 2, hidden: int = 64, heads: int = 4, kv: int = 2, vocab: int = 1000):
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": layers,
            "hidden_size": hidden, "num_attention_heads": heads, "num_key_value_heads": kv,
            "max_position_embeddings": 4096, "vocab_size": vocab, "intermediate_size": 4 * hidden,
            "torch_dtype": "bfloat16"}


def _layer_tensors(i: int, hidden: int, kv_dim: int, dtype: str) -> dict:
    p = f"model.layers.{i}"
    return {f"{p}.self_attn.q_proj.weight": (dtype, [hidden, hidden]),
            f"{p}.self_attn.k_proj.weight": (dtype, [kv_dim, hidden]),
            f"{p}.self_attn.v_proj.weight": (dtype, [kv_dim, hidden]),
            f"{p}.self_attn.o_proj.weight": (dtype, [hidden, hidden]),
            f"{p}.mlp.up_proj.weight": (dtype, [4 * hidden, hidden])}


def tiny_llama() -> dict[str, bytes]:
    """Two safetensors shards with an index, as large checkpoints are stored."""
    shard1 = {"model.embed_tokens.weight": ("BF16", [1000, 64]), **_layer_tensors(0, 64, 32, "BF16")}
    shard2 = {**_layer_tensors(1, 64, 32, "BF16"), "lm_head.weight": ("BF16", [1000, 64])}
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    files = {names[0]: safetensors_file(shard1), names[1]: safetensors_file(shard2)}
    index = {"metadata": {"total_size": sum(len(f) for f in files.values())},
             "weight_map": {**{t: names[0] for t in shard1}, **{t: names[1] for t in shard2}}}
    return {"config.json": json.dumps(_llama()).encode(),
            "model.safetensors.index.json": json.dumps(index).encode(), **files}


def tiny_awq() -> dict[str, bytes]:
    config = {**_llama(), "torch_dtype": "float16",
              "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    tensors = {"model.embed_tokens.weight": ("F16", [1000, 64]),
               "model.layers.0.mlp.up_proj.qweight": ("I32", [64, 32]),
               "model.layers.0.mlp.up_proj.scales": ("F16", [1, 256])}
    return {"config.json": json.dumps(config).encode(), "model.safetensors": safetensors_file(tensors)}


PARAMS = 2 * 1000 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 256 * 64)


@pytest.fixture
def hub():
    repos = {
        "acme/tiny-llama": Repo(tiny_llama(), sha=SHA, revisions={"v1": OLD}),
        "acme/tiny-awq": Repo(tiny_awq(), sha=SHA),
        "gated-org/gated-model": Repo(tiny_llama(), sha=SHA, gated="manual", tokens=("hf_accepted",)),
    }
    with FakeHub(repos) as server:
        yield server


def _stack(tmp_path: Path, models: list[dict]) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["llmserve:models"] = [{"nodeGroup": "gpu-24g", **m} for m in models]
    # Not exposed: the models here are about the Hub, one replica each.
    del doc["config"]["llmserve:gateway"]
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _lock(hub: FakeHub, tmp_path: Path, stack_file: Path, token: str | None = None,
          lockfile: Path | None = None, env: dict | None = None, **run) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}, **(env or {})}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    lockfile = lockfile or tmp_path / "models.lock.yaml"
    return subprocess.run([sys.executable, "-m", "components", "lock", "--stack", "test",
                           "--config-file", str(stack_file), "--lockfile", str(lockfile)],
                          cwd=ROOT, env=env, capture_output=True, text=True, **{"timeout": 120, **run})


def _refused(hub: FakeHub, tmp_path: Path, repo_id: str, message: str, revision: str = "main",
             **kwargs) -> subprocess.CompletedProcess:
    """`lock` of a stack with this model: exit 2 with this message, no traceback, and the lock
    file as it was (byte for byte, no stray temporary file)."""
    lockfile = tmp_path / "models.lock.yaml"
    lockfile.write_text((ROOT / "models.lock.yaml").read_text())
    stack = _stack(tmp_path, [{"name": "m", "id": repo_id, "revision": revision}])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _lock(hub, tmp_path, stack, **kwargs)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert lockfile.read_text() == (ROOT / "models.lock.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-home") == before
    return result


def test_lock_resolves_models_from_the_hub(hub, tmp_path):
    stack = _stack(tmp_path, [{"name": "llama", "id": "acme/tiny-llama"},
                              {"name": "awq", "id": "acme/tiny-awq"}])
    result = _lock(hub, tmp_path, stack)
    assert result.returncode == 0, result.stderr
    lock = yaml.safe_load((tmp_path / "models.lock.yaml").read_text())
    assert lock["version"] == 1
    llama = lock["models"]["acme/tiny-llama"]
    files = tiny_llama()
    assert llama == {
        "revision": SHA,
        "requested_revision": "main",
        "parameters": PARAMS,
        "weights_bytes": len(files["model-00001-of-00002.safetensors"]) + len(files["model-00002-of-00002.safetensors"]),
        "dtype": "bfloat16",
        "quantization": None,
        "gated": False,
        "config": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": None,
                   "max_position_embeddings": 4096, "vocab_size": 1000, "intermediate_size": 256},
    }
    awq = lock["models"]["acme/tiny-awq"]
    assert awq["quantization"] == {"method": "awq", "bits": 4}
    assert awq["dtype"] == "float16"
    assert awq["weights_bytes"] == len(tiny_awq()["model.safetensors"])
    # Files were read at the resolved commit, not at a moving branch.
    assert ("GET", f"/acme/tiny-llama/resolve/{SHA}/config.json") in hub.requests
    assert not any("/resolve/main/" in path for _, path in hub.requests)


def test_lock_pins_the_requested_revision_and_keeps_other_entries(hub, tmp_path):
    lockfile = tmp_path / "models.lock.yaml"
    lockfile.write_text((ROOT / "models.lock.yaml").read_text())
    lockfile.chmod(0o640)
    stack = _stack(tmp_path, [{"name": "llama", "id": "acme/tiny-llama", "revision": "v1"}])
    result = _lock(hub, tmp_path, stack, lockfile=lockfile)
    assert result.returncode == 0, result.stderr
    lock = yaml.safe_load(lockfile.read_text())
    assert lock["models"]["acme/tiny-llama"]["revision"] == OLD
    assert "Qwen/Qwen2.5-7B-Instruct" in lock["models"]  # untouched
    # Replaced by a temporary file of the same mode, which is gone.
    assert lockfile.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob("*.tmp"))


def test_two_revisions_of_one_repo_for_blue_green(hub, tmp_path):
    stack = _stack(tmp_path, [{"name": "llama", "id": "acme/tiny-llama", "active": "blue",
                               "slots": {"blue": {}, "green": {"revision": "v1"}}}])
    result = _lock(hub, tmp_path, stack)
    assert result.returncode == 0, result.stderr
    lock = read(tmp_path / "models.lock.yaml")
    assert set(lock.models) == {"acme/tiny-llama", "acme/tiny-llama@v1"}
    assert lock.find("acme/tiny-llama", "main").revision == SHA
    assert lock.find("acme/tiny-llama", "v1").revision == OLD
    assert lock.find("acme/tiny-llama", OLD).revision == OLD  # a pinned commit finds its entry
    assert lock.find("acme/tiny-llama", "v2") is None  # asked for something not locked: stale


def test_gated_model_without_a_token_is_a_clear_error(hub, tmp_path):
    stack = _stack(tmp_path, [{"name": "secret", "id": "gated-org/gated-model"}])
    result = _lock(hub, tmp_path, stack)
    assert result.returncode == 2
    assert "gated-org/gated-model is gated (manual): set HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models.lock.yaml").exists()


def test_gated_model_with_a_refused_token(hub, tmp_path):
    stack = _stack(tmp_path, [{"name": "secret", "id": "gated-org/gated-model"}])
    result = _lock(hub, tmp_path, stack, token="hf_not_accepted")
    assert result.returncode == 2
    assert "token was refused" in result.stderr and "hf_not_accepted" not in result.stderr


def test_gated_model_with_an_accepted_token(hub, tmp_path):
    stack = _stack(tmp_path, [{"name": "secret", "id": "gated-org/gated-model"}])
    result = _lock(hub, tmp_path, stack, token="hf_accepted")
    assert result.returncode == 0, result.stderr
    lock = yaml.safe_load((tmp_path / "models.lock.yaml").read_text())
    assert lock["models"]["gated-org/gated-model"]["gated"] is True
    assert "hf_accepted" not in (tmp_path / "models.lock.yaml").read_text() + result.stdout


@pytest.mark.parametrize("model,message", [
    ({"id": "acme/missing"}, "acme/missing: no such model on the Hub"),
    ({"id": "acme/tiny-llama", "revision": "v9"}, "acme/tiny-llama: revision 'v9' does not exist"),
])
def test_unknown_models_and_revisions(hub, tmp_path, model, message):
    lockfile = tmp_path / "models.lock.yaml"
    lockfile.write_text("version: 1\nmodels: {}\n")
    stack = _stack(tmp_path, [{"name": "m", "id": "acme/tiny-awq"}, {"name": "x", **model}])
    result = _lock(hub, tmp_path, stack)
    assert result.returncode == 2 and message in result.stderr
    assert lockfile.read_text() == "version: 1\nmodels: {}\n"  # nothing half-written


@pytest.mark.parametrize("stall", ["info", "files"])
def test_a_stalled_hub_is_an_error_not_a_hang(tmp_path, stall):
    """The Hub accepts the connection and never answers (the model info, or the files): the
    timeouts of HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT end each call, with no retry
    that would wait minutes (the subprocess timeout bounds the test; no timing asserted)."""
    with FakeHub({"acme/stalled": Repo(tiny_llama(), sha=SHA, stall=stall)}) as hub:
        _refused(hub, tmp_path, "acme/stalled", "acme/stalled: the Hub did not answer in time",
                 env={"HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1"}, timeout=60)


@pytest.mark.parametrize("status,reason", [(500, "server error"), (400, "client error")])
def test_server_error_text_and_the_token_are_never_printed(tmp_path, status, reason):
    """The server's answer may quote the request (here: its Authorization header): only the
    status is printed."""
    token = "hf_secrettoken0123456789abcdef"
    with FakeHub({"acme/broken": Repo(tiny_llama(), sha=SHA, fail=status)}) as hub:
        result = _refused(hub, tmp_path, "acme/broken",
                          f"acme/broken: the Hub answered HTTP {status} ({reason})", token=token)
    assert ("GET", "/api/models/acme/broken/revision/main") in hub.requests
    out = result.stdout + result.stderr
    assert token not in out and "secrettoken" not in out
    assert "Authorization" not in out and "internal error" not in out  # no server text


@pytest.mark.parametrize("sha,revision,message", [
    ("not-a-commit", "main", "acme/liar: the model info's sha is not a 40-hex commit"),
    (SHA.upper(), "main", "acme/liar: the model info's sha is not a 40-hex commit"),
    (SHA[:39], "main", "acme/liar: the model info's sha is not a 40-hex commit"),
    (SHA, OLD, f"acme/liar: the model info's sha is another commit than the requested {OLD}"),
])
def test_a_hub_answering_a_bad_sha_is_refused(tmp_path, sha, revision, message):
    repo = Repo(tiny_llama(), sha=SHA, revisions={"v1": OLD}, info={"sha": sha})
    with FakeHub({"acme/liar": repo}) as hub:
        _refused(hub, tmp_path, "acme/liar", message, revision=revision)


@pytest.mark.parametrize("revision", ["v1", SHA.upper(), SHA[:12], ""])
def test_a_lock_with_a_revision_that_is_not_a_commit_is_refused(hub, tmp_path, revision):
    lockfile = tmp_path / "models.lock.yaml"
    doc = yaml.safe_load((ROOT / "models.lock.yaml").read_text())
    doc["models"]["Qwen/Qwen2.5-7B-Instruct"]["revision"] = revision
    lockfile.write_text(yaml.safe_dump(doc))
    before = lockfile.read_text()
    stack = _stack(tmp_path, [{"name": "llama", "id": "acme/tiny-llama"}])
    result = _lock(hub, tmp_path, stack)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("models.lock.yaml is not a valid lock file (models.Qwen/Qwen2.5-7B-Instruct.revision "
            "must be a 40-hex commit sha (lowercase))") in result.stderr
    assert lockfile.read_text() == before


def _with_config(**changes) -> dict[str, bytes]:
    config = {k: v for k, v in {**_llama(), **changes}.items() if v is not None}
    return {**tiny_awq(), "config.json": json.dumps(config).encode()}


@pytest.mark.parametrize("files,info,message", [
    ({**tiny_awq(), "config.json": b"{not json"}, {}, "config.json is not JSON"),
    ({**tiny_awq(), "config.json": b"[1, 2]"}, {}, "config.json: not a JSON object"),
    (_with_config(num_hidden_layers=None), {}, "config.json: num_hidden_layers missing"),
    (_with_config(max_position_embeddings=None), {}, "config.json: max_position_embeddings missing"),
    (_with_config(hidden_size="64"), {}, "config.json: hidden_size must be a positive integer"),
    (_with_config(hidden_size=-64), {}, "config.json: hidden_size must be a positive integer"),
    (_with_config(num_attention_heads=4.5), {}, "config.json: num_attention_heads must be a positive integer"),
    (_with_config(text_config=[1]), {}, "config.json: text_config must be a JSON object"),
    (_with_config(text_config={"model_type": "llama", "num_hidden_layers": 2}), {},
     "config.json: text_config.hidden_size missing; text_config.num_attention_heads missing"),
    (_with_config(quantization_config=["awq"]), {}, "config.json: quantization_config must be a JSON object"),
    (_with_config(quantization_config={"quant_method": "awq", "bits": "four"}), {},
     "config.json: quantization_config.bits must be a number"),
    (_with_config(quantization_config={"quant_method": "awq", "bits": -4}), {},
     "config.json: quantization_config.bits must be a positive integer"),
    ({k: v for k, v in tiny_awq().items() if k != "config.json"}, {}, "no config.json at " + SHA),
    ({**tiny_awq(), "model.safetensors": b"\xff" * 16}, {},
     "a safetensors header on the Hub could not be parsed"),
    ({**tiny_awq(), "model.safetensors": safetensors_file({})}, {},
     "safetensors headers: parameter_count must be positive"),
    ({"config.json": tiny_awq()["config.json"]}, {}, "no model.safetensors or model.safetensors.index.json"),
    ({**tiny_llama(), "model.safetensors.index.json": b'{"weight_map": ["a"]}'}, {},
     "model.safetensors.index.json: weight_map must map tensors to files"),
    (tiny_awq(), {"siblings": [{"rfilename": "config.json", "size": 10},
                               {"rfilename": "model.safetensors", "size": -5}]},
     "model info: the size of model.safetensors must be a positive integer"),
    (tiny_awq(), {"siblings": [{"rfilename": "model.safetensors"}]},
     "model info: the size of model.safetensors must be a positive integer"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_malformed_answer_is_refused_and_nothing_written(tmp_path, files, info, message):
    with FakeHub({"acme/odd": Repo(files, sha=SHA, info=info)}) as hub:
        _refused(hub, tmp_path, "acme/odd", f"acme/odd: {message}")


def test_a_failed_write_leaves_the_old_lock(hub, tmp_path):
    """The write fails half-way (the file size limit of the process: EFBIG after the first
    bytes of the temporary file): the old lock stays byte for byte, the temporary file is gone."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    result = _refused(hub, tmp_path, "acme/tiny-llama", "could not write ", preexec_fn=small_files,
                      env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert "File too large" in result.stderr
    assert f"acme/tiny-llama@main: {SHA}" in result.stdout  # resolved, then the write failed


def test_committed_lock_covers_every_shipped_stack():
    lock = yaml.safe_load((ROOT / "models.lock.yaml").read_text())
    for stack in ("dev", "prod"):
        for model in stack_settings(stack)["models"]:
            entry = lock["models"][model["id"]]
            assert len(entry["revision"]) == 40
            # bf16 checkpoints: two bytes per parameter.
            assert entry["weights_bytes"] == 2 * entry["parameters"]


def test_config_shapes_of_other_families():
    falcon = {"model_type": "falcon", "num_hidden_layers": 32, "hidden_size": 4544,
              "num_attention_heads": 71, "multi_query": True, "vocab_size": 65024}
    shape = shape_from_config(falcon)
    assert shape.num_key_value_heads == 1 and shape.max_position_embeddings == 2048
    vision = {"model_type": "llava", "text_config": _llama(layers=3)}
    assert shape_from_config(vision).num_hidden_layers == 3
    assert quantization_from_config({"quantization_config": {"load_in_4bit": True}}).model_dump() == \
        {"method": "bitsandbytes", "bits": 4}
    assert quantization_from_config({"quantization_config": {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"num_bits": 8}}}}}).bits == 8


def test_download_script_fills_a_cache_tgi_can_read_offline(hub, tmp_path):
    """The download Job's script, run with the real huggingface_hub against the local Hub: the
    pinned commit's files land in the cache, and `refs/<commit>` exists, which TGI's router needs
    to find config.json and the tokenizer offline (hf-hub resolves refs/<revision>)."""
    from components.engines import tgi

    cache = tmp_path / "hub"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), MODEL_ID="acme/tiny-llama",
               REVISION=SHA, HUGGINGFACE_HUB_CACHE=str(cache), HF_HUB_ENABLE_HF_TRANSFER="0",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    result = subprocess.run([sys.executable, "-c", tgi.download_script()], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    repo = cache / "models--acme--tiny-llama"
    commit = (repo / "refs" / SHA).read_text()
    assert commit == SHA
    snapshot = repo / "snapshots" / commit
    assert (snapshot / "config.json").is_file()
    assert sorted(p.name for p in snapshot.glob("*.safetensors")) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
