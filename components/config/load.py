"""Reading the stack's config: the `llmserve:*` keys as the Pulumi engine hands them to the program
(strings, structured values as JSON), validated once; the secrets read as Pulumi secrets."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

import pulumi
from pulumi.runtime import config as rc
from pydantic import ValidationError

from .errors import ConfigError, error_lines
from .fields import Vocabulary
from .gateway import TEAM_KEYS
from .images import REGISTRY_SECRETS
from .monitoring import ALERTING_SECRETS, HEARTBEAT_SECRET, RECEIVER_SECRETS
from .stack import Stack, StackConfig, name_limits
from .stack_file import SECURE_PLACEHOLDER

PROJECT = "llmserve"
SECRET_KEYS = ("hfToken", "apiKey", *ALERTING_SECRETS, *REGISTRY_SECRETS)
# Whoever holds one acts as the platform (pages, posts, pulls as its registry account): never in
# plain text.
STRICT_SECRETS = (*ALERTING_SECRETS, *REGISTRY_SECRETS)
SECRET_URLS = (RECEIVER_SECRETS["slack"], HEARTBEAT_SECRET)  # the URL is the credential
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")  # us-east-1, us-gov-west-1, ap-southeast-5
MIN_API_KEY = 16  # characters: a key clients send; the generated one has 48
# What a bearer token may be (RFC 6750 section 2.1, b64token), at most 128 characters: the serving
# engine logs the key at start and the application log group masks a fixed span after it
# (infra/cluster.py API_KEY_REGEX), which such a key fills without escapes.
MAX_API_KEY = 128
API_KEY = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def key_problem(setting: str, value: str) -> Optional[str]:
    """What is wrong with a key clients send (`apiKey`, `teamKeys.<team>`), never the key itself."""
    if len(value) < MIN_API_KEY:
        return (f"{setting}: at least {MIN_API_KEY} characters (e.g. `pulumi config set --secret "
                f"{'--path ' if '.' in setting else ''}{setting} \"$(openssl rand -hex 32)\"`), or unset for "
                "a generated one")
    if len(value) > MAX_API_KEY or not API_KEY.fullmatch(value):
        return (f"{setting}: at most {MAX_API_KEY} characters of a bearer token (letters, digits, "
                "`- . _ ~ + /`, then `=` padding; RFC 6750), e.g. `openssl rand -hex 32`")
    return None


def _team_keys(value: Any) -> tuple[dict[str, str], list[str]]:
    """`teamKeys`, a secret map of team name to key (`pulumi config set --secret --path
    'teamKeys.<team>' ...`): the keys and what is wrong with them."""
    decoded = _decode(value)
    how = f"`pulumi config set --secret --path '{TEAM_KEYS}.<team>' \"$(openssl rand -hex 32)\"`"
    if not isinstance(decoded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()):
        return {}, [f"{TEAM_KEYS}: a map of team name to key, each set with {how}"]
    if not rc.is_config_secret(f"{PROJECT}:{TEAM_KEYS}"):
        return {}, [f"{TEAM_KEYS}: stored in plain text in the stack file: set each with {how}, and "
                    "rotate them (the old values are in your history)"]
    problems = [key_problem(f"{TEAM_KEYS}.{team}", key) for team, key in decoded.items()]
    # Envoy Gateway refuses a SecurityPolicy whose keys repeat, and the gateway then answers 500
    # everywhere: one key per team (its teams named, never the key).
    teams_by_key: dict[str, list[str]] = {}
    for team, key in decoded.items():
        teams_by_key.setdefault(key, []).append(team)
    problems += [f"{TEAM_KEYS}: {', '.join(teams)} have the same key: give each team its own"
                 for teams in teams_by_key.values() if len(teams) > 1]
    return decoded, [p for p in problems if p]


def validate_settings(raw: dict[str, Any], vocabulary: Vocabulary) -> StackConfig:
    """Validates the project's config keys (already JSON-decoded). Raises ConfigError."""
    try:
        return StackConfig.model_validate(raw, context=vocabulary)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc, StackConfig)) from None


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def project_keys(values: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The `llmserve:*` values of config in the engine's form (`ns:key` -> string); by default
    what the engine passed the program (explicit config and env)."""
    if values is None:
        from pulumi.runtime import config as rc

        values = {**rc.get_config_env(), **rc.CONFIG.get()}
    return {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")}


def settings_of(values: dict[str, Any], vocabulary: Vocabulary, stack: str) -> StackConfig:
    """The validated settings of config in the engine's form, without running the program
    (secrets are not settings). Raises ConfigError."""
    raw = project_keys(values)
    settings = validate_settings({k: _decode(v) for k, v in raw.items() if k not in (*SECRET_KEYS, TEAM_KEYS)},
                                 vocabulary)
    errors = name_limits(settings, PROJECT, stack)
    if errors:
        raise ConfigError(errors)
    return settings


def load(vocabulary: Vocabulary) -> Stack:
    """Reads and validates the stack's config. Raises ConfigError before anything is built."""
    raw = project_keys()
    errors = []
    secrets = frozenset(str(raw[k]) for k in SECRET_KEYS if raw.get(k))  # kept out of messages
    given = {k for k in SECRET_KEYS if raw.get(k) is not None}
    team_keys, problems = _team_keys(raw.pop(TEAM_KEYS)) if raw.get(TEAM_KEYS) is not None else ({}, [])
    errors += problems
    secrets |= set(team_keys.values())
    for key in SECRET_KEYS:
        value = raw.pop(key, None)
        if value is not None and (isinstance(_decode(value), (dict, list)) or not str(value).strip()):
            errors.append(f"{key}: must be a non-empty string (set it with "
                          f"`pulumi config set --secret {key}`)")
        elif key == "apiKey" and value is not None and key_problem("apiKey", str(value)):
            errors.append(key_problem("apiKey", str(value)))
        elif key in STRICT_SECRETS and value is not None and not rc.is_config_secret(f"{PROJECT}:{key}"):
            # The engine names the --secret keys to the program (set_all_config in pulumi/pulumi
            # sdk/python/cmd/pulumi-language-python-exec).
            errors.append(f"{key}: stored in plain text in the stack file: set it with `pulumi config "
                          f"set --secret {key} ...`, and rotate it (the old value is in your history)")
        elif (key in SECRET_URLS and value not in (None, SECURE_PLACEHOLDER)
              and not str(value).startswith("https://")):
            errors.append(f"{key}: must be an https:// URL (set it with `pulumi config set --secret {key}`)")
    region = pulumi.Config("aws").get("region")
    default_tags = pulumi.Config("aws").get_object("defaultTags") or {}
    default_tags = (default_tags.get("tags") if isinstance(default_tags, dict) else default_tags) or {}
    if not (isinstance(default_tags, dict) and all(isinstance(v, str) for v in default_tags.values())):
        errors.append("aws:defaultTags: tags must map tag keys to strings")
    if not region:
        errors.append("aws:region: required (e.g. `pulumi config set aws:region us-east-1`)")
    elif not REGION.match(region):
        errors.append(f"aws:region: {region!r} is not an AWS region name, e.g. us-east-1")
    try:
        settings = validate_settings({k: _decode(v) for k, v in raw.items()}, vocabulary)
        errors += name_limits(settings, pulumi.get_project(), pulumi.get_stack())
        alerting = settings.monitoring.alerting
        images = settings.engine_images(vocabulary)
        errors += settings.images.problems(images)
        required = {**(alerting.secrets() if alerting else {}), **settings.images.secrets(images)}
        teams = [t.name for t in settings.gateway.teams] if settings.gateway else []
        if settings.gateway and "apiKey" in given:
            errors.append("apiKey: not with gateway: each team has its own key (teamKeys.<team>, "
                          "docs/gateway.md); the engines hold none. Unset it: `pulumi config rm apiKey`")
        errors += [f"{TEAM_KEYS}.{team}: no team {team!r} in gateway.teams" + (
                   f" ({', '.join(teams)})" if teams else ": the stack has no gateway")
                   for team in team_keys if team not in teams]
        errors += [f"{key}: required: {why} (`pulumi config set --secret {key} ...`)"
                   for key, why in required.items() if key not in given]
    except ConfigError as exc:
        errors += exc.errors
    if errors:
        raise ConfigError(errors, secrets)
    for warning in [*settings.warnings, *settings.images.warnings(settings.engine_images(vocabulary)),
                    *(settings.gateway.warnings if settings.gateway else [])]:
        pulumi.log.warn(warning)
    config = pulumi.Config(PROJECT)
    return Stack(project=pulumi.get_project(), stack=pulumi.get_stack(), region=region,
                 settings=settings, hf_token=config.get_secret("hfToken"),
                 api_key=config.get_secret("apiKey"), default_tags=default_tags,
                 alerting_secrets={k: config.get_secret(k) for k in settings.monitoring.alerting.secrets()},
                 team_keys={team: pulumi.Output.secret(key) for team, key in team_keys.items()},
                 registry_secrets={k: config.get_secret(k)
                                   for k in settings.images.secrets(settings.engine_images(vocabulary))})
