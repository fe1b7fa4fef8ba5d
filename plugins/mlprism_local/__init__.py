"""mlprism's local target: runs the pipeline on this machine (`mlprism run`).

Registered through the ``mlprism`` entry-point group like any third-party
target, importing only the public :mod:`mlprism` API. Its ``emit`` writes the
execution plan (``plan.json``) that ``mlprism run --dry-run --json`` prints.
"""

from __future__ import annotations

import mlprism

from .target import LocalTarget, build_plan

__all__ = ["LocalTarget", "build_plan", "mlprism_register_targets"]


@mlprism.hookimpl
def mlprism_register_targets(registry: mlprism.TargetRegistry) -> None:
    registry.add(LocalTarget())
