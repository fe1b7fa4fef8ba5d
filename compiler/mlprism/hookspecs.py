"""Hook specifications: the whole plugin API of mlprism.

Each hook's docstring is its reference documentation (docs/reference/hooks.md is
generated from it). A plugin is a module or object with functions decorated by
``mlprism.hookimpl`` whose names match these specs, registered through the
``mlprism`` entry-point group::

    [project.entry-points.mlprism]
    make = "mlprism_make"

Hooks only grow: new arguments may be added to a spec, never removed or
reordered, and an implementation may accept fewer arguments than its spec
(pluggy passes only the ones it names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from mlprism._internal.target import TargetRegistry
    from mlprism.diagnostics import Diagnostics
    from mlprism.ir import Pipeline

hookspec = pluggy.HookspecMarker("mlprism")


# -- Targets -------------------------------------------------------------------

@hookspec
def mlprism_register_targets(registry: TargetRegistry) -> None:
    """Register the compilation targets this plugin provides.

    Called once when plugins are loaded. Call ``registry.add(target)`` for each
    :class:`mlprism.Target` instance. A target's ``name`` is what users pass to
    ``mlprism compile --target NAME`` and the key of its options section under
    ``targets:`` in the spec; its ``options_schema`` validates that section and
    its ``capabilities`` say which spec features it can express.

    Example::

        @mlprism.hookimpl
        def mlprism_register_targets(registry):
            registry.add(MakeTarget())
    """


# -- Schema ----------------------------------------------------------------------

@hookspec
def mlprism_schema_sections() -> dict[str, dict[str, Any]] | None:
    """Contribute JSON Schemas (Draft 2020-12) for sections under ``targets:``.

    Return a mapping of section name to schema, e.g.
    ``{"my-target": {"type": "object", "properties": {...}}}``. A target's own
    ``options_schema`` is contributed automatically; use this hook for sections
    that are not targets (for example shared settings several targets read).
    The merged schema is what ``mlprism schema`` prints and what the spec is
    validated against.
    """


# -- Composition -------------------------------------------------------------------

@hookspec
def mlprism_config_searchpath(spec_dir: Path) -> list[str] | None:
    """Add Hydra config search paths for the spec in ``spec_dir``.

    Return a list of Hydra search-path URLs (``file:///abs/dir`` or
    ``pkg://package.module``). Config groups named in the spec's ``defaults:``
    list are looked up there after ``conf/`` beside the spec, so a platform team
    can ship shared groups (e.g. ``cluster: gpu-large``) as a plugin.
    """


# -- Passes -------------------------------------------------------------------------

@hookspec
def mlprism_validate_ir(pipeline: Pipeline, diagnostics: Diagnostics) -> None:
    """Check the compiled pipeline and add diagnostics.

    Runs after the graph is built and before any target emits. Append problems
    with ``diagnostics.add(code, message, pipeline.location("steps.x"), hint)``;
    any error-severity diagnostic stops the compile with exit code 2. Register
    your own codes with :func:`mlprism.register_code` (use your own prefix).
    Do not modify the pipeline here; use :func:`mlprism_transform_ir`.
    """


@hookspec
def mlprism_transform_ir(pipeline: Pipeline) -> Pipeline | None:
    """Return a transformed pipeline, or None to leave it unchanged.

    Implementations run in registration order, each receiving the previous
    one's result. The IR is immutable: build the new value with
    ``dataclasses.replace``. A transform must be deterministic (no clock,
    randomness or I/O) so compiles stay byte-identical. The graph is rebuilt
    and checked for cycles after all transforms ran.
    """


# -- Runtime -------------------------------------------------------------------------

@hookspec
def mlprism_model_loaders() -> dict[str, Any] | None:
    """Add model loaders for ``mlprism serve``, by flavor.

    Return ``{"flavor": loader}`` where ``loader(path)`` loads the registered artifact
    (a file or a directory) and returns an object with ``predict(X)`` (and optionally
    ``predict_proba(X)``). ``sklearn`` (joblib) and ``pickle`` are built in. The flavor of a
    version is the spec's ``registry.flavor`` recorded in its lineage, else guessed from the
    file extension.
    """
