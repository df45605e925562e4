"""How an invalid stack file is reported: `ConfigError`, one line per setting, each naming the
setting's path (`models[0].quantize`) and what is allowed there."""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pydantic import BaseModel, ValidationError


HF_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
HIDDEN = "[secret]"


def redact(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """The text without these secret values, nor anything shaped like a Hugging Face token."""
    # (Values too short to be a real secret would only mangle the message.)
    for secret in sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return HF_TOKEN_SHAPE.sub(HIDDEN, text)


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. Pulumi prints a RunError without a traceback. The message
    never shows a value shaped like a Hugging Face token, nor the given secrets."""

    def __init__(self, errors: list[str], secrets: frozenset[str] = frozenset()):
        self.errors = [redact(e, secrets) for e in errors]
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {e}" for e in self.errors))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: dict, model: type[BaseModel] | None) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "literal_error":
        allowed = ctx["expected"].replace("'", "").replace(" or ", ", ")
        return f"{err['input']!r} is not one of {allowed}"
    if kind == "extra_forbidden":
        allowed = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        return "unknown setting" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return f"{err['input']!r} is not allowed: {err['msg'][0].lower()}{err['msg'][1:]}"


def _owner(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that holds the setting at loc (for listing the allowed keys)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        ann = field.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return None
    return model


def error_lines(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per error of a validation of `root`: `path: message`."""
    errors = []
    for err in exc.errors():
        path, message = _path(err["loc"]), _message(err, _owner(root, err["loc"]))
        # A rule across fields names the field it is about: "models[0]" + "dtype: ..." (or
        # "slots.green.quantize: ...")
        field = re.match(r"^([a-z][A-Za-z]*(?:\.[a-z][A-Za-z]*)*): (.*)$", message)
        if field:
            path, message = f"{path}.{field[1]}" if path else field[1], field[2]
        errors.append(f"{path}: {message}")
    return errors
