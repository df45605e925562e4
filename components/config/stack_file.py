"""Reading a stack file (`Pulumi.<stack>.yaml`) for the offline verbs, as safely as the settings
in it: the `pulumi` CLI reads it itself on `pulumi up`.

Refused with a ConfigError that names the line and column, never quoting the file (a line may
hold a secret): bytes that are not UTF-8, YAML syntax errors and tabs, more than one document,
a document or `config` that is not a mapping, duplicate keys, keys that are not strings,
aliases that expand beyond any stack file's size (alias bombs, cycles), deep nesting.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .errors import ConfigError

SECURE_PLACEHOLDER = "encrypted-in-stack-file"  # a `secure:` value: only the CLI decrypts it
MAX_BYTES = 1 << 20
MAX_VALUES = 100_000  # values of the document with every alias expanded


class _Loader(yaml.SafeLoader):
    """SafeLoader without duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(None, None, "keys must be strings",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _problem(exc: yaml.YAMLError) -> str:
    return _problem_of(getattr(exc, "problem", None) or "not valid YAML")


def _problem_of(problem: str) -> str:
    if "'\\t'" in problem:
        return "a tab character: YAML indents with spaces only"
    if problem.startswith("the key "):
        return problem  # our own words: a key name, never a value
    # PyYAML quotes what it found (a character, a token); a value may be a secret.
    return re.sub(r"'[^']*'|\"[^\"]*\"", "…", problem)


def _located(exc: yaml.YAMLError) -> str:
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    if context is not None and getattr(exc, "context", None) and (mark is None or context.line != mark.line):
        # Where the construct that went wrong began: an unclosed quote shows at its line.
        return (f"line {context.line + 1}, column {context.column + 1}: {_problem_of(exc.context)}, "
                f"then {at}{_problem(exc)}")
    return at + _problem(exc)


def _expanded_size(doc) -> int:
    """How many values the document holds once aliases are expanded, counting up to just past
    MAX_VALUES (PyYAML shares an alias's object; what reads it later would not)."""
    count, todo = 0, [doc]
    while todo and count <= MAX_VALUES:
        value = todo.pop()
        count += 1
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
    return count


def parse(text: bytes, where: str) -> dict:
    """The document of a stack file, refused with a ConfigError naming `where` and the line."""
    if len(text) > MAX_BYTES:
        raise ConfigError([f"{where}: larger than {MAX_BYTES} bytes; a stack file is a few KB"])
    try:
        source = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{where}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        docs = list(yaml.load_all(source, Loader=_Loader))  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where}: {_located(exc)}"]) from None
    except RecursionError:
        raise ConfigError([f"{where}: nested too deeply"]) from None
    if docs and _expanded_size(docs[0]) > MAX_VALUES:
        raise ConfigError([f"{where}: expands to more than {MAX_VALUES} values (aliases that "
                           "repeat or contain themselves)"])
    if len(docs) > 1:
        raise ConfigError([f"{where}: {len(docs)} YAML documents; a stack file has one"])
    doc = docs[0] if docs else None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError([f"{where}: the document must be a mapping (config: ...), "
                           f"not a {type(doc).__name__}"])
    if not isinstance(doc.get("config") or {}, dict):
        raise ConfigError([f"{where}: config must be a mapping of settings"])
    return doc


def read(stack_file: Path, project: str) -> tuple[dict[str, str], list[str]]:
    """The config of a stack file in the form the engine hands the program: `ns:key` -> string,
    structured values as JSON. Values encrypted in the file (`secure:`) cannot be decrypted
    without the CLI; they stand in as a placeholder and stay secret."""
    doc = parse(stack_file.read_bytes(), stack_file.name)
    values, secret_keys = {}, []
    for key, value in (doc.get("config") or {}).items():
        key = key if ":" in key else f"{project}:{key}"
        value, secure = _stand_in(value)
        if secure:  # the engine marks a key secret when any value in it is (`--secret --path`)
            secret_keys.append(key)
        values[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    return values, secret_keys


def _stand_in(value):
    """The value with each `secure:` leaf (top-level, or set with `--path` inside a structured
    value) replaced by the placeholder, and whether there was one."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return SECURE_PLACEHOLDER, True
    if isinstance(value, dict):
        pairs = {k: _stand_in(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    if isinstance(value, list):
        items = [_stand_in(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False
