"""mlprism's kubernetes target: a kustomize tree with Argo Workflows for the pipeline and core
objects for serving.

Registered through the ``mlprism`` entry-point group like any third-party target,
and importing only the public :mod:`mlprism` API.
"""

from __future__ import annotations

import mlprism

from .target import KubernetesTarget

__all__ = ["KubernetesTarget", "mlprism_register_targets"]


@mlprism.hookimpl
def mlprism_register_targets(registry: mlprism.TargetRegistry) -> None:
    registry.add(KubernetesTarget())
