"""`images`: where the nodes pull the engines' images from. With `pullThroughCache` on, an ECR
pull-through cache in the stack's region serves them (docs/images.md): the first pull of an image
fetches it from its upstream registry once, every later pull is in-region (its layers through the
VPC's S3 gateway endpoint) instead of through the NAT gateways from ghcr.io or Docker Hub.

The upstream registries ECR caches and which need a credential (a Secrets Manager secret named
`ecr-pullthroughcache/...`): https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache.html
("Supported upstream registries") and pull-through-cache-creating-secret.html."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

from pydantic import field_validator

from .fields import IMAGE_REFERENCE, Settings


@dataclass(frozen=True)
class Upstream:
    host: str  # as image references name it
    url: str  # the rule's upstreamRegistryUrl
    prefix: str  # the rule's ecrRepositoryPrefix: <account>.dkr.ecr.<region>.amazonaws.com/<prefix>/...
    secret: Optional[str] = None  # the secret stack setting holding its access token
    username: Optional[str] = None  # the `images` setting naming its user
    label: str = ""


UPSTREAMS: dict[str, Upstream] = {u.host: u for u in (
    Upstream("ghcr.io", "ghcr.io", "ghcr", "githubToken", "githubUsername", "GitHub Container Registry"),
    Upstream("docker.io", "registry-1.docker.io", "docker", "dockerHubToken", "dockerHubUsername",
             "Docker Hub"),
    Upstream("public.ecr.aws", "public.ecr.aws", "ecr-public", label="ECR Public"),
    Upstream("quay.io", "quay.io", "quay", label="Quay"),
    Upstream("registry.k8s.io", "registry.k8s.io", "k8s", label="the Kubernetes registry"),
)}
REGISTRY_SECRETS = tuple(u.secret for u in UPSTREAMS.values() if u.secret)
# A rule's ecrRepositoryPrefix, `<cluster>/<upstream prefix>`, holds 2-30 characters
# (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreatePullThroughCacheRule.html).
PREFIX_MAX = 30
# Docker Hub user names: 4-30 lowercase letters and digits (hub.docker.com sign-up); GitHub's:
# letters, digits and single hyphens, at most 39 (github.com/join).
_USERNAME = {"dockerHubUsername": re.compile(r"[a-z0-9]{4,30}"),
             "githubUsername": re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")}


def upstream_of(image: str) -> tuple[Optional[Upstream], str]:
    """The upstream registry an image reference names (Docker Hub when it names none) and its
    repository path there, `library/` added for Docker Hub's official images (the path ECR caches
    them under). (None, path) for a registry ECR does not cache."""
    ref = IMAGE_REFERENCE.fullmatch(image)
    if ref is None:
        raise ValueError(f"{image!r} is not an image reference")
    host = ref["host"] or "docker.io"
    host = "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host
    path = ref["path"]
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return UPSTREAMS.get(host), path


def cached_image(image: str, root: str) -> str:
    """The reference of `image` in the pull-through cache whose rules' prefixes start with
    `root` (`<account>.dkr.ecr.<region>.amazonaws.com/<cluster>`): the same path under the
    upstream's prefix, the same tag and digest. An image of a registry ECR does not cache stays
    as it is."""
    upstream, path = upstream_of(image)
    if upstream is None:
        return image
    ref = IMAGE_REFERENCE.fullmatch(image)
    return (f"{root}/{upstream.prefix}/{path}" + (f":{ref['tag']}" if ref["tag"] else "")
            + (f"@{ref['digest']}" if ref["digest"] else ""))


class ImagesConfig(Settings):
    # Pull the engines' images through an ECR pull-through cache in the region.
    pull_through_cache: bool = False
    # The accounts whose access tokens (`githubToken`, `dockerHubToken`, secret settings) the
    # cache signs in with; ECR requires one for these registries.
    github_username: Optional[str] = None
    docker_hub_username: Optional[str] = None

    @field_validator("github_username", "docker_hub_username")
    @classmethod
    def _username(cls, v: Optional[str], info) -> Optional[str]:
        key = "githubUsername" if info.field_name == "github_username" else "dockerHubUsername"
        if v is not None and not _USERNAME[key].fullmatch(v):
            raise ValueError(f"{v!r} is not a {'GitHub' if key == 'githubUsername' else 'Docker Hub'} "
                             "user name")
        return v

    def upstreams(self, images: Iterable[str]) -> list[Upstream]:
        """The upstream registries the cache needs a rule for: those of these images ECR caches."""
        if not self.pull_through_cache:
            return []
        found = {u.host: u for u in (upstream_of(i)[0] for i in images) if u is not None}
        return [found[h] for h in sorted(found)]

    def username(self, upstream: Upstream) -> Optional[str]:
        return {"githubUsername": self.github_username,
                "dockerHubUsername": self.docker_hub_username}.get(upstream.username or "")

    def problems(self, images: Iterable[str]) -> list[str]:
        """What the cache lacks for these images: a user name (the token is checked with the
        secrets, config/load.py)."""
        return [f"images.{u.username}: required: {u.label} ({u.host}) is pulled through the cache, "
                f"and ECR signs in to it as this user with the secret setting `{u.secret}`"
                for u in self.upstreams(images) if u.username and self.username(u) is None]

    def warnings(self, images: Iterable[str]) -> list[str]:
        return [f"{image}: pinned by digest and pulled through the cache: ECR does not fetch an "
                "image it has not cached yet by digest (github.com/aws/containers-roadmap/issues/2837), "
                "so the first pull fails; pull it once by its tag through the cache (docs/images.md)"
                for image in images if "@sha256:" in image and self.upstreams([image])]

    def secrets(self, images: Iterable[str]) -> dict[str, str]:
        """The secret stack settings the cache needs for these images, each with why."""
        return {u.secret: f"images.pullThroughCache pulls {u.label} ({u.host}) images, and ECR "
                f"requires a credential for it: an access token of images.{u.username}"
                for u in self.upstreams(images) if u.secret}
