"""The S3 store's download script (engines/vllm.py `store_script`), run with the real
huggingface_hub against the local Hub and a stand-in for boto3's S3 client that keeps objects in
a folder: the commit's files land under `<repo id>/<commit>/`, pickles and originals do not, the
scratch disk is left empty, and a retry uploads only what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from components.engines import vllm
from components.engines.base import store_prefix

from ..fake_hub import FakeHub, Repo
from .test_lock import SHA, tiny_llama

# boto3's surface the script uses: client('s3') with list_objects_v2 pages and upload_file.
FAKE_BOTO3 = textwrap.dedent('''
    import os, shutil
    ROOT = os.environ["FAKE_S3_ROOT"]
    class _Pages:
        def paginate(self, Bucket, Prefix):
            base = os.path.join(ROOT, Bucket)
            found = []
            for d, _, files in os.walk(base):
                for f in files:
                    key = os.path.relpath(os.path.join(d, f), base)
                    if key.startswith(Prefix):
                        found.append({"Key": key, "Size": os.path.getsize(os.path.join(d, f))})
            return [{"Contents": found}] if found else [{}]
    class _S3:
        def get_paginator(self, name):
            assert name == "list_objects_v2"
            return _Pages()
        def upload_file(self, path, bucket, key):
            target = os.path.join(ROOT, bucket, key)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
            with open(os.path.join(ROOT, "uploads.log"), "a") as log:
                log.write(key + "\\n")
    def client(service):
        assert service == "s3"
        return _S3()
''')


@pytest.fixture
def hub():
    # Besides safetensors: pickled weights and the original checkpoint, which no store gets.
    files = {**tiny_llama(), "pytorch_model.bin": b"pickle" * 8, "original/params.json": b"{}"}
    with FakeHub({"acme/tiny-llama": Repo(files, sha=SHA)}) as server:
        yield server


def _run(hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1",
               MODEL_ID="acme/tiny-llama", REVISION=SHA, BUCKET="models", PREFIX=store_prefix("acme/tiny-llama", SHA),
               SCRATCH=str(tmp_path / "scratch"), FAKE_S3_ROOT=str(tmp_path / "s3"),
               PYTHONPATH=str(tmp_path / "sdk"))
    return subprocess.run([sys.executable, "-c", vllm.store_script()], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_commit_lands_in_the_bucket_file_by_file(hub, tmp_path):
    (tmp_path / "sdk").mkdir()
    (tmp_path / "sdk" / "boto3.py").write_text(FAKE_BOTO3)
    result = _run(hub, tmp_path)
    assert result.returncode == 0, result.stderr
    stored = tmp_path / "s3" / "models" / "acme" / "tiny-llama" / SHA
    names = sorted(p.name for p in stored.iterdir())
    assert "config.json" in names and "model-00001-of-00002.safetensors" in names
    assert "pytorch_model.bin" not in names and not (stored / "original").exists()
    assert f"model in s3://models/acme/tiny-llama/{SHA}/" in result.stdout
    # One file at a time: nothing is left on the scratch disk but huggingface_hub's metadata.
    assert not [p for p in (tmp_path / "scratch" / "model").rglob("*") if p.is_file() and ".cache" not in p.parts]
    uploads = (tmp_path / "s3" / "uploads.log").read_text().split()
    # A retried Job (the Pod restarted) uploads only what the bucket lacks.
    (stored / "config.json").unlink()
    assert _run(hub, tmp_path).returncode == 0
    again = (tmp_path / "s3" / "uploads.log").read_text().split()[len(uploads):]
    assert again == [f"acme/tiny-llama/{SHA}/config.json"]
