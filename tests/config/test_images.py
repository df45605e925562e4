"""`images.pullThroughCache`: the engines' images come from an ECR pull-through cache in the
region; the registries that need a sign-in get their user as a setting and their token as a
secret setting, refused in plain text and never echoed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.config import ConfigError
from components.config.fields import IMAGE_REFERENCE
from components.config.images import UPSTREAMS, cached_image, upstream_of

from components.engines.vocabulary import VOCABULARY

from ..conftest import run_settings, validate_settings

ROOT = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmserve-prod"
TOKEN = "ghp_TokenOfTheCiAccount0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("image, cached", [
    ("ghcr.io/huggingface/text-generation-inference:3.3.7",
     f"{ROOT}/ghcr/huggingface/text-generation-inference:3.3.7"),
    ("vllm/vllm-openai:v0.33.0", f"{ROOT}/docker/vllm/vllm-openai:v0.33.0"),
    ("docker.io/vllm/vllm-openai:v0.33.0", f"{ROOT}/docker/vllm/vllm-openai:v0.33.0"),
    # Docker Hub's official images live under library/ (ECR's pull syntax requires it).
    ("python:3.12-slim", f"{ROOT}/docker/library/python:3.12-slim"),
    ("index.docker.io/library/busybox:1.37", f"{ROOT}/docker/library/busybox:1.37"),
    (f"quay.io/prometheus/prometheus:v3.5.0@{DIGEST}", f"{ROOT}/quay/prometheus/prometheus:v3.5.0@{DIGEST}"),
    (f"ghcr.io/acme/tgi@{DIGEST}", f"{ROOT}/ghcr/acme/tgi@{DIGEST}"),
    # Registries ECR does not cache, and ECR itself, are pulled as they are.
    ("nvcr.io/nvidia/tritonserver:25.01-py3", "nvcr.io/nvidia/tritonserver:25.01-py3"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:3.3.7", "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:3.3.7"),
])
def test_an_image_is_pulled_by_its_cached_reference(image, cached):
    assert cached_image(image, ROOT) == cached


_component = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})?", fullmatch=True)


@given(host=st.sampled_from([*UPSTREAMS, None]), path=st.lists(_component, min_size=1, max_size=3),
       tag=st.one_of(st.none(), st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)),
       digest=st.booleans())
def test_a_cached_reference_keeps_the_path_tag_and_digest(host, path, tag, digest):
    image = (f"{host}/" if host else "") + "/".join(path) + (f":{tag}" if tag else "") + (f"@{DIGEST}" if digest else "")
    cached = cached_image(image, ROOT)
    ref = IMAGE_REFERENCE.fullmatch(cached)
    assert ref is not None and ref["host"] == ROOT.split("/")[0]
    upstream, upstream_path = upstream_of(image)
    assert ref["path"] == f"llmserve-prod/{upstream.prefix}/{upstream_path}"
    assert (ref["tag"], ref["digest"]) == (tag, DIGEST if digest else None)


def _error(settings: dict, secret_keys: tuple = ()) -> str:
    with pytest.raises(ConfigError) as err:
        run_settings(settings, secret_keys=secret_keys)
    return str(err.value)


def test_a_registry_that_needs_a_sign_in_needs_its_user_and_token(dev_settings):
    dev_settings["images"] = {"pullThroughCache": True}
    message = _error(dev_settings)
    # Dev serves on TGI (ghcr.io): only GitHub's sign-in is asked for.
    assert "images.githubUsername: required: GitHub Container Registry (ghcr.io) is pulled through " \
           "the cache" in message
    assert "githubToken: required: images.pullThroughCache pulls GitHub Container Registry (ghcr.io) " \
           "images" in message and "`pulumi config set --secret githubToken ...`" in message
    assert "docker" not in message.lower()


def test_a_vllm_model_adds_docker_hub(dev_settings):
    dev_settings["models"][0]["engine"] = "vllm"
    dev_settings.update(images={"pullThroughCache": True, "githubUsername": "acme-ci"}, githubToken=TOKEN)
    message = _error(dev_settings, secret_keys=("githubToken",))
    assert "images.dockerHubUsername: required: Docker Hub (docker.io)" in message
    assert "dockerHubToken: required" in message and "githubToken" not in message


def test_a_token_in_plain_text_is_refused_and_not_echoed(dev_settings):
    dev_settings.update(images={"pullThroughCache": True, "githubUsername": "acme-ci"}, githubToken=TOKEN)
    message = _error(dev_settings)  # not marked secret
    assert "githubToken: stored in plain text in the stack file: set it with `pulumi config set " \
           "--secret githubToken ...`" in message
    assert TOKEN not in message


@pytest.mark.parametrize("images, expected", [
    ({"pullThroughCache": "maybe"}, "images.pullThroughCache: 'maybe' is not allowed: input should be a valid boolean"),
    ({"pullThroughCache": True, "githubUsername": "-acme"}, "images.githubUsername: '-acme' is not a GitHub user name"),
    ({"pullThroughCache": True, "dockerHubUsername": "Acme"}, "images.dockerHubUsername: 'Acme' is not a Docker Hub user name"),
    ({"pullThroughCach": True}, "images.pullThroughCach: unknown setting; allowed here: dockerHubUsername, "
                                "githubUsername, pullThroughCache"),
])
def test_bad_images_settings_are_named(dev_settings, images, expected):
    dev_settings["images"] = images
    assert expected in _error(dev_settings)


def test_a_cluster_name_too_long_for_the_cache_prefix_is_refused(dev_settings):
    dev_settings["cluster"]["name"] = "acme-llm-platform-dev"  # 21 + "/ecr-public" > 30
    dev_settings["images"] = {"pullThroughCache": True, "githubUsername": "acme-ci"}
    message = _error(dev_settings, secret_keys=("githubToken",))
    assert "cluster.name: 'acme-llm-platform-dev' is too long for images.pullThroughCache" in message
    assert "at most 19 for the cluster's name" in message


def test_a_digest_pinned_image_through_the_cache_warns(dev_settings):
    pinned = f"ghcr.io/huggingface/text-generation-inference:3.3.7@{DIGEST}"
    dev_settings["models"][0]["image"] = pinned
    dev_settings["images"] = {"pullThroughCache": True, "githubUsername": "acme-ci"}
    settings = validate_settings(dev_settings)
    [warning] = settings.images.warnings(settings.engine_images(VOCABULARY))
    assert warning.startswith(f"{pinned}: pinned by digest and pulled through the cache: ECR does not "
                              "fetch an image it has not cached yet by digest")
    dev_settings["images"]["pullThroughCache"] = False
    settings = validate_settings(dev_settings)
    assert settings.images.warnings(settings.engine_images(VOCABULARY)) == []
