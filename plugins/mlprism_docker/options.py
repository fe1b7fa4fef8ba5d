"""The `targets.docker` section: its JSON Schema and the checks a schema cannot express."""

from __future__ import annotations

import re
from typing import Any

import mlprism

#: Official slim Python images, pinned to a patch release and a Debian release (never `latest`).
#: `environment.python` picks one; another version needs `targets.docker.base_image`.
PYTHON_IMAGES: dict[str, str] = {
    "3.9": "python:3.9.23-slim-bookworm",
    "3.10": "python:3.10.18-slim-bookworm",
    "3.11": "python:3.11.13-slim-bookworm",
    "3.12": "python:3.12.11-slim-bookworm",
    "3.13": "python:3.13.5-slim-bookworm",
}

#: Where `mlprism build` puts what the images need besides the project, inside the build context
#: (the project directory): `wheels/` (mlprism itself) and `model/` (the exported model).
#: `.dockerignore` excludes `.mlprism/` except this folder.
CONTEXT_DIR = ".mlprism/docker"

_IMAGE_RE = r"^[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
_APT_RE = r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~_-]+)?$"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the docker target (pipeline image, serving image, compose file).",
    "properties": {
        "base_image": {
            "type": "string",
            "pattern": _IMAGE_RE,
            "description": "Base image of both images, with a tag or digest (never `latest`). Default: the "
                           "official slim Python image of `environment.python`, pinned to a patch release "
                           "(e.g. python:3.11.13-slim-bookworm). `mlprism build --base-image` overrides it "
                           "per build (the Dockerfiles take it as the BASE_IMAGE build argument).",
        },
        "registry": {
            "type": "string",
            "pattern": r"^[a-z0-9][a-z0-9._:-]*(/[a-z0-9][a-z0-9._-]*)*$",
            "description": "Registry and namespace the image names start with, e.g. ghcr.io/acme.",
        },
        "tag": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
            "default": "dev",
            "description": "Tag of the built images (`mlprism build --tag` overrides it). `latest` is refused.",
        },
        "platforms": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "pattern": r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$"},
            "default": [],
            "description": "Platforms to build for, e.g. [linux/amd64, linux/arm64] (compose `build.platforms`; "
                           "`mlprism build` builds the first). Empty: the engine's own platform.",
        },
        "user": {
            "type": "string",
            "pattern": r"^[a-z_][a-z0-9_-]{0,31}$",
            "default": "mlprism",
            "description": "Name of the non-root user the containers run as.",
        },
        "uid": {
            "type": "integer",
            "minimum": 1000,
            "maximum": 65535,
            "default": 10001,
            "description": "UID (and GID) of that user. Root (0) is not allowed.",
        },
        "apt_packages": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "pattern": _APT_RE},
            "default": [],
            "description": "Extra Debian packages installed in both images; pin them (`libgomp1=12.2.0-14`) "
                           "so builds are reproducible (hadolint DL3008).",
        },
        "source": {
            "type": "string",
            "pattern": r"^https?://[^\s\"\\]+$",
            "description": "URL of the source repository (the org.opencontainers.image.source label).",
        },
        "build_secrets": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]{0,127}$"},
            "default": [],
            "description": "Secrets the dependency install needs at build time (e.g. PIP_INDEX_URL with a token). "
                           "Passed with BuildKit secret mounts (`docker build --secret id=NAME,env=NAME`), "
                           "never written into a layer. Needs BuildKit.",
        },
    },
}


def base_image(pipeline: mlprism.Pipeline, options: dict[str, Any]) -> str:
    """The base image: the option, or the pinned official image of the spec's Python version."""
    image = options.get("base_image")
    if image:
        name = image.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else None
        if tag == "latest" or (tag is None and "@" not in image):
            raise mlprism.DiagnosticError([mlprism.Diagnostic(
                "MLP303", f"`targets.docker.base_image` `{image}` is not pinned "
                          f"({'`latest` moves' if tag else 'no tag means `latest`'})",
                pipeline.location("targets.docker.base_image"),
                "give a version tag or a digest, e.g. python:3.11.13-slim-bookworm")])
        return str(image)
    version = pipeline.environment.python
    if version not in PYTHON_IMAGES:
        known = ", ".join(PYTHON_IMAGES)
        raise mlprism.DiagnosticError([mlprism.Diagnostic(
            "MLP303", f"no default base image for Python {version} (known: {known})",
            pipeline.location("environment.python"),
            "set `targets.docker.base_image` to a pinned image with that Python")])
    return PYTHON_IMAGES[version]


def check_tag(tag: str, where: mlprism.Location | None) -> None:
    if tag == "latest" or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise mlprism.DiagnosticError([mlprism.Diagnostic(
            "MLP303", f"image tag `{tag}` is not allowed" + (" (`latest` moves)" if tag == "latest" else ""),
            where, "use a version or a name such as `dev`, `1.2.0` or a commit id")])
