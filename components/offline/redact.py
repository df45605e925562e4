"""Secrets never reach what the CLI prints: every message goes through `redact`, which removes
the secret values of the stack files read in this process, the Hugging Face token of the
environment, and anything shaped like a Hugging Face token (config/errors.py)."""

from __future__ import annotations

import os

from ..config import SECRET_KEYS
from ..config.errors import redact as without

_known: set[str] = set()


def remember(values: dict[str, str]) -> None:
    """The plain-text secrets of a stack file's config (`ns:key` -> value)."""
    _known.update(v for k, v in values.items() if k.split(":", 1)[-1] in SECRET_KEYS and isinstance(v, str))


def redact(text: str) -> str:
    env = {os.environ.get(k) for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")} - {None}
    return without(text, _known | env)
