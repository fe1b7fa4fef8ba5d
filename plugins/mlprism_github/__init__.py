"""mlprism's GitHub Actions target (`github-actions`): see :mod:`mlprism_github.workflow`."""

from __future__ import annotations

import mlprism

from mlprism_github.target import GitHubActionsTarget

__all__ = ["GitHubActionsTarget", "mlprism_register_targets"]


@mlprism.hookimpl
def mlprism_register_targets(registry: mlprism.TargetRegistry) -> None:
    registry.add(GitHubActionsTarget())
