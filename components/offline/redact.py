"""Secrets never reach what the CLI prints: every message goes through `redact`, which removes
the secret values of the stack file read in this process, the Hugging Face token of the
environment, and anything shaped like a Hugging Face token."""

from __future__ import annotations

import os
import re

from ..config import SECRET_KEYS

HF_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
HIDDEN = "[secret]"
_known: set[str] = set()


def remember(values: dict[str, str]) -> None:
    """The plain-text secrets of a stack file's config (`ns:key` -> value)."""
    _known.update(v for k, v in values.items()
                  if k.split(":", 1)[-1] in SECRET_KEYS and isinstance(v, str) and len(v) >= 4)


def redact(text: str) -> str:
    env = {os.environ.get(k) for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    for secret in sorted((_known | env) - {None, ""}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return HF_TOKEN_SHAPE.sub(HIDDEN, text)
