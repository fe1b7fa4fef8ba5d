"""mlprism — an MLOps platform built as a compiler.

This module is the public API: everything a plugin or a program may import.
Everything else (``mlprism._internal`` and underscored names) is private and
may change without notice.
"""

from __future__ import annotations

import pluggy

from mlprism._internal.features import FEATURES, features_used
from mlprism._internal.overrides import hydra_quote, hydra_value
from mlprism._internal.target import (
    EmitContext,
    Files,
    GeneratedFile,
    Target,
    TargetRegistry,
    shell_join,
    step_command,
)
from mlprism._internal.yamlio import dump_yaml, dump_yaml_documents
from mlprism._version import __version__
from mlprism.diagnostics import (
    CODES,
    Diagnostic,
    DiagnosticError,
    Diagnostics,
    Location,
    Severity,
    did_you_mean,
    register_code,
)
from mlprism.ir import IR_VERSION, Pipeline, Step

#: Decorator for hook implementations: ``@mlprism.hookimpl``.
hookimpl = pluggy.HookimplMarker("mlprism")

__all__ = [
    "CODES",
    "FEATURES",
    "IR_VERSION",
    "Diagnostic",
    "DiagnosticError",
    "Diagnostics",
    "EmitContext",
    "Files",
    "GeneratedFile",
    "Location",
    "Pipeline",
    "Severity",
    "Step",
    "Target",
    "TargetRegistry",
    "__version__",
    "compile_spec",
    "did_you_mean",
    "dump_yaml",
    "dump_yaml_documents",
    "features_used",
    "graph_layers",
    "hookimpl",
    "hydra_quote",
    "hydra_value",
    "load_pipeline",
    "register_code",
    "shell_join",
    "step_command",
]


def load_pipeline(spec: str, overrides: list[str] | tuple[str, ...] = (), *, check_inputs: bool = True) -> Pipeline:
    """Load, compose, validate, lower and graph a spec; return its IR.

    Raises :class:`DiagnosticError` for any mistake in the spec or overrides.
    """
    from mlprism._internal.compiler import load_pipeline as _load

    return _load(spec, overrides, check_inputs=check_inputs).pipeline


def compile_spec(spec: str, target: str, overrides: list[str] | tuple[str, ...] = (),
                 project_path: str = ".") -> dict[str, bytes]:
    """Compile a spec for one installed target; return {relative path: bytes} without writing."""
    from mlprism._internal.compiler import emit, get_plugins
    from mlprism._internal.compiler import load_pipeline as _load

    plugins = get_plugins()
    pipeline = _load(spec, overrides, plugins=plugins).pipeline
    return {path: gf.data() for path, gf in emit(pipeline, target, plugins, project_path).items()}


def graph_layers(pipeline: Pipeline) -> list[list[str]]:
    """Steps grouped in layers that can run in parallel, in order."""
    from mlprism._internal.graph import graph_of

    return graph_of(pipeline).layers()
