"""Malformed stack files are refused by every verb the same way: exit 2, the file and line named,
no traceback, nothing written, and never a line of the file quoted (it may hold a secret)."""

from __future__ import annotations

import pytest

from ..conftest import ROOT, cli

TOKEN = "hf_SecretTokenValue0123456789"
DEV = (ROOT / "Pulumi.dev.yaml").read_text()
BOMB = "a: &a [1,2,3,4,5,6,7,8,9]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg"))

CASES = {
    "unclosed quote on the token line": (
        DEV.replace("config:\n", f'config:\n  llmserve:hfToken: "{TOKEN}\n', 1).encode(),
        "while parsing a block mapping"),
    "bad indent on the token line": (
        DEV.replace("config:\n", f"config:\n  llmserve:hfToken: x\n   llmserve:apiKey: {TOKEN}\n", 1).encode(),
        "mapping values are not allowed here"),
    "a tab": (DEV.replace("  aws:region", "\taws:region", 1).encode(), "a tab character"),
    "a list, not a mapping": (b"- config\n", "the document must be a mapping"),
    "a scalar document": (f"{TOKEN}\n".encode(), "the document must be a mapping"),
    "config is a list": (b"config:\n  - a\n", "config must be a mapping"),
    "two documents": (DEV.encode() + b"---\nconfig: {}\n", "2 YAML documents"),
    "a duplicate key": (DEV.replace("  aws:region: us-east-1\n", f"  aws:region: us-east-1\n  llmserve:apiKey: {TOKEN}\n  llmserve:apiKey: {TOKEN}\n", 1).encode(),
                        "the key 'llmserve:apiKey' appears twice"),
    "an alias bomb": (BOMB.encode(), "expands to more than 100000 values"),
    "not UTF-8": (DEV.encode().replace(b"us-east-1", b"us-\xff-1", 1), "not UTF-8 text"),
    "a key that is not a string": (b"config:\n  1: x\n", "keys must be strings"),
    "deep nesting": (b"config:\n  x: " + b"[" * 5000 + b"]" * 5000 + b"\n", "Pulumi.bad.yaml"),
}


@pytest.mark.parametrize("verb", ["render", "plan", "lock"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_verb_refuses_a_malformed_stack_file(tmp_path, verb, case):
    text, expected = CASES[case]
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_bytes(text)
    lock = tmp_path / "models.lock.yaml"
    lock.write_bytes((ROOT / "models.lock.yaml").read_bytes())
    extra = {"render": ["--out", str(tmp_path / "out")], "plan": [], "lock": ["--lockfile", str(lock)]}[verb]
    result = cli(verb, "--stack", "bad", "--config-file", str(stack), *extra)
    assert result.returncode == 2, result.stderr
    assert "Pulumi.bad.yaml" in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()
    assert lock.read_bytes() == (ROOT / "models.lock.yaml").read_bytes()


def test_a_secret_in_plain_text_is_redacted_from_any_error(tmp_path):
    """A token typed under the wrong key still never reaches the terminal."""
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(DEV.replace("config:\n", f"config:\n  llmserve:hfToken: {TOKEN}\n", 1)
                     .replace("kubernetesVersion: \"1.35\"", f"kubernetesVersion: \"{TOKEN}\""))
    result = cli("render", "--stack", "bad", "--config-file", str(stack), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "cluster.kubernetesVersion" in result.stderr and "[secret]" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
