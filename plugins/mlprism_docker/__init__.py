"""mlprism's docker target: Dockerfiles for the pipeline and serving images, .dockerignore, compose.

Registered through the ``mlprism`` entry-point group like any third-party target,
and importing only the public :mod:`mlprism` API.
"""

from __future__ import annotations

import mlprism

from .target import DockerTarget

__all__ = ["DockerTarget", "mlprism_register_targets"]


@mlprism.hookimpl
def mlprism_register_targets(registry: mlprism.TargetRegistry) -> None:
    registry.add(DockerTarget())
